//! The byte offsets the programs read fields at, resolved on the running kernel: tracepoint
//! fields from tracefs `format` files, `struct sock` fields from the kernel's BTF. Handed to the
//! programs as the `OFFSETS` global.

use std::collections::HashMap;

use tracer_common::offsets::{self as off, OFFSETS_LEN};
use tracer_common::{KernelFn, SyscallOp};

use super::error::LoadError;
use super::table::KERNEL_HOOKS;
use crate::system::btf::{Btf, BtfError};
use crate::system::tracefs::Format;

/// A `struct sock` (or `tcp_sock`) field the probe programs read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SockField {
    /// `sock_common.skc_family`
    Family,
    /// `sock_common.skc_num`
    Num,
    /// `sock_common.skc_dport`
    Dport,
    /// `sock_common.skc_rcv_saddr`
    RcvSaddr,
    /// `sock_common.skc_daddr`
    Daddr,
    /// `sock_common.skc_v6_rcv_saddr`
    V6RcvSaddr,
    /// `sock_common.skc_v6_daddr`
    V6Daddr,
    /// `tcp_sock.write_seq`
    WriteSeq,
    /// `sk_buff.sk`
    SkbSk,
    /// `sk_buff.head`
    SkbHead,
    /// `sk_buff.network_header`
    SkbNetworkHeader,
    /// `sk_buff.dev`
    SkbDev,
    /// `net_device.ifindex`
    NetdevIfindex,
    /// `sock_common.skc_state`
    State,
    /// `tcp_sock.snd_cwnd`
    SndCwnd,
    /// `tcp_sock.snd_ssthresh`
    SndSsthresh,
    /// `tcp_sock.srtt_us`
    SrttUs,
    /// `tcp_sock.mdev_us`
    MdevUs,
    /// `tcp_sock.packets_out`
    PacketsOut,
    /// `tcp_sock.retrans_out`
    RetransOut,
    /// `tcp_sock.total_retrans`
    TotalRetrans,
    /// `tcp_sock.snd_una`
    SndUna,
    /// `tcp_sock.snd_nxt`
    SndNxt,
    /// `tcp_sock.snd_wnd`
    SndWnd,
    /// `tcp_sock.rcv_wnd`
    RcvWnd,
    /// `tcp_sock.mss_cache`
    MssCache,
    /// `inet_connection_sock.icsk_rto`
    IcskRto,
    /// `inet_connection_sock.icsk_ca_ops`
    IcskCaOps,
    /// `inet_connection_sock.icsk_ca_state`, a bit field: its byte and shift
    IcskCaState,
    /// `tcp_congestion_ops.name`
    CaOpsName,
    /// `sk_buff.cb`
    SkbCb,
    /// `task_struct.pid`
    TaskPid,
    /// `task_struct.tgid`
    TaskTgid,
    /// `task_struct.nsproxy`
    TaskNsproxy,
    /// `nsproxy.net_ns`
    NsproxyNetNs,
    /// `net.ns`
    NetNs,
    /// `ns_common.inum`
    NsInum,
    /// `sock_common.skc_net`
    SkNet,
    /// `tcp_request_sock.snt_isn`
    ReqSntIsn,
    /// `sock.sk_rcvbuf`
    Rcvbuf,
    /// `tcp_sock.rcvq_space` (its first member, `space`)
    RcvqSpace,
    /// `tcp_sock.rate_delivered`
    RateDelivered,
    /// `tcp_sock.rate_interval_us`
    RateIntervalUs,
    /// `file.private_data`
    FilePrivateData,
    /// `socket.file`
    SocketFile,
    /// `socket.sk`
    SocketSk,
}

/// The fields from the current task to its network namespace's inode number (read to tell
/// where a process runs, and by the `--netns` filter).
pub const TASK_NETNS_FIELDS: [SockField; 4] = [
    SockField::TaskNsproxy,
    SockField::NsproxyNetNs,
    SockField::NetNs,
    SockField::NsInum,
];

/// The fields the `--netns` filter reads: the current task's namespace and a socket's.
pub const NETNS_FIELDS: [SockField; 5] = [
    TASK_NETNS_FIELDS[0],
    TASK_NETNS_FIELDS[1],
    TASK_NETNS_FIELDS[2],
    TASK_NETNS_FIELDS[3],
    SockField::SkNet,
];

/// The fields a listener's SYN-ACK retransmission reads from its request: the 4-tuple (a
/// request starts with a `sock_common`) and the SYN-ACK's sequence number.
pub const SYNACK_FIELDS: [SockField; 8] = [
    SockField::Family,
    SockField::Num,
    SockField::Dport,
    SockField::RcvSaddr,
    SockField::Daddr,
    SockField::V6RcvSaddr,
    SockField::V6Daddr,
    SockField::ReqSntIsn,
];

/// The fields the programs following a socket passed to another process read: from the file,
/// its socket, and back (`tracer-ebpf/src/received_fd.rs`).
pub const RECEIVED_FD_FIELDS: [SockField; 3] = [
    SockField::FilePrivateData,
    SockField::SocketFile,
    SockField::SocketSk,
];

/// The fields the programs following a traced process's children read
/// (`tracer-ebpf/src/follow.rs`).
pub const TASK_FIELDS: [SockField; 2] = [SockField::TaskPid, SockField::TaskTgid];

/// The fields the congestion records read (`tracer-ebpf/src/kernel/congestion.rs`).
pub const CONGESTION_FIELDS: [SockField; 22] = [
    SockField::SndCwnd,
    SockField::SndSsthresh,
    SockField::SrttUs,
    SockField::MdevUs,
    SockField::PacketsOut,
    SockField::RetransOut,
    SockField::TotalRetrans,
    SockField::SndUna,
    SockField::SndNxt,
    SockField::SndWnd,
    SockField::RcvWnd,
    SockField::MssCache,
    SockField::IcskRto,
    SockField::IcskCaOps,
    SockField::IcskCaState,
    SockField::CaOpsName,
    SockField::SkbCb,
    SockField::State,
    SockField::Rcvbuf,
    SockField::RcvqSpace,
    SockField::RateDelivered,
    SockField::RateIntervalUs,
];

/// The fields the TIME_WAIT segment capture reads.
pub const SKB_FIELDS: [SockField; 6] = [
    SockField::SkbSk,
    SockField::SkbHead,
    SockField::SkbNetworkHeader,
    SockField::SkbDev,
    SockField::NetdevIfindex,
    SockField::State,
];

/// The fields that make a socket's 4-tuple.
pub const TUPLE: [SockField; 7] = [
    SockField::Family,
    SockField::Num,
    SockField::Dport,
    SockField::RcvSaddr,
    SockField::Daddr,
    SockField::V6RcvSaddr,
    SockField::V6Daddr,
];

impl SockField {
    /// Every field the probe tiers read.
    pub const ALL: [SockField; 8] = [
        Self::Family,
        Self::Num,
        Self::Dport,
        Self::RcvSaddr,
        Self::Daddr,
        Self::V6RcvSaddr,
        Self::V6Daddr,
        Self::WriteSeq,
    ];

    /// Its index in `OFFSETS`, its struct and member.
    fn spec(self) -> (usize, &'static str, &'static str) {
        match self {
            Self::Family => (off::SK_FAMILY, "sock_common", "skc_family"),
            Self::Num => (off::SK_NUM, "sock_common", "skc_num"),
            Self::Dport => (off::SK_DPORT, "sock_common", "skc_dport"),
            Self::RcvSaddr => (off::SK_RCV_SADDR, "sock_common", "skc_rcv_saddr"),
            Self::Daddr => (off::SK_DADDR, "sock_common", "skc_daddr"),
            Self::V6RcvSaddr => (off::SK_V6_RCV_SADDR, "sock_common", "skc_v6_rcv_saddr"),
            Self::V6Daddr => (off::SK_V6_DADDR, "sock_common", "skc_v6_daddr"),
            Self::WriteSeq => (off::TP_WRITE_SEQ, "tcp_sock", "write_seq"),
            Self::SkbSk => (off::SKB_SK, "sk_buff", "sk"),
            Self::SkbHead => (off::SKB_HEAD, "sk_buff", "head"),
            Self::SkbNetworkHeader => (off::SKB_NETWORK_HEADER, "sk_buff", "network_header"),
            Self::SkbDev => (off::SKB_DEV, "sk_buff", "dev"),
            Self::NetdevIfindex => (off::NETDEV_IFINDEX, "net_device", "ifindex"),
            Self::State => (off::SK_STATE, "sock_common", "skc_state"),
            Self::SndCwnd => (off::TP_SND_CWND, "tcp_sock", "snd_cwnd"),
            Self::SndSsthresh => (off::TP_SND_SSTHRESH, "tcp_sock", "snd_ssthresh"),
            Self::SrttUs => (off::TP_SRTT_US, "tcp_sock", "srtt_us"),
            Self::MdevUs => (off::TP_MDEV_US, "tcp_sock", "mdev_us"),
            Self::PacketsOut => (off::TP_PACKETS_OUT, "tcp_sock", "packets_out"),
            Self::RetransOut => (off::TP_RETRANS_OUT, "tcp_sock", "retrans_out"),
            Self::TotalRetrans => (off::TP_TOTAL_RETRANS, "tcp_sock", "total_retrans"),
            Self::SndUna => (off::TP_SND_UNA, "tcp_sock", "snd_una"),
            Self::SndNxt => (off::TP_SND_NXT, "tcp_sock", "snd_nxt"),
            Self::SndWnd => (off::TP_SND_WND, "tcp_sock", "snd_wnd"),
            Self::RcvWnd => (off::TP_RCV_WND, "tcp_sock", "rcv_wnd"),
            Self::MssCache => (off::TP_MSS_CACHE, "tcp_sock", "mss_cache"),
            Self::IcskRto => (off::ICSK_RTO, "inet_connection_sock", "icsk_rto"),
            Self::IcskCaOps => (off::ICSK_CA_OPS, "inet_connection_sock", "icsk_ca_ops"),
            Self::IcskCaState => (
                off::ICSK_CA_STATE_BYTE,
                "inet_connection_sock",
                "icsk_ca_state",
            ),
            Self::CaOpsName => (off::CA_OPS_NAME, "tcp_congestion_ops", "name"),
            Self::SkbCb => (off::SKB_CB, "sk_buff", "cb"),
            Self::TaskPid => (off::TASK_PID, "task_struct", "pid"),
            Self::TaskTgid => (off::TASK_TGID, "task_struct", "tgid"),
            Self::TaskNsproxy => (off::TASK_NSPROXY, "task_struct", "nsproxy"),
            Self::NsproxyNetNs => (off::NSPROXY_NET_NS, "nsproxy", "net_ns"),
            Self::NetNs => (off::NET_NS, "net", "ns"),
            Self::NsInum => (off::NS_INUM, "ns_common", "inum"),
            Self::SkNet => (off::SK_NET, "sock_common", "skc_net"),
            Self::ReqSntIsn => (off::REQ_SNT_ISN, "tcp_request_sock", "snt_isn"),
            Self::Rcvbuf => (off::SK_RCVBUF, "sock", "sk_rcvbuf"),
            Self::RcvqSpace => (off::TP_RCVQ_SPACE, "tcp_sock", "rcvq_space"),
            Self::RateDelivered => (off::TP_RATE_DELIVERED, "tcp_sock", "rate_delivered"),
            Self::RateIntervalUs => (off::TP_RATE_INTERVAL_US, "tcp_sock", "rate_interval_us"),
            Self::FilePrivateData => (off::FILE_PRIVATE_DATA, "file", "private_data"),
            Self::SocketFile => (off::SOCKET_FILE, "socket", "file"),
            Self::SocketSk => (off::SOCKET_SK, "socket", "sk"),
        }
    }
}

/// The function that installs a received fd, by the names it has had: `__receive_fd` in 5.10
/// and 6.1 (6.1 also has a two-parameter `receive_fd` wrapper, which `SCM_RIGHTS` does not
/// use), `receive_fd` in 6.12 and 7.x.
const RECEIVE_FD: [&str; 2] = ["__receive_fd", "receive_fd"];

/// The offsets array, filled as far as this kernel allows.
pub struct Offsets {
    /// The values handed to the programs.
    pub values: [u32; OFFSETS_LEN],
    /// `struct sock` fields this kernel's BTF could not place, and why.
    pub missing: HashMap<SockField, String>,
    /// The parameter count of each kernel function the table probes, from this kernel's BTF
    /// (an fexit program is chosen by it), or why it is unknown.
    arities: HashMap<KernelFn, Result<usize, String>>,
    /// The function that installs a received fd on this kernel and its parameter count, or
    /// why it is unknown.
    pub receive_fd: Result<(&'static str, usize), String>,
    /// The parameter count of `scm_recv_one_fd` where it is a function of its own (7.3:
    /// `SCM_RIGHTS` installs through it, not through the function above).
    pub scm_recv_one_fd: Option<usize>,
    /// Why each syscall's function cannot take fentry/fexit programs here, for those that
    /// cannot (read from the kernel's BTF when the syscall layer may use them).
    pub syscall_functions: HashMap<SyscallOp, String>,
}

/// Whether `function`'s only parameter is, in the kernel's BTF, a pointer to a complete
/// `struct pt_regs`, as the syscall layer's fentry/fexit programs need: 5.10's BTF declares
/// it only as a forward declaration in the functions of `net/socket.c`, which its verifier
/// refuses to let a program read.
fn takes_registers(btf: &Btf, function: &str) -> Result<(), String> {
    let signature = btf
        .signature(function)
        .map_err(|e| format!("kernel BTF: {e}"))?;
    match signature.types.as_slice() {
        [only] if only.ends_with("struct pt_regs *") => Ok(()),
        [only] if only.ends_with("pt_regs *") => Err(format!(
            "the kernel's BTF has only a forward declaration of struct pt_regs for {function}, \
             which this kernel does not let programs read (5.10)"
        )),
        types => Err(format!(
            "{function} takes ({}) in the kernel's BTF, not the registers",
            types.join(", ")
        )),
    }
}

impl Offsets {
    /// Tracepoint field offsets from tracefs. The state tracepoint is required; the others
    /// are optional (a missing one leaves its hook unattached).
    pub fn tracepoints() -> Result<Self, LoadError> {
        let mut values = [0u32; OFFSETS_LEN];
        let state = Format::read("sock", "inet_sock_set_state")?;
        for (i, f) in [
            (off::STATE_SKADDR, "skaddr"),
            (off::STATE_OLD, "oldstate"),
            (off::STATE_NEW, "newstate"),
            (off::STATE_SPORT, "sport"),
            (off::STATE_DPORT, "dport"),
            (off::STATE_FAMILY, "family"),
            (off::STATE_PROTOCOL, "protocol"),
            (off::STATE_SADDR, "saddr"),
            (off::STATE_DADDR, "daddr"),
            (off::STATE_SADDR6, "saddr_v6"),
            (off::STATE_DADDR6, "daddr_v6"),
        ] {
            values[i] = state.offset(f)?;
        }
        if let Ok(f) = Format::read("sock", "sock_send_length") {
            for (i, name) in [
                (off::SOCKLEN_SK, "sk"),
                (off::SOCKLEN_FAMILY, "family"),
                (off::SOCKLEN_PROTOCOL, "protocol"),
                (off::SOCKLEN_RET, "ret"),
            ] {
                values[i] = f.offset(name).unwrap_or(0);
            }
        }
        // Inheritance of traced fds across fork: `child_pid` moved when the comm fields
        // became dynamic strings (6.x).
        if let Ok(f) = Format::read("sched", "sched_process_fork") {
            values[off::FORK_CHILD_PID] = f.offset("child_pid").unwrap_or(0);
        }
        if let Ok(f) = Format::read("tcp", "tcp_retransmit_skb") {
            values[off::RETRANS_HAS_ERR] = u32::from(f.offset("err").is_ok());
        }
        if let Some(abi) = super::table::SYSCALL_ABI {
            for (n, offset) in abi.args.into_iter().enumerate() {
                values[off::SYSCALL_ARG0 + n] = offset;
            }
            values[off::SYSCALL_NR] = abi.nr;
        }

        Ok(Self {
            values,
            missing: HashMap::new(),
            arities: HashMap::new(),
            receive_fd: Err("kernel BTF not read".into()),
            syscall_functions: HashMap::new(),
            scm_recv_one_fd: None,
        })
    }

    /// Adds kernel struct offsets from the running kernel's BTF (`btf`, parsed by the caller,
    /// or why it could not be): with `probes`,
    /// the `struct sock` fields and the probed functions' parameter counts; with `packets`, the
    /// `sk_buff` fields the TIME_WAIT capture reads. A field it lacks is recorded in
    /// [`Self::missing`], and what needs it is not attached.
    /// `syscall_functions`: the syscall layer may use its functions; check their signatures.
    pub fn add_kernel_fields(
        &mut self,
        btf: Result<Btf, BtfError>,
        probes: bool,
        packets: bool,
        syscall_functions: bool,
    ) {
        let wanted: Vec<SockField> = probes
            .then_some(SockField::ALL.as_slice())
            .into_iter()
            .chain(packets.then_some(SKB_FIELDS.as_slice()))
            .chain(Some(CONGESTION_FIELDS.as_slice()))
            .chain(Some(TASK_FIELDS.as_slice()))
            .chain(Some(NETNS_FIELDS.as_slice()))
            .chain(Some(SYNACK_FIELDS.as_slice()))
            .chain(probes.then_some(RECEIVED_FD_FIELDS.as_slice()))
            .flatten()
            .copied()
            .collect();
        let btf = match btf {
            Ok(btf) => btf,
            Err(e) => {
                for field in wanted {
                    self.missing.insert(field, e.to_string());
                }
                if syscall_functions {
                    for op in SyscallOp::ALL {
                        self.syscall_functions
                            .insert(op, format!("kernel BTF: {e}"));
                    }
                }
                return;
            }
        };
        if syscall_functions {
            for op in SyscallOp::ALL {
                if let Some(function) = super::table::syscall_function(op)
                    && let Err(why) = takes_registers(&btf, &function)
                {
                    self.syscall_functions.insert(op, why);
                }
            }
        }
        if probes {
            for row in &KERNEL_HOOKS {
                if row.fentry.iter().any(|p| p.args.is_some()) {
                    let arity = btf
                        .signature(row.func.name())
                        .map(|s| s.params.len())
                        .map_err(|e| format!("kernel BTF: {e}"));
                    self.arities.insert(row.func, arity);
                }
            }
            self.receive_fd = RECEIVE_FD
                .iter()
                .find_map(|&name| Some((name, btf.signature(name).ok()?.params.len())))
                .ok_or_else(|| format!("kernel BTF has neither {}", RECEIVE_FD.join(" nor ")));
            self.scm_recv_one_fd = btf
                .signature("scm_recv_one_fd")
                .ok()
                .map(|s| s.params.len());
        }
        for field in wanted {
            let (i, st, member) = field.spec();
            match btf.member_bit_offset(st, member) {
                Ok(bits) if field == SockField::IcskCaState => {
                    self.values[i] = bits / 8;
                    self.values[off::ICSK_CA_STATE_SHIFT] = bits % 8;
                }
                Ok(bits) => self.values[i] = bits / 8,
                Err(e) => {
                    self.missing.insert(field, e.to_string());
                }
            }
        }
    }

    /// Why syscall `op`'s function cannot take the syscall layer's fentry/fexit programs here,
    /// if it cannot.
    pub fn syscall_function_unusable(&self, op: SyscallOp) -> Option<&str> {
        self.syscall_functions.get(&op).map(String::as_str)
    }

    /// The parameter count of `func` on this kernel, or why it is unknown.
    pub fn arity(&self, func: KernelFn) -> Result<usize, String> {
        self.arities
            .get(&func)
            .cloned()
            .unwrap_or_else(|| Err("kernel BTF not read".into()))
    }

    /// Why the probe programs of a hook reading `fields` cannot run here, if they cannot.
    pub fn lacking(&self, fields: &[SockField]) -> Option<String> {
        fields
            .iter()
            .find_map(|f| self.missing.get(f))
            .map(|why| format!("kernel BTF lacks what the programs read: {why}"))
    }
}
