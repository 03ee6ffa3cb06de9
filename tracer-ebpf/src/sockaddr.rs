//! Reading a `struct sockaddr` from user memory into a record's tuple.

use aya_ebpf::helpers::bpf_probe_read_user;
use tracer_common::{AF_INET, AF_INET6, record::Tuple};

/// Which end of the tuple an address argument names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `bind`'s address.
    Local,
    /// `connect`'s address, `accept`'s peer.
    Remote,
}

/// Reads the sockaddr at user address `ptr` into `tuple`'s `end`; returns its port (host
/// order), or `None` when unreadable. Non-IP families set only the family.
#[inline(always)]
pub fn read_user(ptr: u64, tuple: &mut Tuple, end: End) -> Option<u16> {
    if ptr == 0 {
        return None;
    }
    let base = ptr as *const u8;
    // SAFETY: bpf_probe_read_user checks the user address; a bad pointer is an error, not a fault.
    let family: u16 = unsafe { bpf_probe_read_user(base as *const u16) }.ok()?;
    tuple.family = family;
    if family != AF_INET && family != AF_INET6 {
        return Some(0);
    }
    // SAFETY: as above.
    let port = u16::from_be(unsafe { bpf_probe_read_user(base.add(2) as *const u16) }.ok()?);
    let addr = if end == End::Local {
        tuple.lport = port;
        &mut tuple.laddr
    } else {
        tuple.rport = port;
        &mut tuple.raddr
    };
    if family == AF_INET {
        // SAFETY: as above.
        let a: [u8; 4] = unsafe { bpf_probe_read_user(base.add(4) as *const [u8; 4]) }.ok()?;
        addr[..4].copy_from_slice(&a);
    } else {
        // SAFETY: as above.
        *addr = unsafe { bpf_probe_read_user(base.add(8) as *const [u8; 16]) }.ok()?;
    }
    Some(port)
}
