//! Conformance: the tracer against programs nobody here wrote (curl, Python's http.server,
//! nginx, redis, a Go echo pair), checked against tcpdump's capture of the same traffic and
//! strace's log of the server's calls, taken at the same moment.
//! Run as root with `cargo xtask conformance` (which installs the programs), over loopback and
//! across two network namespaces joined by a veth pair.

#[path = "support/oracle.rs"]
mod oracle;
mod support;

use std::ffi::OsStr;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::capture::Tcpdump;

use oracle::{Seg, differences, json_segments, payload_bytes, read_pcap};
use serde_json::Value;

/// How long one scenario may take (each takes seconds): past it a program hung, and the run
/// ends with a line naming the scenario rather than at CI's limit with no word.
const SCENARIO_LIMIT: Duration = Duration::from_secs(240);

/// A running scenario: the only one (each loads the tracer and drives megabytes through
/// loopback, and two at once on a 2-core machine would measure the machine, not the tracer),
/// and bounded by [`SCENARIO_LIMIT`].
struct Scenario {
    _serial: std::sync::MutexGuard<'static, ()>,
    _running: std::sync::mpsc::Sender<()>,
}

fn one_at_a_time() -> Scenario {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = std::thread::current()
        .name()
        .unwrap_or("a scenario")
        .to_string();
    let (running, ended) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if ended.recv_timeout(SCENARIO_LIMIT) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            // Straight to stderr: the test harness captures `eprintln!`.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "conformance: {name} still runs after {} s: a program hung; stopping the suite",
                SCENARIO_LIMIT.as_secs()
            );
            // Everything it started ends too, the tracer first among them (SIGTERM: it
            // detaches its programs).
            let ours = descendants(std::process::id());
            for signal in [libc::SIGTERM, libc::SIGKILL] {
                for &pid in &ours {
                    // SAFETY: kill(2) on processes this test started.
                    unsafe { libc::kill(pid as i32, signal) };
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            std::process::exit(1);
        }
    });
    Scenario {
        _serial: serial,
        _running: running,
    }
}

/// Everything one test leaves behind, removed at the end.
fn workdir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tracer-conformance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `cmd` run in network namespace `ns` (or here).
fn in_ns(ns: Option<&str>, program: &str) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// Waits until something in `ns` listens on `port`.
fn wait_listening_in(ns: Option<&str>, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = in_ns(ns, "ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .output()
            .unwrap();
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The local addresses `ss` lists as listening on TCP `port` in `ns`.
fn listening_addresses(ns: Option<&str>, port: u16) -> Vec<String> {
    let out = in_ns(ns, "ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|local| local.rsplit_once(':'))
        .map(|(addr, _)| addr.trim_matches(['[', ']']).to_string())
        .collect()
}

/// Two network namespaces joined by a veth pair, removed on drop.
struct Namespaces {
    server: String,
    client: String,
}

impl Namespaces {
    /// `server` gets `server_ip`, `client` gets `client_ip` (with prefix `/len`).
    fn new(tag: &str, server_ip: &str, client_ip: &str, len: u8) -> Self {
        let id = std::process::id() % 10000;
        let ns = Self {
            server: format!("tcs{tag}{id}"),
            client: format!("tcc{tag}{id}"),
        };
        let (vs, vc) = (format!("vs{tag}{id}"), format!("vc{tag}{id}"));
        for n in [&ns.server, &ns.client] {
            support::run(Command::new("ip").args(["netns", "add", n]));
            support::run(Command::new("ip").args(["-n", n, "link", "set", "lo", "up"]));
        }
        support::run(
            Command::new("ip").args(["link", "add", &vs, "type", "veth", "peer", "name", &vc]),
        );
        for (v, n, ip) in [(&vs, &ns.server, server_ip), (&vc, &ns.client, client_ip)] {
            support::run(Command::new("ip").args(["link", "set", v, "netns", n]));
            let mut add = vec!["-n", n, "addr", "add"];
            let cidr = format!("{ip}/{len}");
            add.push(&cidr);
            add.extend(["dev", v]);
            if ip.contains(':') {
                add.push("nodad");
            }
            support::run(Command::new("ip").args(&add));
            support::run(Command::new("ip").args(["-n", n, "link", "set", v, "up"]));
        }
        ns
    }

    /// The server side's veth.
    fn server_veth(&self) -> String {
        format!("vs{}", &self.server[3..])
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Where a scenario runs: both ends on loopback, or server and client in two namespaces.
#[derive(Clone, Copy)]
struct Place<'a> {
    ns: Option<&'a Namespaces>,
    /// The address the server listens on.
    ip: &'a str,
}

impl<'a> Place<'a> {
    const LOOPBACK: Place<'static> = Place {
        ns: None,
        ip: "127.0.0.1",
    };

    fn server(&self) -> Option<&'a str> {
        self.ns.map(|n| n.server.as_str())
    }

    fn client(&self) -> Option<&'a str> {
        self.ns.map(|n| n.client.as_str())
    }

    /// Where tcpdump captures: `lo`, or the server's veth.
    fn iface(&self) -> String {
        self.ns.map_or("lo".to_string(), |n| n.server_veth())
    }

    fn loopback(&self) -> bool {
        self.ns.is_none()
    }

    /// `ip:port` as a URL or `connect` names it.
    fn addr(&self, port: u16) -> String {
        if self.ip.contains(':') {
            format!("[{}]:{port}", self.ip)
        } else {
            format!("{}:{port}", self.ip)
        }
    }
}

/// Fails with every difference between tcpdump's segments and the tracer's, side by side.
fn same(what: &str, expected: &[Seg], got: &[Seg]) {
    let diffs = differences(expected, got);
    assert!(
        diffs.is_empty(),
        "{what} differs from tcpdump ({} segments there, {} here):\n  {}",
        expected.len(),
        got.len(),
        diffs.join("\n  ")
    );
}

/// The summary's connections.
fn conns(events: &[Value]) -> Vec<Value> {
    let summary = events
        .iter()
        .rev()
        .find(|e| e["event"] == "summary")
        .expect("summary");
    let lines = events.iter().filter(|e| e["layer"] != "meta").count();
    assert_eq!(
        summary["events"], lines,
        "the summary counts the lines it describes"
    );
    assert_eq!(summary["dropped"], 0, "no record may be dropped here");
    assert_eq!(summary["malformed"], 0, "no record may be malformed");
    summary["conns"].as_array().unwrap().clone()
}

/// Checks a traced run against tcpdump: every segment in each end's view and in the capture
/// file, the connections found, and the bytes each end counted.
fn conforms(events: &[Value], tcpdump: &[Seg], ours: &[Seg], server_port: u16) {
    assert!(!tcpdump.is_empty(), "tcpdump saw no traffic");
    same("the capture file", tcpdump, ours);
    same(
        "the senders' view (dir out)",
        tcpdump,
        &json_segments(events, "out"),
    );
    same(
        "the receivers' view (dir in)",
        tcpdump,
        &json_segments(events, "in"),
    );
    let conns = conns(events);
    let syns: Vec<&Seg> = tcpdump.iter().filter(|s| s.flags == "S").collect();
    let clients: Vec<&Value> = conns.iter().filter(|c| c["role"] == "client").collect();
    let servers: Vec<&Value> = conns.iter().filter(|c| c["role"] == "server").collect();
    assert_eq!(clients.len(), syns.len(), "one client per SYN: {conns:#?}");
    assert_eq!(servers.len(), syns.len(), "one server per SYN: {conns:#?}");
    // Each end's state path against the one RFC 793 derives from tcpdump's segments (a
    // transition the kernel reports twice, FIN_WAIT1 after shutdown() and again at close(),
    // counts once).
    for c in clients.iter().chain(servers.iter()) {
        let end = |a: &str, p: &str| {
            let addr = c[a].as_str().unwrap();
            format!("{}:{}", addr.strip_prefix("::ffff:").unwrap_or(addr), c[p])
        };
        let (local, remote) = (end("laddr", "lport"), end("raddr", "rport"));
        let mine: Vec<Seg> = tcpdump
            .iter()
            .filter(|s| (s.src == local && s.dst == remote) || (s.src == remote && s.dst == local))
            .cloned()
            .collect();
        let expected = oracle::state_path(&mine, &local, c["role"] == "client");
        let mut got: Vec<String> = c["states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        got.dedup();
        assert_eq!(
            got, expected,
            "state path of {c}: tracer (left), from tcpdump (right)"
        );
    }
    for c in clients {
        let port = c["lport"].as_u64().unwrap() as u16;
        let up = payload_bytes(tcpdump, port, server_port);
        let down = payload_bytes(tcpdump, server_port, port);
        assert_eq!(
            (c["bytes_sent"].as_u64(), c["bytes_received"].as_u64()),
            (Some(up), Some(down)),
            "client {c}"
        );
        let server = servers
            .iter()
            .find(|s| s["rport"] == port)
            .expect("its server end");
        assert_eq!(
            (
                server["bytes_sent"].as_u64(),
                server["bytes_received"].as_u64()
            ),
            (Some(down), Some(up)),
            "server {server}"
        );
    }
}

/// A server run in `ns` under `strace -f`, which logs its socket calls with the time each
/// returned.
struct Straced {
    strace: Child,
    /// The server's own process (strace's child).
    pid: u32,
    log: PathBuf,
}

impl Straced {
    /// Starts `program args` and waits until it listens on `port`.
    fn start<I, A>(ns: Option<&str>, program: &str, args: I, port: u16, log: &Path) -> Self
    where
        I: IntoIterator<Item = A>,
        A: AsRef<std::ffi::OsStr>,
    {
        let strace = in_ns(ns, "strace")
            .args([
                "-f",
                "-qq",
                "-ttt",
                "-T",
                "-e",
                &format!("trace={},clone,clone3,fork,vfork", oracle::TRACED_SYSCALLS),
                "-o",
            ])
            .arg(log)
            .arg("--")
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("strace is installed (cargo xtask conformance installs it)");
        wait_listening_in(ns, port);
        let pid = children(strace.id())[0];
        Self {
            strace,
            pid,
            log: log.to_path_buf(),
        }
    }

    /// The server's process and its descendants (nginx's worker), as they are now.
    fn processes(&self) -> Vec<u32> {
        let mut all = vec![self.pid];
        all.extend(descendants(self.pid));
        all
    }

    /// Sends `signal` to the server and waits until it and strace are gone; strace's log.
    fn stop(mut self, signal: i32) -> String {
        // SAFETY: kill(2) on the process strace started for us.
        unsafe { libc::kill(self.pid as i32, signal) };
        let _ = self.strace.wait();
        std::fs::read_to_string(&self.log).unwrap()
    }
}

/// The descendants of process `pid`, as they are now.
fn descendants(pid: u32) -> Vec<u32> {
    let mut all = children(pid);
    let mut i = 0;
    while i < all.len() {
        all.extend(children(all[i]));
        i += 1;
    }
    all
}

/// The children of process `pid`.
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The server's socket calls — accepts, and every call on a listener or an accepted socket —
/// as the tracer showed them for `pids` and as strace logged them since `since`: the same
/// calls with the same fds and results, as multisets (threads interleave). With `--port`,
/// the calls on a new socket before the bind that names the port were held in the kernel
/// and are shown too.
fn same_calls_as_strace(events: &[Value], strace_log: &str, since: f64, pids: &[u32]) {
    let mut expected = oracle::strace_socket_calls(strace_log, since);
    let mut got = oracle::traced_calls(events, pids);
    assert!(
        expected.iter().any(|c| c.0.starts_with("accept")),
        "strace saw the server accept"
    );
    expected.sort();
    got.sort();
    if got != expected {
        let mut lines = Vec::new();
        for c in &expected {
            if !got.contains(c) {
                lines.push(format!("only strace: {c:?}"));
            }
        }
        for c in &got {
            if !expected.contains(c) {
                lines.push(format!("only tracer: {c:?}"));
            }
        }
        let only_strace: Vec<&str> = strace_log
            .lines()
            .filter(|l| {
                lines.iter().any(|d| {
                    d.starts_with("only strace") && l.contains(d.split('"').nth(1).unwrap_or("?"))
                })
            })
            .collect();
        panic!(
            "the server's syscalls differ from strace's ({} vs {}):\n{}\nstrace's lines of those calls:\n{}",
            got.len(),
            expected.len(),
            lines.join("\n"),
            only_strace.join("\n")
        );
    }
}

/// Now, in seconds since the epoch (strace's `-ttt` clock).
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `curl URL` in `ns`: the HTTP status and the bytes it received.
fn curl(ns: Option<&str>, url: &str) -> (u32, u64) {
    let out = in_ns(ns, "curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "30",
            "-w",
            "%{http_code} %{size_download}",
            url,
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace();
    (
        f.next().unwrap().parse().unwrap(),
        f.next().unwrap().parse().unwrap(),
    )
}

/// A 5 MB download and a 404 from `http.server`, traced and captured.
fn download_and_404(place: Place, tag: &str) {
    let dir = workdir(tag);
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let body: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(www.join("big.bin"), &body).unwrap();
    let port = support::free_port();
    // The server starts first: the tracer must find its listener in /proc.
    let server = Straced::start(
        place.server(),
        "python3",
        [
            OsStr::new("-m"),
            OsStr::new("http.server"),
            OsStr::new(&port.to_string()),
            OsStr::new("--bind"),
            OsStr::new(place.ip),
            OsStr::new("--directory"),
            www.as_os_str(),
        ],
        port,
        &dir.join("strace.log"),
    );
    let capture = Tcpdump::start(
        place.server(),
        &place.iface(),
        &["tcp", "port", &port.to_string()],
        &dir.join("tcpdump.pcap"),
    );
    let ours = dir.join("tracer.pcap");
    let recording = dir.join("run.rec");
    let trace = support::start(&[
        "--port",
        &port.to_string(),
        "--pcap",
        ours.to_str().unwrap(),
        "--record",
        recording.to_str().unwrap(),
    ]);
    let since = now();
    assert_eq!(
        curl(
            place.client(),
            &format!("http://{}/big.bin", place.addr(port))
        ),
        (200, 5_000_000)
    );
    let (status, _) = curl(
        place.client(),
        &format!("http://{}/no-such-file", place.addr(port)),
    );
    assert_eq!(status, 404);
    std::thread::sleep(Duration::from_millis(300));
    let pids = server.processes();
    let strace_log = server.stop(libc::SIGTERM);
    let events = trace.stop();
    capture.stop();
    let tcpdump = read_pcap(&dir.join("tcpdump.pcap"));
    conforms(&events, &tcpdump, &read_pcap(&ours), port);
    same_calls_as_strace(&events, &strace_log, since, &pids);
    // The listener that was open before the tracer: found, with its address, and LISTEN.
    let conns = conns(&events);
    let listener = conns
        .iter()
        .find(|c| c["role"] == "listener")
        .expect("the listener");
    assert_eq!(listener["lport"], port);
    assert_eq!(listener["laddr"], place.ip);
    assert_eq!(listener["states"][0], "LISTEN");
    // The recording, replayed: the live run's every line, and a capture as tcpdump's.
    let replayed_pcap = dir.join("replayed.pcap");
    let replayed = support::replay(&recording, &["--pcap", replayed_pcap.to_str().unwrap()]);
    assert_eq!(
        support::as_replayed(&replayed),
        support::as_replayed(&events),
        "the replay differs from the live run"
    );
    conforms(&replayed, &tcpdump, &read_pcap(&replayed_pcap), port);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn curl_and_http_server_over_loopback_match_tcpdump() {
    let _one = one_at_a_time();
    download_and_404(Place::LOOPBACK, "lo");
}

#[test]
fn curl_and_http_server_across_two_namespaces_match_tcpdump_on_the_veth() {
    let _one = one_at_a_time();
    let ns = Namespaces::new("4", "10.201.0.1", "10.201.0.2", 24);
    download_and_404(
        Place {
            ns: Some(&ns),
            ip: "10.201.0.1",
        },
        "ns4",
    );
}

#[test]
fn curl_and_http_server_across_two_namespaces_over_ipv6_match_tcpdump() {
    let _one = one_at_a_time();
    let ns = Namespaces::new("6", "fd00:201::1", "fd00:201::2", 64);
    download_and_404(
        Place {
            ns: Some(&ns),
            ip: "fd00:201::1",
        },
        "ns6",
    );
}

/// nginx (master and worker: the worker accepts on a socket the master opened) serving 1 MiB
/// with `sendfile on`, started before the tracer (found in /proc) or after it (the worker,
/// forked after the start, inherits the master's traced listener).
fn nginx_sendfile(place: Place, started_before: bool) {
    let dir = workdir(&format!(
        "nginx-{}-{}",
        if started_before { "before" } else { "after" },
        if place.loopback() { "lo" } else { "ns" }
    ));
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("one.bin"), vec![7u8; 1 << 20]).unwrap();
    let port = support::free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process on; worker_processes 1; pid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{ access_log off; sendfile on; server {{ listen {addr}; root {w}; }} }}\n",
            d = dir.display(),
            w = www.display(),
            addr = place.addr(port),
        ),
    )
    .unwrap();
    let start_nginx = || {
        Straced::start(
            place.server(),
            "nginx",
            [
                OsStr::new("-c"),
                conf.as_os_str(),
                OsStr::new("-p"),
                dir.as_os_str(),
            ],
            port,
            &dir.join("strace.log"),
        )
    };
    let early = started_before.then(start_nginx);
    let ours = dir.join("tracer.pcap");
    let capture = Tcpdump::start(
        place.server(),
        &place.iface(),
        &["tcp", "port", &port.to_string()],
        &dir.join("tcpdump.pcap"),
    );
    let trace = support::start(&[
        "--port",
        &port.to_string(),
        "--pcap",
        ours.to_str().unwrap(),
    ]);
    let since = now();
    let nginx = early.unwrap_or_else(start_nginx);
    let (status, size) = curl(
        place.client(),
        &format!("http://{}/one.bin", place.addr(port)),
    );
    assert_eq!((status, size), (200, 1 << 20));
    std::thread::sleep(Duration::from_millis(300));
    let pids = nginx.processes();
    assert_eq!(pids.len(), 2, "nginx's master and worker");
    // SIGQUIT: nginx's graceful shutdown; the master waits for its worker.
    let strace_log = nginx.stop(libc::SIGQUIT);
    let events = trace.stop();
    capture.stop();
    let tcpdump = read_pcap(&dir.join("tcpdump.pcap"));
    conforms(&events, &tcpdump, &read_pcap(&ours), port);
    same_calls_as_strace(&events, &strace_log, since, &pids);
    let sendfile: Vec<&Value> = events
        .iter()
        .filter(|e| e["name"] == "sendfile" && e["layer"] == "syscall")
        .collect();
    assert!(!sendfile.is_empty(), "nginx's sendfile calls are traced");
    let sent: u64 = sendfile.iter().filter_map(|e| e["bytes"].as_u64()).sum();
    assert_eq!(sent, 1 << 20, "sendfile moved the whole file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nginx_started_before_the_tracer_sends_its_file_as_tcpdump_sees_it() {
    let _one = one_at_a_time();
    nginx_sendfile(Place::LOOPBACK, true);
}

#[test]
fn nginx_started_after_the_tracer_is_followed_into_its_worker() {
    let _one = one_at_a_time();
    nginx_sendfile(Place::LOOPBACK, false);
}

#[test]
fn nginx_across_two_namespaces_matches_tcpdump_on_the_veth() {
    let _one = one_at_a_time();
    let ns = Namespaces::new("n", "10.202.0.1", "10.202.0.2", 24);
    nginx_sendfile(
        Place {
            ns: Some(&ns),
            ip: "10.202.0.1",
        },
        false,
    );
}

/// Builds the Go echo pair (`tests/conformance/goecho`) with Debian's Go into `dir`.
fn build_goecho(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/goecho/main.go");
    let bin = dir.join("goecho");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env(
            "GOCACHE",
            std::env::temp_dir().join("tracer-conformance-gocache"),
        )
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .env("CGO_ENABLED", "0")
        .output()
        .expect("go is installed (cargo xtask conformance installs golang-go)");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// The Go echo server on a dual-stack listener (`:PORT`), talked to over IPv4: the server's
/// socket names both ends `::ffff:127.0.0.1`, its segments carry 127.0.0.1.
fn go_echo(place: Place, filter_by_pid: bool) {
    let dir = workdir(&format!(
        "go-{}-{}",
        if filter_by_pid { "pid" } else { "port" },
        if place.loopback() { "lo" } else { "ns" }
    ));
    let bin = build_goecho(&dir);
    let port = support::free_port();
    let server = Straced::start(
        place.server(),
        bin.to_str().unwrap(),
        ["server", &port.to_string()],
        port,
        &dir.join("strace.log"),
    );
    let capture = Tcpdump::start(
        place.server(),
        &place.iface(),
        &["tcp", "port", &port.to_string()],
        &dir.join("tcpdump.pcap"),
    );
    let ours = dir.join("tracer.pcap");
    let (key, value) = if filter_by_pid {
        ("--pid", server.pid.to_string())
    } else {
        ("--port", port.to_string())
    };
    let trace = support::start(&[key, &value, "--pcap", ours.to_str().unwrap()]);
    let since = now();
    let messages = ["hello", "from", "a goroutine"];
    let out = in_ns(place.client(), bin.to_str().unwrap())
        .args(["client", &place.addr(port)])
        .args(messages)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies = String::from_utf8_lossy(&out.stdout);
    for m in messages {
        assert!(
            replies.contains(&format!("your message is{m}\n")),
            "{replies}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let pids = server.processes();
    let strace_log = server.stop(libc::SIGKILL);
    let events = trace.stop();
    capture.stop();
    let tcpdump = read_pcap(&dir.join("tcpdump.pcap"));
    same_calls_as_strace(&events, &strace_log, since, &pids);
    if filter_by_pid {
        // Only the server is traced: each segment once, in its view, none elsewhere.
        let conns = conns(&events);
        assert!(
            conns.iter().all(|c| c["pid"] == pids[0]),
            "only the server's connections, no phantom: {conns:#?}"
        );
        let mut view = json_segments(&events, "out");
        view.extend(json_segments(&events, "in"));
        same("the server's view", &tcpdump, &view);
        same("the capture file", &tcpdump, &read_pcap(&ours));
        let s = conns
            .iter()
            .find(|c| c["role"] == "server")
            .expect("the server's connection");
        assert_eq!(
            s["laddr"], "::ffff:127.0.0.1",
            "as the server's socket names it"
        );
        let client_port = s["rport"].as_u64().unwrap() as u16;
        assert_eq!(
            (s["bytes_sent"].as_u64(), s["bytes_received"].as_u64()),
            (
                Some(payload_bytes(&tcpdump, port, client_port)),
                Some(payload_bytes(&tcpdump, client_port, port))
            )
        );
    } else {
        conforms(&events, &tcpdump, &read_pcap(&ours), port);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn go_echo_on_a_dual_stack_listener_matches_tcpdump() {
    let _one = one_at_a_time();
    go_echo(Place::LOOPBACK, false);
}

#[test]
fn go_echo_across_two_namespaces_matches_tcpdump_on_the_veth() {
    let _one = one_at_a_time();
    let ns = Namespaces::new("g", "10.203.0.1", "10.203.0.2", 24);
    go_echo(
        Place {
            ns: Some(&ns),
            ip: "10.203.0.1",
        },
        false,
    );
}

#[test]
fn go_echo_server_traced_by_pid_gets_every_segment_once() {
    let _one = one_at_a_time();
    go_echo(Place::LOOPBACK, true);
}

/// redis-server answering redis-benchmark (several connections at once, pipelined requests).
fn redis(place: Place) {
    let dir = workdir(if place.loopback() {
        "redis-lo"
    } else {
        "redis-ns"
    });
    let port = support::free_port();
    let port_arg = port.to_string();
    let mut args = vec![
        OsStr::new("--port"),
        OsStr::new(&port_arg),
        OsStr::new("--bind"),
    ];
    args.push(OsStr::new(place.ip));
    if place.loopback() {
        // A second listener, on the other family: both must be found.
        args.push(OsStr::new("::1"));
    }
    args.extend(
        [
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--dir",
        ]
        .map(OsStr::new),
    );
    args.push(dir.as_os_str());
    let server = Straced::start(
        place.server(),
        "redis-server",
        args,
        port,
        &dir.join("strace.log"),
    );
    let capture = Tcpdump::start(
        place.server(),
        &place.iface(),
        &["tcp", "port", &port.to_string()],
        &dir.join("tcpdump.pcap"),
    );
    let ours = dir.join("tracer.pcap");
    let recording = dir.join("run.rec");
    let trace = support::start(&[
        "--port",
        &port.to_string(),
        "--pcap",
        ours.to_str().unwrap(),
        "--record",
        recording.to_str().unwrap(),
    ]);
    let since = now();
    let out = in_ns(place.client(), "redis-benchmark")
        .args([
            "-h",
            place.ip,
            "-p",
            &port.to_string(),
            "-n",
            "2000",
            "-c",
            "4",
            "-P",
            "4",
            "-t",
            "ping,set,get",
            "-q",
        ])
        .output()
        .expect("redis-benchmark");
    assert!(
        out.status.success(),
        "redis-benchmark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    // What ss says listens, before redis stops.
    let mut listening = listening_addresses(place.server(), port);
    listening.sort();
    assert_eq!(listening.len(), if place.loopback() { 2 } else { 1 });
    let pids = server.processes();
    let strace_log = server.stop(libc::SIGTERM);
    let events = trace.stop();
    capture.stop();
    let tcpdump = read_pcap(&dir.join("tcpdump.pcap"));
    conforms(&events, &tcpdump, &read_pcap(&ours), port);
    same_calls_as_strace(&events, &strace_log, since, &pids);
    // Its listeners, older than the tracer: found with their addresses, LISTEN, and closed
    // when redis closed them — no connection of their own for the closing.
    let conns = conns(&events);
    let mut listeners: Vec<(String, Vec<String>, String)> = conns
        .iter()
        .filter(|c| c["role"] != "client" && c["role"] != "server")
        .map(|c| {
            (
                format!(
                    "{} {}",
                    c["role"].as_str().unwrap(),
                    c["laddr"].as_str().unwrap()
                ),
                serde_json::from_value(c["states"].clone()).unwrap(),
                c["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listeners.sort();
    let expected: Vec<(String, Vec<String>, String)> = listening
        .iter()
        .map(|ip| {
            (
                format!("listener {ip}"),
                vec!["LISTEN".to_string(), "CLOSE".to_string()],
                "listener closed".to_string(),
            )
        })
        .collect();
    assert_eq!(
        listeners, expected,
        "redis's listeners, tracer (left) and ss (right)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn redis_benchmark_against_redis_server_matches_tcpdump() {
    let _one = one_at_a_time();
    redis(Place::LOOPBACK);
}

#[test]
fn redis_across_two_namespaces_over_ipv6_matches_tcpdump_on_the_veth() {
    let _one = one_at_a_time();
    let ns = Namespaces::new("r", "fd00:204::1", "fd00:204::2", 64);
    redis(Place {
        ns: Some(&ns),
        ip: "fd00:204::1",
    });
}

/// The server closes first and the client waits: the server's socket, orphaned in FIN_WAIT2,
/// has become a TIME_WAIT mini-socket when the client's FIN arrives, and the kernel answers it
/// from a control socket that cgroup_skb never sees. That last ACK is still in every view.
#[test]
fn the_last_ack_of_a_time_wait_socket_is_seen_like_tcpdump_sees_it() {
    let _one = one_at_a_time();
    let dir = workdir("timewait");
    let port = support::free_port();
    let capture = Tcpdump::start(
        None,
        "lo",
        &["tcp", "port", &port.to_string()],
        &dir.join("tcpdump.pcap"),
    );
    let ours = dir.join("tracer.pcap");
    let trace = support::start(&[
        "--port",
        &port.to_string(),
        "--pcap",
        ours.to_str().unwrap(),
    ]);
    let script = "import socket, sys, time
port = int(sys.argv[1])
srv = socket.socket()
srv.bind(('127.0.0.1', port))
srv.listen()
cli = socket.create_connection(('127.0.0.1', port))
conn, _ = srv.accept()
conn.close()
time.sleep(0.3)
cli.close()
time.sleep(0.3)";
    support::python(script, &[&port.to_string()]);
    let events = trace.stop();
    capture.stop();
    let tcpdump = read_pcap(&dir.join("tcpdump.pcap"));
    assert_eq!(
        tcpdump.len(),
        7,
        "handshake, two FINs and their ACKs: {tcpdump:#?}"
    );
    conforms(&events, &tcpdump, &read_pcap(&ours), port);
    let last = events
        .iter()
        .rfind(|e| e["event"] == "tcp_segment")
        .unwrap();
    assert_eq!(last["hook"], "raw_tracepoint:net_dev_queue", "{last}");
    assert_eq!(last["flags"], "A", "{last}");
    let _ = std::fs::remove_dir_all(&dir);
}
