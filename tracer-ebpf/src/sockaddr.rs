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

/// An address argument as read from user memory: zeros where unreadable, only the family
/// for a non-IP one.
#[derive(Clone, Copy, Default)]
pub struct Sockaddr {
    /// `sa_family`.
    pub family: u16,
    /// The port, host order.
    pub port: u16,
    /// The address (IPv4 in the first 4 bytes).
    pub addr: [u8; 16],
}

/// The port (host order) of the sockaddr at user address `ptr`: 0 for a non-IP family or
/// when unreadable. Two reads into locals, nothing stored.
#[inline(always)]
pub fn port_of(ptr: u64) -> u16 {
    if ptr == 0 {
        return 0;
    }
    let base = ptr as *const u8;
    // SAFETY: bpf_probe_read_user checks the user address; a bad pointer is an error, not a fault.
    match unsafe { bpf_probe_read_user(base as *const u16) } {
        Ok(AF_INET | AF_INET6) => {}
        _ => return 0,
    }
    // SAFETY: as above.
    u16::from_be(unsafe { bpf_probe_read_user(base.add(2) as *const u16) }.unwrap_or(0))
}

impl Sockaddr {
    /// Reads the sockaddr at user address `ptr`.
    #[inline(always)]
    pub fn read_user(ptr: u64) -> Self {
        let mut sa = Self::default();
        let _ = sa.fill(ptr);
        sa
    }

    #[inline(always)]
    fn fill(&mut self, ptr: u64) -> Option<()> {
        if ptr == 0 {
            return None;
        }
        let base = ptr as *const u8;
        // SAFETY: bpf_probe_read_user checks the user address; a bad pointer is an error, not
        // a fault.
        self.family = unsafe { bpf_probe_read_user(base as *const u16) }.ok()?;
        if self.family != AF_INET && self.family != AF_INET6 {
            return None;
        }
        // SAFETY: as above.
        self.port = u16::from_be(unsafe { bpf_probe_read_user(base.add(2) as *const u16) }.ok()?);
        if self.family == AF_INET {
            // SAFETY: as above.
            let a: [u8; 4] = unsafe { bpf_probe_read_user(base.add(4) as *const [u8; 4]) }.ok()?;
            self.addr[..4].copy_from_slice(&a);
        } else {
            // SAFETY: as above.
            self.addr = unsafe { bpf_probe_read_user(base.add(8) as *const [u8; 16]) }.ok()?;
        }
        Some(())
    }

    /// Writes this address into `tuple` as its `end`.
    #[inline(always)]
    pub fn store(&self, tuple: &mut Tuple, end: End) {
        tuple.family = self.family;
        if end == End::Local {
            tuple.lport = self.port;
            tuple.laddr = self.addr;
        } else {
            tuple.rport = self.port;
            tuple.raddr = self.addr;
        }
    }
}
