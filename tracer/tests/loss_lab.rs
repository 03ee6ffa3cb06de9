//! Loss and recovery, against independent truth: segments are dropped on a veth path between
//! two network namespaces (an nftables rule in the client's namespace), and what the tracer
//! says TCP did is compared with a capture on the sender's veth (read by tshark) and with the
//! kernel's own counters for the sender's namespace (`nstat`). Also: `--demo loss` end to
//! end, and that it leaves nothing behind.
//!
//! Needs root, iproute2, nftables, tcpdump and tshark (`cargo xtask conformance` installs them);
//! the QEMU guests of `cargo xtask vm-test` run the tests that need neither capture nor browser.

mod support;

use support::capture::Tcpdump;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BULK: &str = env!("CARGO_BIN_EXE_bulk");
const SERVER: &str = "198.51.100.1";
const CLIENT: &str = "198.51.100.2";

/// Two namespaces joined by a veth pair with one segment per packet; deleted when dropped.
struct Path2 {
    server: String,
    client: String,
}

impl Path2 {
    fn new(tag: &str) -> Self {
        let pid = std::process::id();
        let p = Path2 {
            server: format!("tl{pid}{tag}s"),
            client: format!("tl{pid}{tag}c"),
        };
        for ns in [&p.server, &p.client] {
            support::run(Command::new("ip").args(["netns", "add", ns]));
        }
        support::run(Command::new("ip").args([
            "link",
            "add",
            "vs",
            "netns",
            &p.server,
            "gso_max_segs",
            "1",
            "type",
            "veth",
            "peer",
            "name",
            "vc",
            "netns",
            &p.client,
            "gso_max_segs",
            "1",
        ]));
        for (ns, dev, addr) in [(&p.server, "vs", SERVER), (&p.client, "vc", CLIENT)] {
            support::run(Command::new("ip").args([
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                dev,
            ]));
            support::run(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]));
            support::run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
        }
        p
    }

    fn exec(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// Drops, in the client's namespace, the data segments from server port `port` numbered
    /// `nth` (from 1, in arrival order), each once.
    fn drop_segments(&self, port: u16, nth: &[u32]) {
        let set: Vec<String> = nth.iter().map(|n| (n - 1).to_string()).collect();
        let rules = format!(
            "table ip t {{\n chain c {{\n  type filter hook prerouting priority raw; policy accept;\n  \
             ip saddr {SERVER} tcp sport {port} tcp doff 8 ip length > 52 \
             numgen inc mod 1000000000 {{ {} }} counter drop\n }}\n}}\n",
            set.join(", ")
        );
        let mut child = self
            .exec(&self.client, "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft (nftables) is installed");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft rejected {rules}");
    }

    /// Waits until something listens on `port` in the server's namespace.
    fn wait_listening(&self, port: u16) {
        let listening = |out: &str| !out.is_empty();
        let args = ["-Hltn", &format!("sport = :{port}")];
        let what = format!("nothing listened on {port}");
        self.ss_until(&self.server, &args, 15, listening, &what);
    }

    /// `ss ARGS` in namespace `ns`, run every 20 ms until `done` holds for its output (which
    /// it returns), for at most `secs`; past that, fails saying `what` and the last output.
    fn ss_until(
        &self,
        ns: &str,
        args: &[&str],
        secs: u64,
        done: impl Fn(&str) -> bool,
        what: &str,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.ss(ns, args);
            if done(&out) {
                return out;
            }
            assert!(Instant::now() < deadline, "{what}: {out}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ss ARGS` in namespace `ns`: its output, trimmed.
    fn ss(&self, ns: &str, args: &[&str]) -> String {
        let out = self.exec(ns, "ss").args(args).output().unwrap();
        assert!(out.status.success(), "ss {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The kernel's TCP counters of namespace `ns`, absolute (the namespace is new: they
    /// started at zero).
    fn nstat(&self, ns: &str) -> BTreeMap<String, u64> {
        let out = self
            .exec(ns, "nstat")
            .args(["-a", "-z", "-s"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.to_string(), f.next()?.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Path2 {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Data segments sent again in a capture taken on the sender's side: (source port, raw seq) of
/// every copy after the first, as tshark dissects the frames. On the sender's side nothing
/// reorders, so a repeat is a retransmission; tshark's own analysis agrees, though it calls
/// a copy sent within a (sub-millisecond) RTT "out-of-order".
fn repeats_in_capture(file: &Path) -> Vec<(u64, u64)> {
    let fields = |filter: &str| {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(file)
            .args([
                "-Y",
                filter,
                "-T",
                "fields",
                "-e",
                "tcp.srcport",
                "-e",
                "tcp.seq_raw",
            ])
            .output()
            .expect("tshark is installed");
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut rows: Vec<(u64, u64)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (port, seq) = l.split_once('\t')?;
                Some((port.trim().parse().ok()?, seq.trim().parse().ok()?))
            })
            .collect();
        rows.sort_unstable();
        rows
    };
    let mut seen = std::collections::HashSet::new();
    let mut repeats: Vec<(u64, u64)> = fields("tcp.len > 0")
        .into_iter()
        .filter(|row| !seen.insert(*row))
        .collect();
    repeats.sort_unstable();
    let flagged = fields(
        "tcp.analysis.retransmission || tcp.analysis.fast_retransmission \
         || tcp.analysis.spurious_retransmission || tcp.analysis.out_of_order",
    );
    assert_eq!(
        repeats, flagged,
        "tshark's analysis flags other frames than the repeats"
    );
    repeats
}

/// The tracer's retransmissions: (local port, seq, kind).
fn traced_retransmissions(events: &[Value]) -> Vec<(u64, u64, String)> {
    let mut found: Vec<(u64, u64, String)> = events
        .iter()
        .filter(|e| {
            // An attempt that failed (the original still queued here) sent nothing.
            e["layer"] == "congestion" && e["retransmit"].is_string() && e.get("err").is_none()
        })
        .map(|e| {
            (
                e["lport"].as_u64().unwrap(),
                e["seq"].as_u64().unwrap(),
                e["retransmit"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

#[test]
fn retransmissions_agree_with_tshark_and_the_kernels_counters() {
    retransmission_lab("a", true);
}

/// The same lab without the capture, for the QEMU guests (no tshark there): the kernel's own
/// counters are the oracle.
#[test]
fn retransmissions_agree_with_the_kernels_counters() {
    retransmission_lab("k", false);
}

/// Drops chosen segments of an echo session and of a bulk transfer, and compares the tracer's
/// retransmissions with the kernel's counters and, with `capture`, with tshark's reading of a
/// capture on the server's veth.
fn retransmission_lab(tag: &str, capture: bool) {
    let path = Path2::new(tag);
    let bulk_port = support::free_port();
    let echo_port = loop {
        let p = support::free_port();
        if p != bulk_port {
            break p;
        }
    };
    // The echo server's second reply (a lone segment: a tail-loss probe resends it), and two
    // segments in the middle of the bulk transfer (fast retransmits).
    path.drop_segments(echo_port, &[2]);
    path.drop_segments(bulk_port, &[20, 300]);
    let pcap = std::env::temp_dir().join(format!("tracer-loss-lab-{}.pcap", std::process::id()));
    let trace = support::start(&[
        "--port",
        &bulk_port.to_string(),
        "--port",
        &echo_port.to_string(),
    ]);
    let dump = capture.then(|| Tcpdump::start(Some(&path.server), "vs", &["tcp"], &pcap));
    let mut echo = path
        .exec(&path.server, support::ECHO_SERVER)
        .args(["--port", &echo_port.to_string()])
        .spawn()
        .unwrap();
    let mut bulk = path
        .exec(&path.server, BULK)
        .args([
            "serve",
            "--port",
            &bulk_port.to_string(),
            "--bytes",
            "1048576",
        ])
        .spawn()
        .unwrap();
    path.wait_listening(echo_port);
    path.wait_listening(bulk_port);
    let echoed = path
        .exec(&path.client, support::ECHO_CLIENT)
        .args(["--addr", &format!("{SERVER}:{echo_port}")])
        .args(["--message", "one", "--message", "two", "--message", "three"])
        .output()
        .unwrap();
    assert!(echoed.status.success(), "echo-client failed");
    let fetched = path
        .exec(&path.client, BULK)
        .args(["fetch", "--addr", &format!("{SERVER}:{bulk_port}")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&fetched.stdout).trim(), "1048576");
    let _ = bulk.wait();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(echo.id() as i32, libc::SIGTERM) };
    let _ = echo.wait();
    if let Some(dump) = dump {
        dump.stop();
    }
    let events = trace.stop();
    let counters = path.nstat(&path.server);
    let client_counters = path.nstat(&path.client);
    let tshark = capture.then(|| repeats_in_capture(&pcap));
    if std::env::var_os("KEEP_CAPTURE").is_none() {
        let _ = std::fs::remove_file(&pcap);
    }

    let traced = traced_retransmissions(&events);
    let seen: Vec<(u64, u64)> = traced.iter().map(|(p, s, _)| (*p, *s)).collect();
    if let Some(tshark) = tshark {
        let unmatched: Vec<&Value> = events
            .iter()
            .filter(|e| {
                e["retransmit"].is_string()
                    && !tshark.contains(&(e["lport"].as_u64().unwrap(), e["seq"].as_u64().unwrap()))
            })
            .collect();
        assert_eq!(
            seen, tshark,
            "retransmitted segments (port, seq): the tracer's vs the capture's on the server's \
             veth; the tracer's alone: {unmatched:?}"
        );
    }
    // The capture on the server's veth holds both directions; the kernel counts per namespace.
    let servers = [u64::from(echo_port), u64::from(bulk_port)];
    let (server_side, client_side): (Vec<_>, Vec<_>) =
        traced.iter().partition(|(p, _, _)| servers.contains(p));
    let count = |kind: &str| server_side.iter().filter(|(_, _, k)| k == kind).count() as u64;
    let tcp = |c: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        c.iter()
            .filter(|(k, _)| k.starts_with("Tcp"))
            .map(|(k, v)| (k.clone(), *v))
            .filter(|(_, v)| *v > 0)
            .collect()
    };
    let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
    let why = format!("{traced:?} {:?}", tcp(&counters));
    assert_eq!(server_side.len() as u64, counter("TcpRetransSegs"), "{why}");
    assert_eq!(count("fast"), counter("TcpExtTCPFastRetrans"), "{why}");
    // A tail-loss probe sends new data when the window allows (counted by the kernel, but no
    // retransmission); it resends the last segment otherwise. Under emulation (5.10 in QEMU)
    // the bulk transfer sometimes probes with new data.
    assert!(
        count("loss_probe") <= counter("TcpExtTCPLossProbes"),
        "{why}"
    );
    assert_eq!(
        client_side.len() as u64,
        client_counters.get("TcpRetransSegs").copied().unwrap_or(0),
        "the client's retransmissions: {traced:?} {:?}",
        tcp(&client_counters)
    );
    // Every drop was recovered: the echo reply by a probe, the bulk holes by retransmissions.
    let on = |port: u16| {
        traced
            .iter()
            .filter(|(p, _, _)| *p == u64::from(port))
            .count()
    };
    assert!(on(echo_port) >= 1 && on(bulk_port) >= 2, "{traced:?}");
    // The probe resent exactly the lost reply: the second, after the first's 18 bytes.
    let probe = events
        .iter()
        .find(|e| e["retransmit"] == "loss_probe" && e["lport"] == echo_port)
        .expect("a tail-loss probe of the echo reply");
    assert_eq!(probe["rel_seq"], 19, "{probe}");
    assert_eq!(probe["len"], 18, "{probe}");

    // The summary adds them up per connection, by kind.
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    let server_conns: Vec<&Value> = summary["conns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] == "server")
        .collect();
    let summed: u64 = server_conns
        .iter()
        .map(|c| c["retransmits"].as_u64().unwrap())
        .sum();
    assert_eq!(summed, server_side.len() as u64, "{summary}");
    for c in &server_conns {
        let cc = &c["congestion"];
        assert!(cc["algorithm"].is_string(), "{c}");
        assert!(cc["cwnd_max"].as_u64().unwrap() >= 10, "{c}");
        let by_kind: u64 = ["syn", "syn_ack", "timeout", "fast", "loss_probe"]
            .iter()
            .map(|k| cc["retransmits"][k].as_u64().unwrap())
            .sum();
        assert_eq!(by_kind, c["retransmits"].as_u64().unwrap(), "{c}");
    }
}

#[test]
fn resent_syn_acks_agree_with_tcpdump_and_the_kernels_counters() {
    syn_ack_lab("y", true);
}

/// The same without the capture, for the QEMU guests (no tcpdump there).
#[test]
fn resent_syn_acks_agree_with_the_kernels_counters() {
    syn_ack_lab("z", false);
}

/// The handshake's last ACK lost: the server's namespace drops the client's pure ACKs until
/// the server has sent its SYN-ACK again, so the server's SYN-ACK timer fires; then lets them
/// through, and the connection completes and carries a transfer. Each SYN-ACK sent again must
/// be the accepted connection's `syn_ack` retransmission (no socket exists for it yet, only
/// the listener's request), as many as the kernel's `TcpExtTCPSynRetrans` counts and, with
/// `capture`, as many as the SYN-ACKs after the first in a capture on the server's veth.
fn syn_ack_lab(tag: &str, capture: bool) {
    let path = Path2::new(tag);
    let port = support::free_port();
    let rules = format!(
        "table ip synack {{\n chain c {{\n  type filter hook prerouting priority raw; policy accept;\n  \
         ip saddr {CLIENT} tcp dport {port} tcp flags == ack counter drop\n }}\n}}\n"
    );
    let mut nft = path
        .exec(&path.server, "nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft (nftables) is installed");
    use std::io::Write;
    nft.stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success(), "nft rejected {rules}");

    let pcap = std::env::temp_dir().join(format!("tracer-synack-{}.pcap", std::process::id()));
    let trace = support::start(&["--port", &port.to_string()]);
    let dump = capture.then(|| Tcpdump::start(Some(&path.server), "vs", &["tcp"], &pcap));
    let mut bulk = path
        .exec(&path.server, BULK)
        .args(["serve", "--port", &port.to_string(), "--bytes", "65536"])
        .spawn()
        .unwrap();
    path.wait_listening(port);
    let fetch = path
        .exec(&path.client, BULK)
        .args(["fetch", "--addr", &format!("{SERVER}:{port}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while path
        .nstat(&path.server)
        .get("TcpExtTCPSynRetrans")
        .copied()
        .unwrap_or(0)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the server never sent its SYN-ACK again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    support::run(
        path.exec(&path.server, "nft")
            .args(["delete", "table", "ip", "synack"]),
    );

    let fetched = fetch.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&fetched.stdout).trim(), "65536");
    let _ = bulk.wait();
    if let Some(dump) = dump {
        dump.stop();
    }
    let events = trace.stop();
    let counters = path.nstat(&path.server);
    let syn_acks = capture.then(|| {
        let out = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&pcap)
            .args([
                "src",
                SERVER,
                "and",
                "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "tcpdump -r");
        String::from_utf8_lossy(&out.stdout).lines().count() as u64
    });
    // The handshake as the capture shows it: from the client's SYN to its ACK of the last
    // SYN-ACK (the one the server's namespace let through).
    let handshake_ns = capture.then(|| {
        let out = Command::new("tcpdump")
            .args(["-tt", "-n", "-r"])
            .arg(&pcap)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<(f64, &str)> = text
            .lines()
            .filter_map(|l| Some((l.split(' ').next()?.parse().ok()?, l)))
            .collect();
        let from_client = |l: &str| l.contains(&format!("IP {CLIENT}."));
        let syn = lines
            .iter()
            .find(|(_, l)| from_client(l) && l.contains("Flags [S],"))
            .expect("the SYN");
        let last_syn_ack = lines
            .iter()
            .rposition(|(_, l)| l.contains("Flags [S.]"))
            .unwrap();
        let ack = lines[last_syn_ack..]
            .iter()
            .find(|(_, l)| from_client(l))
            .expect("the last SYN-ACK answered");
        ((ack.0 - syn.0) * 1e9) as i64
    });
    if std::env::var_os("KEEP_CAPTURE").is_none() {
        let _ = std::fs::remove_file(&pcap);
    }

    let resent: Vec<&Value> = events
        .iter()
        .filter(|e| e["retransmit"] == "syn_ack")
        .collect();

    let kernel = counters.get("TcpExtTCPSynRetrans").copied().unwrap_or(0);
    assert!(kernel >= 1);
    assert_eq!(resent.len() as u64, kernel, "{resent:?}");
    if let Some(syn_acks) = syn_acks {
        assert_eq!(
            resent.len() as u64 + 1,
            syn_acks,
            "SYN-ACKs captured: {syn_acks}"
        );
    }
    // Each is the server's connection's, and resends the SYN-ACK's one sequence number.
    for e in &resent {
        assert_eq!(e["lport"], port, "{e}");
        assert_eq!(e["rel_seq"], 0, "{e}");
        assert_eq!(e["len"], 1, "{e}");
        assert!(
            e.get("cwnd").is_none(),
            "a request has no congestion numbers: {e}"
        );
    }
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    let conns = summary["conns"].as_array().unwrap();
    let server = conns
        .iter()
        .find(|c| c["role"] == "server" && c["lport"] == port)
        .expect("the accepted connection");
    assert_eq!(
        server["congestion"]["retransmits"]["syn_ack"], kernel,
        "{server}"
    );
    assert_eq!(server["bytes_sent"], 65536, "{server}");
    // The server's handshake lasted from the SYN's arrival to the last ACK's, not from when
    // its socket was made (at the last ACK).
    let traced_ns = server["handshake_ns"].as_i64().unwrap();
    assert!(traced_ns >= 1_000_000_000, "{server}");
    if let Some(captured_ns) = handshake_ns {
        assert!(
            (traced_ns - captured_ns).abs() < 5_000_000,
            "handshake: traced {traced_ns} ns, captured {captured_ns} ns"
        );
    }
    assert_eq!(
        server["retransmits"].as_u64().unwrap(),
        counters.get("TcpRetransSegs").copied().unwrap_or(0),
        "{server} {counters:?}"
    );
    for c in conns.iter().filter(|c| c["role"] == "client") {
        assert_eq!(c["congestion"]["retransmits"]["syn_ack"], 0, "{c}");
    }
    assert_eq!(
        conns.iter().filter(|c| c["role"] == "server").count(),
        1,
        "one accepted connection, no half-open one: {summary}"
    );
}

/// `ss -tin`'s description of one socket as (key, value) pairs; the congestion-control
/// algorithm, a bare word just before `wscale:`, under the key `algorithm`.
fn ss_fields(line: &str) -> BTreeMap<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut fields: BTreeMap<String, String> = words
        .iter()
        .filter_map(|w| w.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(i) = words.iter().position(|w| w.starts_with("wscale:")) {
        fields.insert("algorithm".into(), words[i.saturating_sub(1)].to_string());
    }
    fields
}

fn num(e: &Value, key: &str) -> u64 {
    e[key].as_u64().unwrap_or_else(|| panic!("no {key} in {e}"))
}

/// `delivery_rate NNNbps` of `ss -in`: bits per second.
fn ss_rate(line: &str) -> Option<u64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "delivery_rate")?;
    words.get(i + 1)?.strip_suffix("bps")?.parse().ok()
}

/// `rb` (the receive buffer's size) in `skmem:(r0,rb131072,...)` of `ss -m`.
fn ss_rcvbuf(line: &str) -> Option<u64> {
    let skmem = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("skmem:("))?;
    skmem
        .trim_end_matches(')')
        .split(',')
        .find_map(|f| f.strip_prefix("rb"))?
        .parse()
        .ok()
}

/// ss prints times in milliseconds (`%g` of microseconds / 1000); back to microseconds.
fn ss_us(ms: &str) -> u64 {
    (ms.parse::<f64>().unwrap() * 1000.0).round() as u64
}

#[test]
fn congestion_numbers_agree_with_ss() {
    let path = Path2::new("b");
    let port = support::free_port();
    path.drop_segments(port, &[20, 300]);
    let trace = support::start(&["--port", &port.to_string(), "--sample-ms", "0"]);
    let mut bulk = path
        .exec(&path.server, BULK)
        .args(["serve", "--port", &port.to_string(), "--hold-ms", "2000"])
        // cubic sets ssthresh at a loss (bbr, these machines' default, leaves it infinite).
        .args(["--congestion", "cubic"])
        .spawn()
        .unwrap();
    path.wait_listening(port);
    // Everything read, a quiet half second (the last ACKs reach the server alone), then one
    // byte, twice: the server samples its numbers as each byte arrives (before it processes
    // it), and nothing changes them after (no data of its own in flight, nothing to
    // acknowledge). The second sample has the window the first byte brought.
    let mut fetch = path
        .exec(&path.client, BULK)
        .args(["fetch", "--addr", &format!("{SERVER}:{port}")])
        .args([
            "--ping-after",
            "1048576",
            "--quiet-ms",
            "500",
            "--pings",
            "2",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let line = path.ss_until(
        &path.server,
        &["-Htin", "state", "established", &format!("sport = :{port}")],
        20,
        |out| out.contains("bytes_received:2 "),
        "the pings never arrived",
    );
    assert!(fetch.wait().unwrap().success());
    assert!(bulk.wait().unwrap().success());
    let events = trace.stop();

    let ss = ss_fields(&line);
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    let conn = summary["conns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "server" && c["lport"] == port)
        .unwrap_or_else(|| panic!("no server connection on {port}: {summary}"));
    let last = &conn["congestion"]["last"];
    let why = format!("ss: {line}\ntracer: {last}");
    let ss_num = |key: &str| -> u64 { ss[key].parse().unwrap() };
    assert_eq!(last["algorithm"], ss["algorithm"].as_str(), "{why}");
    assert_eq!(last["cwnd"], ss_num("cwnd"), "{why}");
    assert_eq!(last["mss"], ss_num("mss"), "{why}");
    // ss shows ssthresh only once it is finite; a loss made it so.
    assert_eq!(last["ssthresh"], ss_num("ssthresh"), "{why}");
    let (rtt, rttvar) = ss["rtt"].split_once('/').unwrap();
    assert_eq!(last["srtt_us"], ss_us(rtt), "{why}");
    assert_eq!(last["rttvar_us"], ss_us(rttvar), "{why}");
    assert_eq!(last["rto_us"], ss_us(&ss["rto"]), "{why}");
    let total_retrans: u64 = ss["retrans"].split_once('/').unwrap().1.parse().unwrap();
    assert!(total_retrans >= 2, "{why}");
    assert_eq!(last["total_retrans"], total_retrans, "{why}");
    assert_eq!(conn["retransmits"], total_retrans, "{conn}");
    assert_eq!(last["packets_out"], 0, "{why}");
    assert_eq!(last["snd_wnd"], ss_num("snd_wnd"), "{why}");
    // ss -n prints the rate exactly, in bits per second.
    assert_eq!(
        last["delivery_rate"].as_u64().map(|r| r * 8),
        ss_rate(&line),
        "{why}"
    );
    assert_eq!(
        conn["congestion"]["bytes_retransmitted"],
        ss_num("bytes_retrans"),
        "{conn}\n{line}"
    );
}

/// Receive autotuning on the client of a 16 MiB download: the tracer's resizes start at the
/// namespace's `tcp_rmem` default, each starts where the last ended, and the last ends at the
/// size `ss -m` reads from the socket once everything is read. The segments are not captured
/// (`--no-packets`): 23,000 of them overflowed the ring in a one-CPU guest with kprobes, and a
/// resize record dropped with them (counted) left the chain broken.
#[test]
fn receive_buffer_autotuning_agrees_with_ss_and_the_sysctl() {
    let path = Path2::new("r");
    let port = support::free_port();
    let bytes = (16u64 << 20).to_string();
    let trace = support::start(&["--port", &port.to_string(), "--no-packets"]);
    let mut bulk = path
        .exec(&path.server, BULK)
        .args(["serve", "--port", &port.to_string(), "--bytes", &bytes])
        .args(["--hold-ms", "5000"])
        .spawn()
        .unwrap();
    path.wait_listening(port);
    let mut fetch = path
        .exec(&path.client, BULK)
        .args(["fetch", "--addr", &format!("{SERVER}:{port}")])
        .args(["--ping-after", &bytes, "--quiet-ms", "200"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The client has read everything and sent its ping: it will read nothing more, and the
    // server holds the connection open a while (long under emulation: each `ss` is slow).
    let all_read = format!("bytes_received:{bytes} ");
    let line = path.ss_until(
        &path.client,
        &["-Htmi", "state", "established", &format!("dport = :{port}")],
        30,
        |out| out.contains("bytes_sent:1 ") && out.contains(&all_read),
        "the client never pinged",
    );
    assert!(fetch.wait().unwrap().success());
    assert!(bulk.wait().unwrap().success());
    let events = trace.stop();
    let rmem = path
        .exec(&path.client, "cat")
        .arg("/proc/sys/net/ipv4/tcp_rmem")
        .output();
    let rmem = String::from_utf8_lossy(&rmem.unwrap().stdout).to_string();
    let initial: u64 = rmem.split_whitespace().nth(1).unwrap().parse().unwrap();

    let resizes: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "tcp_rcv_space_adjust" && e["rport"] == port)
        .collect();
    let sizes: Vec<(u64, u64)> = resizes
        .iter()
        .map(|e| (num(e, "rcvbuf_before"), num(e, "rcvbuf")))
        .collect();
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    let recvs = events
        .iter()
        .filter(|e| e["event"] == "tcp_recvmsg" && e["rport"] == port)
        .count();
    let why = format!(
        "resizes {sizes:?}\nss: {line}\ntcp_rmem: {rmem}\n{recvs} tcp_recvmsg events; \
         failures {}; skipped {}",
        summary["failures"], summary["skipped"]
    );
    // The resizes are noticed by the tcp_recvmsg hook; 5.10's tracepoint tier has none.
    let recv_hook = events[0]["hooks"].as_array().is_some_and(|hooks| {
        hooks
            .iter()
            .any(|h| h["hook"] == "tcp_recvmsg" && !h["tier"].is_null())
    });
    if !recv_hook {
        assert!(sizes.is_empty(), "{why}");
        return;
    }
    assert!(
        !sizes.is_empty(),
        "16 MiB read, the buffer never grew: {why}"
    );
    // A dropped record may be a resize: the chain below needs every one.
    assert_eq!(summary["dropped"], 0, "records dropped: {why}");
    assert_eq!(sizes[0].0, initial, "{why}");
    for pair in sizes.windows(2) {
        assert_eq!(pair[1].0, pair[0].1, "{why}");
    }
    assert_eq!(Some(sizes[sizes.len() - 1].1), ss_rcvbuf(&line), "{why}");
    let conn = summary["conns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "client" && c["rport"] == port)
        .unwrap_or_else(|| panic!("no client connection to {port}: {summary}"));
    let c = &conn["congestion"];
    assert_eq!(
        c["rcvbuf_resizes"].as_u64(),
        Some(sizes.len() as u64),
        "{c}"
    );
    assert_eq!(c["rcvbuf_first"].as_u64(), Some(initial), "{c}");
}

#[test]
fn the_loss_demo_shows_a_probe_and_a_fast_retransmit_and_leaves_nothing_behind() {
    assert!(support::is_root(), "run as root");
    let port = support::free_port();
    let plot = std::env::temp_dir().join(format!("tracer-loss-plot-{port}.svg"));
    let child = Command::new(support::TRACER)
        .args([
            "--demo",
            "loss",
            "--json",
            "--port",
            &port.to_string(),
            "--plot",
        ])
        .arg(&plot)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = support::output_within(child, Duration::from_secs(120), "the loss demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tracer --demo loss failed: {stderr}");
    assert!(stderr.contains("the lab dropped 2 segment(s)"), "{stderr}");
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let traced = traced_retransmissions(&events);
    // The second reply ("your message isfrom code", 24 bytes after the first's 20) is lost
    // and probed; the bulk transfer's hole is filled by a fast retransmit.
    let probe = events
        .iter()
        .find(|e| e["retransmit"] == "loss_probe" && e["lport"] == port)
        .unwrap_or_else(|| panic!("no probe of the echo reply: {traced:?}"));
    assert_eq!(
        (probe["rel_seq"].as_u64(), probe["len"].as_u64()),
        (Some(21), Some(24))
    );
    assert!(
        traced
            .iter()
            .any(|(p, _, k)| *p == u64::from(port) + 1 && k == "fast"),
        "no fast retransmit in the bulk transfer: {traced:?}"
    );
    // Samples and state changes are on the same connections' timelines.
    assert!(events.iter().any(|e| e["event"] == "tcp_rcv_established"));
    // Congestion-state changes come from `tcp:tcp_cong_state_set`; where the kernel lacks it
    // (5.10), from probes after the functions that decide the state, so only 5.10's
    // tracepoint tier has none (the ready line says the hook is missing there).
    let ca_state_hook = events[0]["hooks"].as_array().is_some_and(|hooks| {
        hooks
            .iter()
            .any(|h| h["hook"] == "tcp_set_ca_state" && !h["tier"].is_null())
    });
    if std::env::var("TRACER_EXPECT_TIER").is_ok_and(|tier| tier != "tracepoint") {
        assert!(
            ca_state_hook,
            "a probe tier watches congestion states on every kernel"
        );
    }
    assert_eq!(
        ca_state_hook,
        events
            .iter()
            .any(|e| e["event"] == "tcp_set_ca_state" && e["ca_state"] == "Recovery"),
        "Recovery entered, where the kernel can say so"
    );
    // Nothing of the lab is left.
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("tracer-lab-{pid}-")))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");

    // The picture: both connections that sent data, with their series, drawn by a browser.
    let doc = std::fs::read_to_string(&plot).unwrap();
    let _ = std::fs::remove_file(&plot);
    for series in ["sent", "retransmitted", "acked", "cwnd", "srtt"] {
        assert!(
            doc.matches(&format!("-{series}\"")).count() >= 2,
            "series {series} missing from the plot"
        );
    }
    if std::env::var_os("TRACER_NO_BROWSER").is_some() {
        // The QEMU guests have no browser; the series were found in the SVG above.
        return;
    }
    let colors = screenshot_colors(&doc);
    for (name, rgb) in [
        ("data sent (blue)", [0x1f, 0x5f, 0xbf]),
        ("sent again (red)", [0xd6, 0x27, 0x28]),
        ("acknowledged (green)", [0x2c, 0xa0, 0x2c]),
        ("ssthresh (orange)", [0xff, 0x7f, 0x0e]),
        ("srtt (purple)", [0x94, 0x67, 0xbd]),
    ] {
        // Anti-aliased edges blend into white: count pixels close to the colour.
        let n: usize = colors
            .iter()
            .filter(|(c, _)| c.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 24))
            .map(|(_, n)| n)
            .sum();
        assert!(n >= 20, "the rendered plot has {n} pixels of {name}");
    }
}

/// Renders an SVG document in headless Chromium and counts the pixels of each colour of the
/// screenshot, right of the legends' colour squares (x < 85) so that only series count.
fn screenshot_colors(doc: &str) -> std::collections::HashMap<[u8; 3], usize> {
    let dir = std::env::temp_dir().join(format!("tracer-plot-shot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("plot.svg");
    let png = dir.join("plot.png");
    std::fs::write(&svg, doc).unwrap();
    let height = doc
        .split("height=\"")
        .nth(1)
        .and_then(|h| h.split('"').next())
        .unwrap_or("2000")
        .to_string();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            &format!("--window-size=960,{height}"),
            &format!("--user-data-dir={}", dir.join("profile").display()),
            &format!("--screenshot={}", png.display()),
        ])
        .arg(format!("file://{}", svg.display()))
        .output()
        .expect("chromium is installed (cargo xtask conformance installs it)");
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let mut counts = std::collections::HashMap::new();
    for row in buf[..info.buffer_size()].chunks(info.line_size) {
        for px in row.chunks(channels).skip(85) {
            *counts.entry([px[0], px[1], px[2]]).or_insert(0) += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    counts
}

/// A loopback listener with a 4 KiB receive buffer (its accepted sockets inherit it): its
/// window fills at once.
fn small_window_listener() -> (std::net::TcpListener, u16) {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let small: libc::c_int = 4096;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live int of that size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const small).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Sends `bytes` to `listener`'s first connection, which waits `pause` before it reads them
/// all; checks they all arrived.
fn send_to_a_slow_reader(listener: std::net::TcpListener, pause: Duration, bytes: usize) {
    use std::io::{Read, Write};
    let port = listener.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        std::thread::sleep(pause);
        let mut all = Vec::new();
        stream.read_to_end(&mut all).unwrap();
        all.len()
    });
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(&vec![b'x'; bytes]).unwrap();
    drop(client);
    assert_eq!(reader.join().unwrap(), bytes);
}

/// Flow control against tshark: a receiver with a tiny buffer that reads late makes the
/// sender fill its window; the segments the tracer marks `window_full` are exactly those
/// tshark's analysis flags `tcp.analysis.window_full` in the tracer's own capture file of the
/// same traffic (the same segments in the same order: on loopback a sender's data and the
/// receiver's window update can pass tcpdump's hook in the other order than ours, and a
/// window is full or not depending on which came first).
#[test]
fn window_full_segments_agree_with_tshark() {
    let (listener, port) = small_window_listener();
    let pcap = std::env::temp_dir().join(format!("tracer-window-{}.pcap", std::process::id()));
    let trace = support::start(&[
        "--port",
        &port.to_string(),
        "--pcap",
        pcap.to_str().unwrap(),
    ]);
    send_to_a_slow_reader(listener, Duration::from_millis(300), 300_000);
    let events = trace.stop();

    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-Y", "tcp.analysis.window_full", "-T", "fields"])
        .args(["-e", "tcp.srcport", "-e", "tcp.seq_raw"])
        .output()
        .expect("tshark is installed");
    let _ = std::fs::remove_file(&pcap);
    assert!(out.status.success());
    let mut flagged: Vec<(u64, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (port, seq) = l.split_once('\t')?;
            Some((port.trim().parse().ok()?, seq.trim().parse().ok()?))
        })
        .collect();
    flagged.sort_unstable();
    let mut ours: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e["layer"] == "packet" && e["dir"] == "out" && e["window_full"] == true)
        .map(|e| (e["lport"].as_u64().unwrap(), e["seq"].as_u64().unwrap()))
        .collect();
    ours.sort_unstable();
    assert!(!flagged.is_empty(), "the sender never filled the window");
    let only_ours: Vec<_> = ours.iter().filter(|x| !flagged.contains(x)).collect();
    let only_tshark: Vec<_> = flagged.iter().filter(|x| !ours.contains(x)).collect();
    assert!(
        only_ours.is_empty() && only_tshark.is_empty(),
        "window-full segments ({} flagged by tshark): only the tracer's {only_ours:?}, only \
         tshark's {only_tshark:?}",
        flagged.len()
    );
}

/// A receiver that does not read: its window closes (zero window advertised) and, once it
/// reads, opens again. Both flags compared, segment for segment, with a tcpdump capture of the
/// same loopback traffic: zero windows as tshark flags them (`tcp.analysis.zero_window`), and
/// each sender's first non-zero window after a zero one, from the windows tshark reads.
#[test]
fn zero_windows_and_their_reopening_agree_with_a_capture() {
    let (listener, port) = small_window_listener();
    let pcap = std::env::temp_dir().join(format!("tracer-zero-{}.pcap", std::process::id()));
    let trace = support::start(&["--port", &port.to_string()]);
    let dump = Tcpdump::start(None, "lo", &["tcp", "port", &port.to_string()], &pcap);
    send_to_a_slow_reader(listener, Duration::from_millis(500), 200_000);
    dump.stop();
    let events = trace.stop();

    let fields = |filter: &str| -> Vec<Vec<u64>> {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args(["-Y", filter, "-T", "fields"])
            .args([
                "-e",
                "tcp.srcport",
                "-e",
                "tcp.seq_raw",
                "-e",
                "tcp.ack_raw",
            ])
            .args(["-e", "tcp.window_size_value", "-e", "tcp.flags.reset"])
            .output()
            .expect("tshark is installed");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                l.split('\t')
                    .map(|f| match f.trim() {
                        "True" => 1,
                        "False" => 0,
                        n => n.parse().unwrap_or(0),
                    })
                    .collect()
            })
            .collect()
    };
    let zero: Vec<Vec<u64>> = fields("tcp.analysis.zero_window");
    let all = fields("tcp");
    if std::env::var_os("KEEP_CAPTURE").is_none() {
        let _ = std::fs::remove_file(&pcap);
    }
    let key = |f: &Vec<u64>| (f[0], f[1], f[2]);
    let mut zero: Vec<(u64, u64, u64)> = zero.iter().map(key).collect();
    // Each sender's first window after a zero one, in capture order.
    let mut closed: BTreeMap<u64, bool> = BTreeMap::new();
    let mut opened: Vec<(u64, u64, u64)> = Vec::new();
    for f in &all {
        if f[4] == 1 {
            continue;
        }
        let was = closed.insert(f[0], f[3] == 0).unwrap_or(false);
        if was && f[3] > 0 {
            opened.push(key(f));
        }
    }
    let traced = |flag: &str| -> Vec<(u64, u64, u64)> {
        let mut v: Vec<_> = events
            .iter()
            .filter(|e| e["layer"] == "packet" && e["dir"] == "out" && e[flag] == true)
            .map(|e| {
                (
                    e["lport"].as_u64().unwrap(),
                    e["seq"].as_u64().unwrap(),
                    e["ack"].as_u64().unwrap(),
                )
            })
            .collect();
        v.sort_unstable();
        v
    };
    zero.sort_unstable();
    opened.sort_unstable();
    assert!(!zero.is_empty(), "the receiver never closed its window");
    assert!(
        !opened.is_empty(),
        "the receiver never opened its window again"
    );
    assert_eq!(
        traced("zero_window"),
        zero,
        "zero windows: the tracer's vs the capture's"
    );
    assert_eq!(
        traced("window_opened"),
        opened,
        "windows opened: the tracer's vs the capture's"
    );
}
