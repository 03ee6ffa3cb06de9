//! The system calls the tracer pairs into events.

/// A traced system call.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyscallOp {
    /// `socket(2)`.
    Socket = 1,
    /// `bind(2)`.
    Bind = 2,
    /// `listen(2)`.
    Listen = 3,
    /// `accept(2)`.
    Accept = 4,
    /// `accept4(2)`.
    Accept4 = 5,
    /// `connect(2)`.
    Connect = 6,
    /// `read(2)`.
    Read = 7,
    /// `write(2)`.
    Write = 8,
    /// `readv(2)`.
    Readv = 9,
    /// `writev(2)`.
    Writev = 10,
    /// `sendto(2)` (also `send(3)`).
    Sendto = 11,
    /// `recvfrom(2)` (also `recv(3)`).
    Recvfrom = 12,
    /// `sendmsg(2)`.
    Sendmsg = 13,
    /// `recvmsg(2)`.
    Recvmsg = 14,
    /// `shutdown(2)`.
    Shutdown = 15,
    /// `close(2)`.
    Close = 16,
    /// `sendfile(2)` to a socket: the socket is the first argument.
    Sendfile = 17,
    /// `splice(2)` into or out of a socket; which one is in `args[1]` ([`SPLICE_TO_SOCKET`]).
    Splice = 18,
    /// `sendmmsg(2)`: returns messages, not bytes.
    Sendmmsg = 19,
    /// `recvmmsg(2)`: returns messages, not bytes.
    Recvmmsg = 20,
    /// `dup(2)`: a second fd for the socket.
    Dup = 21,
    /// `dup2(2)`: the socket at a chosen fd (`args[0]`).
    Dup2 = 22,
    /// `dup3(2)`: as `dup2`, with flags (`args[1]`).
    Dup3 = 23,
    /// `fcntl(2)`: `args` are the command and its argument; `F_DUPFD*` make a second fd.
    Fcntl = 24,
    /// `setsockopt(2)`: `args[0]` is [`sockopt`] of level and option, `args[1]` the value set.
    Setsockopt = 25,
    /// `getsockopt(2)`: as `setsockopt`, `args[1]` the value read (at return).
    Getsockopt = 26,
}

/// `fcntl` commands that duplicate the fd.
pub const F_DUPFD: u64 = 0;
/// `F_DUPFD_CLOEXEC`.
pub const F_DUPFD_CLOEXEC: u64 = 1030;

/// `args[0]` of a socket-option record: level and option name in one word.
pub const fn sockopt(level: u32, name: u32) -> u64 {
    ((level as u64) << 32) | name as u64
}

/// `args[1]` of a [`SyscallOp::Splice`] record: the socket is the destination (the data is
/// sent); 0 when it is the source (the data is received).
pub const SPLICE_TO_SOCKET: u64 = 1;

impl SyscallOp {
    /// Every operation, in declaration order.
    pub const ALL: [SyscallOp; 26] = [
        Self::Socket,
        Self::Bind,
        Self::Listen,
        Self::Accept,
        Self::Accept4,
        Self::Connect,
        Self::Read,
        Self::Write,
        Self::Readv,
        Self::Writev,
        Self::Sendto,
        Self::Recvfrom,
        Self::Sendmsg,
        Self::Recvmsg,
        Self::Shutdown,
        Self::Close,
        Self::Sendfile,
        Self::Splice,
        Self::Sendmmsg,
        Self::Recvmmsg,
        Self::Dup,
        Self::Dup2,
        Self::Dup3,
        Self::Fcntl,
        Self::Setsockopt,
        Self::Getsockopt,
    ];

    /// Decodes the raw byte written by the eBPF side.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get((v as usize).wrapping_sub(1)).copied()
    }

    /// The syscall's name, as the man pages give it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Socket => "socket",
            Self::Bind => "bind",
            Self::Listen => "listen",
            Self::Accept => "accept",
            Self::Accept4 => "accept4",
            Self::Connect => "connect",
            Self::Read => "read",
            Self::Write => "write",
            Self::Readv => "readv",
            Self::Writev => "writev",
            Self::Sendto => "sendto",
            Self::Recvfrom => "recvfrom",
            Self::Sendmsg => "sendmsg",
            Self::Recvmsg => "recvmsg",
            Self::Shutdown => "shutdown",
            Self::Close => "close",
            Self::Sendfile => "sendfile",
            Self::Splice => "splice",
            Self::Sendmmsg => "sendmmsg",
            Self::Recvmmsg => "recvmmsg",
            Self::Dup => "dup",
            Self::Dup2 => "dup2",
            Self::Dup3 => "dup3",
            Self::Fcntl => "fcntl",
            Self::Setsockopt => "setsockopt",
            Self::Getsockopt => "getsockopt",
        }
    }

    /// The name of its tracepoints: `syscalls:sys_enter_<this>` and `sys_exit_<this>`
    /// (64-bit `sendfile` is `sendfile64` there).
    pub fn tracepoint(self) -> &'static str {
        match self {
            Self::Sendfile => "sendfile64",
            _ => self.name(),
        }
    }

    /// Whether a successful return value counts messages (`sendmmsg`, `recvmmsg`).
    pub fn counts_messages(self) -> bool {
        matches!(self, Self::Sendmmsg | Self::Recvmmsg)
    }

    /// Whether a successful return value counts bytes sent by the application, given the
    /// record's `args` (which end of a `splice` the socket is).
    pub fn sends(self, args: &[u64; 2]) -> bool {
        match self {
            Self::Write | Self::Writev | Self::Sendto | Self::Sendmsg | Self::Sendfile => true,
            Self::Splice => args[1] == SPLICE_TO_SOCKET,
            _ => false,
        }
    }

    /// Whether a successful return value counts bytes received by the application.
    pub fn receives(self, args: &[u64; 2]) -> bool {
        match self {
            Self::Read | Self::Readv | Self::Recvfrom | Self::Recvmsg => true,
            Self::Splice => args[1] != SPLICE_TO_SOCKET,
            _ => false,
        }
    }

    /// Whether a successful return value is a second fd for the same socket, given the
    /// record's `args`.
    pub fn duplicates(self, args: &[u64; 2]) -> bool {
        match self {
            Self::Dup | Self::Dup2 | Self::Dup3 => true,
            Self::Fcntl => args[0] == F_DUPFD || args[0] == F_DUPFD_CLOEXEC,
            _ => false,
        }
    }

    /// Whether the call moves bytes through the socket (the syscalls inside which
    /// `tcp_sendmsg`/`tcp_recvmsg` run).
    pub fn moves_data(self) -> bool {
        matches!(
            self,
            Self::Read
                | Self::Write
                | Self::Readv
                | Self::Writev
                | Self::Sendto
                | Self::Recvfrom
                | Self::Sendmsg
                | Self::Recvmsg
                | Self::Sendfile
                | Self::Splice
                | Self::Sendmmsg
                | Self::Recvmmsg
        )
    }

    /// Whether the call returns a new fd for an accepted connection.
    pub fn accepts(self) -> bool {
        matches!(self, Self::Accept | Self::Accept4)
    }

    /// Of a call whose enter needs nothing but its fd and one argument, the index of that
    /// argument (the length, the backlog, `accept4`'s flags, `shutdown`'s how), `None` if
    /// it has none; `None` also for every other call.
    pub fn shown_arg(self) -> Option<usize> {
        match self {
            Self::Listen | Self::Shutdown => Some(1),
            Self::Read
            | Self::Write
            | Self::Readv
            | Self::Writev
            | Self::Sendto
            | Self::Recvfrom
            | Self::Sendmsg
            | Self::Recvmsg
            | Self::Sendmmsg
            | Self::Recvmmsg => Some(2),
            Self::Accept4 | Self::Sendfile => Some(3),
            _ => None,
        }
    }

    /// The enter tracepoints' program this call shares with others of its shape, which reads
    /// the call from the syscall number: `sys_enter_fd` (the fd and at most one argument:
    /// [`Self::shown_arg`]). `None` for a call with a program of its own
    /// (`sys_enter_<tracepoint>`).
    pub fn shared_enter(self) -> Option<&'static str> {
        // The shape is the one argument, or none at all for `accept`, whose peer address is
        // read at the return.
        (self == Self::Accept || self.shown_arg().is_some()).then_some("sys_enter_fd")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tcp_sendmsg`/`tcp_recvmsg` take the fd of the syscall in flight only when it moves
    /// data: every call whose result counts bytes or messages does.
    #[test]
    fn every_call_counting_bytes_moves_data() {
        for op in SyscallOp::ALL {
            for args in [[0, 0], [0, SPLICE_TO_SOCKET]] {
                if op.sends(&args) || op.receives(&args) || op.counts_messages() {
                    assert!(op.moves_data(), "{op:?}");
                }
            }
        }
        assert!(!SyscallOp::Accept4.moves_data());
        assert!(!SyscallOp::Close.moves_data());
    }
}
