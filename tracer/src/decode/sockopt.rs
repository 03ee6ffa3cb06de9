//! Socket options and `fcntl` commands, from a syscall record's raw arguments: names as the
//! man pages (and strace) give them, and values typed by option.

use std::borrow::Cow;

use tracer_common::{SyscallOp, syscall::F_DUPFD_CLOEXEC};

const SOL_IP: u32 = 0;
const SOL_SOCKET: u32 = 1;
const SOL_TCP: u32 = 6;
const SOL_IPV6: u32 = 41;

const SO_ERROR: u32 = 4;
const SO_LINGER: u32 = 13;
const TCP_CONGESTION: u32 = 13;
const TCP_INFO: u32 = 11;

/// What a socket-option record says: level, option and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockOpt {
    /// `SOL_SOCKET`, `SOL_TCP`... or the number.
    pub level: Cow<'static, str>,
    /// `TCP_NODELAY`, `SO_KEEPALIVE`... or the number.
    pub name: Cow<'static, str>,
    /// The value set (`setsockopt`) or read (`getsockopt`, when it succeeded).
    pub value: OptValue,
}

/// An option's value, typed by option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptValue {
    /// An `int` option (flags, sizes, seconds, counts).
    Int(i32),
    /// `SO_LINGER`'s `struct linger`.
    Linger {
        /// Lingering on.
        onoff: i32,
        /// For how many seconds.
        linger: i32,
    },
    /// `TCP_CONGESTION`'s algorithm name (its first 8 bytes).
    Name(String),
    /// `SO_ERROR`: the socket's pending error (0: none), as an errno.
    Error(i32),
    /// A structure not shown (`TCP_INFO`...), or nothing read (a failed `getsockopt`).
    None,
}

/// Decodes the `args` of a `setsockopt`/`getsockopt` record (`ret` its result).
pub fn decode(op: SyscallOp, args: &[u64; 2], ret: i64) -> SockOpt {
    let level = (args[0] >> 32) as u32;
    let name = args[0] as u32;
    let raw = args[1];
    let read = op == SyscallOp::Setsockopt || ret == 0;
    let value = match (level, name) {
        _ if !read => OptValue::None,
        (SOL_SOCKET, SO_LINGER) => OptValue::Linger {
            onoff: raw as u32 as i32,
            linger: (raw >> 32) as u32 as i32,
        },
        (SOL_SOCKET, SO_ERROR) => OptValue::Error(raw as u32 as i32),
        (SOL_TCP, TCP_CONGESTION) => {
            let bytes = raw.to_le_bytes();
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(8);
            OptValue::Name(
                String::from_utf8_lossy(&bytes[..end])
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .collect(),
            )
        }
        (SOL_TCP, TCP_INFO) => OptValue::None,
        _ => OptValue::Int(raw as u32 as i32),
    };
    SockOpt {
        level: level_name(level),
        name: option_name(level, name),
        value,
    }
}

// Names are borrowed from the tables (no allocation per socket-option event); only a number
// nobody named is formatted.
fn level_name(level: u32) -> Cow<'static, str> {
    match level {
        SOL_IP => "SOL_IP".into(),
        SOL_SOCKET => "SOL_SOCKET".into(),
        SOL_TCP => "SOL_TCP".into(),
        SOL_IPV6 => "SOL_IPV6".into(),
        n => n.to_string().into(),
    }
}

fn option_name(level: u32, name: u32) -> Cow<'static, str> {
    let known = match (level, name) {
        (SOL_SOCKET, 1) => "SO_DEBUG",
        (SOL_SOCKET, 2) => "SO_REUSEADDR",
        (SOL_SOCKET, 3) => "SO_TYPE",
        (SOL_SOCKET, SO_ERROR) => "SO_ERROR",
        (SOL_SOCKET, 5) => "SO_DONTROUTE",
        (SOL_SOCKET, 6) => "SO_BROADCAST",
        (SOL_SOCKET, 7) => "SO_SNDBUF",
        (SOL_SOCKET, 8) => "SO_RCVBUF",
        (SOL_SOCKET, 9) => "SO_KEEPALIVE",
        (SOL_SOCKET, 10) => "SO_OOBINLINE",
        (SOL_SOCKET, 12) => "SO_PRIORITY",
        (SOL_SOCKET, SO_LINGER) => "SO_LINGER",
        (SOL_SOCKET, 15) => "SO_REUSEPORT",
        (SOL_SOCKET, 18) => "SO_RCVLOWAT",
        (SOL_SOCKET, 19) => "SO_SNDLOWAT",
        (SOL_SOCKET, 20) => "SO_RCVTIMEO_OLD",
        (SOL_SOCKET, 21) => "SO_SNDTIMEO_OLD",
        (SOL_SOCKET, 25) => "SO_BINDTODEVICE",
        (SOL_SOCKET, 30) => "SO_ACCEPTCONN",
        (SOL_SOCKET, 32) => "SO_SNDBUFFORCE",
        (SOL_SOCKET, 33) => "SO_RCVBUFFORCE",
        (SOL_SOCKET, 36) => "SO_MARK",
        (SOL_SOCKET, 38) => "SO_PROTOCOL",
        (SOL_SOCKET, 39) => "SO_DOMAIN",
        (SOL_SOCKET, 60) => "SO_ZEROCOPY",
        (SOL_SOCKET, 66) => "SO_RCVTIMEO_NEW",
        (SOL_SOCKET, 67) => "SO_SNDTIMEO_NEW",
        (SOL_TCP, 1) => "TCP_NODELAY",
        (SOL_TCP, 2) => "TCP_MAXSEG",
        (SOL_TCP, 3) => "TCP_CORK",
        (SOL_TCP, 4) => "TCP_KEEPIDLE",
        (SOL_TCP, 5) => "TCP_KEEPINTVL",
        (SOL_TCP, 6) => "TCP_KEEPCNT",
        (SOL_TCP, 7) => "TCP_SYNCNT",
        (SOL_TCP, 8) => "TCP_LINGER2",
        (SOL_TCP, 9) => "TCP_DEFER_ACCEPT",
        (SOL_TCP, 10) => "TCP_WINDOW_CLAMP",
        (SOL_TCP, TCP_INFO) => "TCP_INFO",
        (SOL_TCP, 12) => "TCP_QUICKACK",
        (SOL_TCP, TCP_CONGESTION) => "TCP_CONGESTION",
        (SOL_TCP, 18) => "TCP_USER_TIMEOUT",
        (SOL_TCP, 23) => "TCP_FASTOPEN",
        (SOL_TCP, 25) => "TCP_NOTSENT_LOWAT",
        (SOL_TCP, 30) => "TCP_FASTOPEN_CONNECT",
        (SOL_TCP, 31) => "TCP_ULP",
        (SOL_IP, 1) => "IP_TOS",
        (SOL_IP, 2) => "IP_TTL",
        (SOL_IPV6, 26) => "IPV6_V6ONLY",
        _ => return name.to_string().into(),
    };
    known.into()
}

/// The name of `fcntl` command `cmd`.
pub fn fcntl_command(cmd: u64) -> String {
    match cmd {
        0 => "F_DUPFD".into(),
        1 => "F_GETFD".into(),
        2 => "F_SETFD".into(),
        3 => "F_GETFL".into(),
        4 => "F_SETFL".into(),
        8 => "F_SETOWN".into(),
        9 => "F_GETOWN".into(),
        F_DUPFD_CLOEXEC => "F_DUPFD_CLOEXEC".into(),
        n => n.to_string(),
    }
}

/// Whether `fcntl` command `cmd` takes an argument the views show.
pub fn fcntl_has_arg(cmd: u64) -> bool {
    matches!(cmd, 0 | 2 | 4 | 8 | F_DUPFD_CLOEXEC)
}

/// File status flags (`F_GETFL`'s result, `F_SETFL`'s argument) as strace spells them:
/// `O_RDWR|O_NONBLOCK`.
pub fn open_flags(flags: u64) -> String {
    let mut names = vec![match flags & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        _ => "O_RDWR",
    }];
    for (bit, name) in [
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o20000, "O_ASYNC"),
        (0o40000, "O_DIRECT"),
        (0o100000, "O_LARGEFILE"),
        (0o1000000, "O_NOATIME"),
    ] {
        if flags & bit != 0 {
            names.push(name);
        }
    }
    names.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::syscall::sockopt;

    #[test]
    fn options_are_named_and_their_values_typed() {
        let o = decode(SyscallOp::Setsockopt, &[sockopt(6, 1), 1], 0);
        assert_eq!((&*o.level, &*o.name), ("SOL_TCP", "TCP_NODELAY"));
        assert_eq!(o.value, OptValue::Int(1));
        let linger = decode(SyscallOp::Setsockopt, &[sockopt(1, 13), 1 | (5 << 32)], 0);
        assert_eq!(
            linger.value,
            OptValue::Linger {
                onoff: 1,
                linger: 5
            }
        );
        let cc = decode(
            SyscallOp::Setsockopt,
            &[sockopt(6, 13), u64::from_le_bytes(*b"cubic\0\0\0")],
            0,
        );
        assert_eq!(cc.value, OptValue::Name("cubic".into()));
        let err = decode(SyscallOp::Getsockopt, &[sockopt(1, 4), 111], 0);
        assert_eq!((&*err.name, err.value), ("SO_ERROR", OptValue::Error(111)));
        let failed = decode(SyscallOp::Getsockopt, &[sockopt(1, 4), 0], -9);
        assert_eq!(failed.value, OptValue::None);
        let unknown = decode(SyscallOp::Setsockopt, &[sockopt(99, 77), 3], 0);
        assert_eq!((&*unknown.level, &*unknown.name), ("99", "77"));
    }

    #[test]
    fn fcntl_flags_read_as_strace_writes_them() {
        assert_eq!(open_flags(2 | 0o4000), "O_RDWR|O_NONBLOCK");
        assert_eq!(open_flags(0), "O_RDONLY");
        assert_eq!(fcntl_command(1030), "F_DUPFD_CLOEXEC");
        assert_eq!(fcntl_command(4), "F_SETFL");
    }
}
