//! Wording shared by the views: errno names, endpoints, socket types, durations, and the
//! escaping of names that come from the traced system.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use crate::decode::Endpoint;

/// The symbolic name of a (positive) errno, for the errors sockets meet.
pub fn errno_name(errno: i64) -> Option<&'static str> {
    Some(match errno as i32 {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::EPIPE => "EPIPE",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EISCONN => "EISCONN",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        // Kernel-internal: a signal interrupted the call (never seen by the application).
        512 => "ERESTARTSYS",
        _ => return None,
    })
}

/// A syscall return value as strace would show it: `3`, or `-1 ECONNREFUSED`.
pub fn syscall_ret(ret: i64) -> String {
    Ret(ret).to_string()
}

/// [`syscall_ret`], written where it is formatted: the views' hot paths allocate nothing.
pub struct Ret(pub i64);

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ret = self.0;
        if ret >= 0 {
            return write!(f, "{ret}");
        }
        match errno_name(-ret) {
            Some(name) => write!(f, "-1 {name}"),
            None => write!(f, "-1 errno {}", -ret),
        }
    }
}

/// `127.0.0.1:8080` or `[::1]:8080`.
pub fn endpoint(ep: &Endpoint) -> String {
    ep.to_string()
}

/// `endpoint` or `?` when unknown.
pub fn maybe_endpoint(ep: Option<&Endpoint>) -> String {
    MaybeEndpoint(ep).to_string()
}

/// [`maybe_endpoint`], written where it is formatted.
pub struct MaybeEndpoint<'a>(pub Option<&'a Endpoint>);

impl fmt::Display for MaybeEndpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ep) => write!(f, "{ep}"),
            None => f.write_str("?"),
        }
    }
}

/// An address family as `socket(2)` names it: `AF_INET`, `AF_INET6` or the number.
pub struct FamilyName(pub u16);

impl fmt::Display for FamilyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            tracer_common::AF_INET => f.write_str("AF_INET"),
            tracer_common::AF_INET6 => f.write_str("AF_INET6"),
            other => write!(f, "{other}"),
        }
    }
}

/// The `shutdown(2)` `how` argument.
pub fn shutdown_how(how: u64) -> &'static str {
    match how {
        0 => "SHUT_RD",
        1 => "SHUT_WR",
        2 => "SHUT_RDWR",
        _ => "?",
    }
}

/// `socket(2)`'s type argument with its flags.
pub fn socket_type(ty: u64) -> String {
    let mut s = match ty & 0xf {
        1 => "SOCK_STREAM".to_string(),
        other => other.to_string(),
    };
    if ty & libc::SOCK_NONBLOCK as u64 != 0 {
        s.push_str("|SOCK_NONBLOCK");
    }
    if ty & libc::SOCK_CLOEXEC as u64 != 0 {
        s.push_str("|SOCK_CLOEXEC");
    }
    s
}

/// A rate in bytes per second as bits per second, three significant figures:
/// `1.23 Gbit/s`.
pub fn bits_per_second(bytes_per_sec: u64) -> String {
    let bits = bytes_per_sec as f64 * 8.0;
    let (value, unit) = match bits {
        b if b >= 1e9 => (b / 1e9, "Gbit/s"),
        b if b >= 1e6 => (b / 1e6, "Mbit/s"),
        b if b >= 1e3 => (b / 1e3, "kbit/s"),
        b => (b, "bit/s"),
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$} {unit}")
}

/// A duration in the unit that reads best: `850 ns`, `24 µs`, `1.250 ms`, `2.000 s`.
pub fn duration(ns: u64) -> String {
    Duration(ns).to_string()
}

/// [`duration`], written where it is formatted.
pub struct Duration(pub u64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        match ns {
            0..1_000 => write!(f, "{ns} ns"),
            1_000..1_000_000 => write!(f, "{} µs", ns / 1_000),
            1_000_000..1_000_000_000 => write!(f, "{:.3} ms", ns as f64 / 1e6),
            _ => write!(f, "{:.3} s", ns as f64 / 1e9),
        }
    }
}

/// `s` made safe for a terminal: a string from the traced system (a process name) may hold
/// control characters (ESC, BEL, CR, newline, DEL, C1) that would retitle the terminal, write
/// to the clipboard or forge output lines, and bidirectional overrides that would reorder what
/// is shown. Each is written visibly as `\x1b` or `\u{202e}`; a backslash is doubled, so the
/// escaped text reads back unambiguously.
pub fn visible(s: &str) -> Cow<'_, str> {
    let hidden = |c: char| {
        c.is_control()
            || c == '\\'
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if hidden(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_bits_per_second_to_three_figures() {
        assert_eq!(bits_per_second(390_095_238), "3.12 Gbit/s");
        assert_eq!(bits_per_second(1_250_000), "10.0 Mbit/s");
        assert_eq!(bits_per_second(20_000), "160 kbit/s");
        assert_eq!(bits_per_second(12), "96.0 bit/s");
    }

    #[test]
    fn formats_return_values_like_strace() {
        assert_eq!(syscall_ret(3), "3");
        assert_eq!(syscall_ret(-111), "-1 ECONNREFUSED");
        assert_eq!(syscall_ret(-4095), "-1 errno 4095");
    }

    #[test]
    fn formats_endpoints_and_durations() {
        let v6 = Endpoint {
            addr: "::1".parse().unwrap(),
            port: 80,
        };
        assert_eq!(endpoint(&v6), "[::1]:80");
        assert_eq!(duration(850), "850 ns");
        assert_eq!(duration(24_500), "24 µs");
        assert_eq!(duration(1_250_000), "1.250 ms");
        assert_eq!(
            socket_type(1 | libc::SOCK_CLOEXEC as u64),
            "SOCK_STREAM|SOCK_CLOEXEC"
        );
    }

    #[test]
    fn names_from_the_traced_system_are_shown_not_obeyed() {
        assert!(matches!(
            visible("echo-client"),
            Cow::Borrowed("echo-client")
        ));
        assert_eq!(visible("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
        assert_eq!(visible("a\nb\rc\x08d\x7f"), "a\\x0ab\\x0dc\\x08d\\x7f");
        assert_eq!(visible("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
        assert_eq!(
            visible("abc\u{202e}fdp.exe"),
            "abc\\u{202e}fdp.exe",
            "bidi override"
        );
        assert_eq!(
            visible("a\\x1b"),
            "a\\\\x1b",
            "a literal backslash is doubled"
        );
        assert_eq!(visible("naïve ✓"), "naïve ✓", "printable Unicode stays");
    }
}
