//! Indexes into the `OFFSETS` global: byte offsets the loader resolves at startup and the
//! programs read fields at. Tracepoint fields come from each event's tracefs `format` file;
//! `struct sock` fields from the running kernel's BTF. Nothing here is compiled in.

/// Length of the offsets array.
pub const OFFSETS_LEN: usize = 128;

/// `inet_sock_set_state.skaddr`
pub const STATE_SKADDR: usize = 0;
/// `inet_sock_set_state.oldstate`
pub const STATE_OLD: usize = 1;
/// `inet_sock_set_state.newstate`
pub const STATE_NEW: usize = 2;
/// `inet_sock_set_state.sport`
pub const STATE_SPORT: usize = 3;
/// `inet_sock_set_state.dport`
pub const STATE_DPORT: usize = 4;
/// `inet_sock_set_state.family`
pub const STATE_FAMILY: usize = 5;
/// `inet_sock_set_state.protocol`
pub const STATE_PROTOCOL: usize = 6;
/// `inet_sock_set_state.saddr`
pub const STATE_SADDR: usize = 7;
/// `inet_sock_set_state.daddr`
pub const STATE_DADDR: usize = 8;
/// `inet_sock_set_state.saddr_v6`
pub const STATE_SADDR6: usize = 9;
/// `inet_sock_set_state.daddr_v6`
pub const STATE_DADDR6: usize = 10;
/// `sock_send_length.sk` (`sock_recv_length` has the same layout)
pub const SOCKLEN_SK: usize = 11;
/// `sock_send_length.family`
pub const SOCKLEN_FAMILY: usize = 12;
/// `sock_send_length.protocol`
pub const SOCKLEN_PROTOCOL: usize = 13;
/// `sock_send_length.ret`
pub const SOCKLEN_RET: usize = 14;
/// `sched_process_fork.child_pid`
pub const FORK_CHILD_PID: usize = 15;
/// `sk_buff.sk` (kernel BTF; the TIME_WAIT segment capture)
pub const SKB_SK: usize = 16;
/// `sk_buff.head`
pub const SKB_HEAD: usize = 17;
/// `sk_buff.network_header`: offset of the IP header from `head`
pub const SKB_NETWORK_HEADER: usize = 18;
/// `sock_common.skc_family` (kernel BTF; fentry/kprobe tiers)
pub const SK_FAMILY: usize = 19;
/// `sock_common.skc_num`: local port, host order
pub const SK_NUM: usize = 20;
/// `sock_common.skc_dport`: remote port, network order
pub const SK_DPORT: usize = 21;
/// `sock_common.skc_rcv_saddr`
pub const SK_RCV_SADDR: usize = 22;
/// `sock_common.skc_daddr`
pub const SK_DADDR: usize = 23;
/// `sock_common.skc_v6_rcv_saddr`
pub const SK_V6_RCV_SADDR: usize = 24;
/// `sock_common.skc_v6_daddr`
pub const SK_V6_DADDR: usize = 25;
/// `tcp_sock.write_seq`: the next sequence number the application's bytes will get
pub const TP_WRITE_SEQ: usize = 26;
/// `sk_buff.dev`
pub const SKB_DEV: usize = 27;
/// `net_device.ifindex`
pub const NETDEV_IFINDEX: usize = 28;
/// `sock_common.skc_state`
pub const SK_STATE: usize = 29;
/// `tcp_sock.snd_cwnd`
pub const TP_SND_CWND: usize = 30;
/// `tcp_sock.snd_ssthresh`
pub const TP_SND_SSTHRESH: usize = 31;
/// `tcp_sock.srtt_us`: smoothed RTT in microseconds, shifted left by 3
pub const TP_SRTT_US: usize = 32;
/// `tcp_sock.mdev_us`: RTT mean deviation in microseconds, shifted left by 2
pub const TP_MDEV_US: usize = 33;
/// `tcp_sock.packets_out`
pub const TP_PACKETS_OUT: usize = 34;
/// `tcp_sock.retrans_out`
pub const TP_RETRANS_OUT: usize = 35;
/// `tcp_sock.total_retrans`
pub const TP_TOTAL_RETRANS: usize = 36;
/// `tcp_sock.snd_una`
pub const TP_SND_UNA: usize = 37;
/// `tcp_sock.snd_nxt`
pub const TP_SND_NXT: usize = 38;
/// `tcp_sock.snd_wnd`: the peer's advertised window, scaled
pub const TP_SND_WND: usize = 39;
/// `tcp_sock.rcv_wnd`: the window this end advertises
pub const TP_RCV_WND: usize = 40;
/// `tcp_sock.mss_cache`
pub const TP_MSS_CACHE: usize = 41;
/// `inet_connection_sock.icsk_rto`, in jiffies
pub const ICSK_RTO: usize = 42;
/// `inet_connection_sock.icsk_ca_ops`
pub const ICSK_CA_OPS: usize = 43;
/// The byte holding the `inet_connection_sock.icsk_ca_state` bit field
pub const ICSK_CA_STATE_BYTE: usize = 44;
/// Not an offset: the bit field's shift within that byte
pub const ICSK_CA_STATE_SHIFT: usize = 45;
/// `tcp_congestion_ops.name`
pub const CA_OPS_NAME: usize = 46;
/// `sk_buff.cb`: `struct tcp_skb_cb` (`seq`, then `end_seq`) while TCP owns the buffer
pub const SKB_CB: usize = 47;
/// Not an offset: 1 when the `tcp_retransmit_skb` tracepoint passes the transmission's result
/// as a third argument (6.x; it then fires for failed attempts too), 0 when it fires only for
/// segments sent
pub const RETRANS_HAS_ERR: usize = 48;
/// `task_struct.pid` (the thread's id)
pub const TASK_PID: usize = 49;
/// `task_struct.tgid` (the process's id)
pub const TASK_TGID: usize = 50;
/// `task_struct.nsproxy`
pub const TASK_NSPROXY: usize = 51;
/// `nsproxy.net_ns`
pub const NSPROXY_NET_NS: usize = 52;
/// `net.ns` (a `struct ns_common`)
pub const NET_NS: usize = 53;
/// `ns_common.inum`
pub const NS_INUM: usize = 54;
/// `sock_common.skc_net` (a `possible_net_t`, whose first member is the `struct net *`)
pub const SK_NET: usize = 55;
/// `tcp_request_sock.snt_isn`: the initial sequence number of a listener's SYN-ACK
pub const REQ_SNT_ISN: usize = 56;
/// `sock.sk_rcvbuf`: the receive buffer's size in bytes, which autotuning grows
pub const SK_RCVBUF: usize = 57;
/// `tcp_sock.rcvq_space` (its first member, `space`): what the application read in the last
/// RTT, the measure autotuning sizes the buffer by
pub const TP_RCVQ_SPACE: usize = 58;
/// `tcp_sock.rate_delivered`: segments delivered in the last delivery-rate sample
pub const TP_RATE_DELIVERED: usize = 59;
/// `tcp_sock.rate_interval_us`: that sample's interval, microseconds
pub const TP_RATE_INTERVAL_US: usize = 60;
/// `file.private_data`: for a socket's file, its `struct socket`
pub const FILE_PRIVATE_DATA: usize = 61;
/// `socket.file`: the file a `struct socket` belongs to (checks that a file is a socket's)
pub const SOCKET_FILE: usize = 62;
/// `socket.sk`
pub const SOCKET_SK: usize = 63;
/// `struct pt_regs`: where a syscall function finds its first argument (x86-64: `di`); the
/// next five follow at `SYSCALL_ARG0 + 1..=5` (`si`, `dx`, `r10`, `r8`, `r9`)
pub const SYSCALL_ARG0: usize = 64;
/// `struct pt_regs`: the syscall's number (x86-64: `orig_ax`; arm64: `syscallno`)
pub const SYSCALL_NR: usize = 70;
