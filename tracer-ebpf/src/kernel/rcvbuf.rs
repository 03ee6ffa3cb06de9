//! Receive-buffer autotuning: `tcp_rcv_space_adjust`, run by `tcp_recvmsg` as the application
//! reads, grows `sk_rcvbuf` when the application read more in the last RTT than the buffer
//! was sized for (and memory pressure can shrink it). The function is too hot to hook for
//! every socket on the host, and its tracepoints fire before it decides, so the `tcp_recvmsg`
//! hook of every tier compares the size after each read with the size it last saw: a record
//! when it changed, timed at the end of the read that changed it. The size it starts from is
//! taken when the connection is established (`sk_rcvbuf` is not touched in between).

use aya_ebpf::{macros::map, maps::LruHashMap};
use tracer_common::{KernelFn, Via, failure::Failure, maps::Owner, offsets::SK_RCVBUF};

use super::congestion::snapshot;
use crate::{
    context::{offset, sk_field},
    emit::{count_if_refused, emit},
};

/// The receive-buffer size last seen of each traced established socket.
#[map]
static RCVBUF: LruHashMap<u64, u32> = LruHashMap::with_max_entries(16384, 0);

/// The receive buffer's size now, if the kernel's BTF placed it.
#[inline(always)]
fn size(sk: u64) -> Option<u32> {
    (offset(SK_RCVBUF) != 0).then(|| sk_field(sk, SK_RCVBUF))
}

/// A traced socket became established: the size autotuning starts from.
#[inline(always)]
pub fn established(sk: u64) {
    if let Some(now) = size(sk) {
        count_if_refused(RCVBUF.insert(sk, now, 0), Failure::SocketsFull);
    }
}

/// A read on traced `sk`, owned by `owner`, returned (hook `via`): a record if the receive
/// buffer's size changed since last seen. A socket older than the tracer starts here.
#[inline(always)]
pub fn after_read(sk: u64, owner: &Owner, via: Via) {
    let Some(now) = size(sk) else {
        return;
    };
    // SAFETY: a value pointer returned by the lookup, copied out at once.
    match RCVBUF.get_ptr(sk).map(|p| unsafe { *p }) {
        Some(before) if before == now => {}
        Some(before) => {
            let mut r = snapshot(sk, owner, KernelFn::TcpRcvSpaceAdjust);
            r.header.via = via as u8;
            r.rcvbuf = now;
            r.rcvbuf_before = before;
            emit(&r);
            count_if_refused(RCVBUF.insert(sk, now, 0), Failure::SocketsFull);
        }
        None => count_if_refused(RCVBUF.insert(sk, now, 0), Failure::SocketsFull),
    }
}

/// The socket is gone.
#[inline(always)]
pub fn forget(sk: u64) {
    let _ = RCVBUF.remove(sk);
}
