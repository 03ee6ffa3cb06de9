//! Reading a `struct sockaddr` from user memory into a record's remote or local end.

use aya_ebpf::helpers::bpf_probe_read_user;
use tracer_common::{AF_INET, AF_INET6};

/// An IPv4/IPv6 endpoint read from user memory.
pub struct Endpoint {
    pub family: u16,
    pub port: u16,
    pub addr: [u8; 16],
}

/// Reads the sockaddr at user address `ptr`. Non-IP families return their family and port 0.
#[inline(always)]
pub fn read_user(ptr: u64) -> Option<Endpoint> {
    if ptr == 0 {
        return None;
    }
    let base = ptr as *const u8;
    // SAFETY: bpf_probe_read_user checks the user address; a bad pointer is an error, not a fault.
    let family: u16 = unsafe { bpf_probe_read_user(base as *const u16) }.ok()?;
    let mut ep = Endpoint {
        family,
        port: 0,
        addr: [0; 16],
    };
    if family != AF_INET && family != AF_INET6 {
        return Some(ep);
    }
    // SAFETY: as above.
    let port: u16 = unsafe { bpf_probe_read_user(base.add(2) as *const u16) }.ok()?;
    ep.port = u16::from_be(port);
    if family == AF_INET {
        // SAFETY: as above.
        let a: [u8; 4] = unsafe { bpf_probe_read_user(base.add(4) as *const [u8; 4]) }.ok()?;
        ep.addr[..4].copy_from_slice(&a);
    } else {
        // SAFETY: as above.
        ep.addr = unsafe { bpf_probe_read_user(base.add(8) as *const [u8; 16]) }.ok()?;
    }
    Some(ep)
}
