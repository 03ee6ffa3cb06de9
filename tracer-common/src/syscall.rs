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
}

impl SyscallOp {
    /// Every operation, in declaration order.
    pub const ALL: [SyscallOp; 16] = [
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
    ];

    /// Decodes the raw byte written by the eBPF side.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get((v as usize).wrapping_sub(1)).copied()
    }

    /// The syscall's name, as in `syscalls:sys_enter_<name>`.
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
        }
    }

    /// Whether a successful return value counts bytes sent by the application.
    pub fn sends(self) -> bool {
        matches!(
            self,
            Self::Write | Self::Writev | Self::Sendto | Self::Sendmsg
        )
    }

    /// Whether a successful return value counts bytes received by the application.
    pub fn receives(self) -> bool {
        matches!(
            self,
            Self::Read | Self::Readv | Self::Recvfrom | Self::Recvmsg
        )
    }

    /// Whether the call returns a new fd for an accepted connection.
    pub fn accepts(self) -> bool {
        matches!(self, Self::Accept | Self::Accept4)
    }
}
