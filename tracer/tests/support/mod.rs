//! Test harness: runs the real `tracer` binary (as root, on the live kernel) with `--json`,
//! drives real sockets with the echo demo, and hands back the parsed events.
#![allow(dead_code)]

pub mod capture;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TRACER: &str = env!("CARGO_BIN_EXE_tracer");
pub const ECHO_SERVER: &str = env!("CARGO_BIN_EXE_echo-server");
pub const ECHO_CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");

/// How long a tracer may take to become ready. A start takes a fraction of a second on a host
/// and 10-25 s in `cargo xtask vm-test`'s emulated guests, twice that when both guests of a
/// 2-core machine verify programs at once: the limit only decides how long a broken start is
/// waited for.
pub const READY_LIMIT: Duration = Duration::from_secs(90);

/// How long a tracer may take to exit after SIGINT: detaching its programs takes 2-3 s on a
/// host (one RCU grace period per tracepoint) and several times that under emulation.
pub const EXIT_LIMIT: Duration = Duration::from_secs(60);

/// A running tracer.
pub struct Trace {
    child: Child,
    reader: JoinHandle<Vec<Value>>,
}

/// Starts `tracer --json ARGS` and waits for its `ready` line.
pub fn start(args: &[&str]) -> Trace {
    assert!(
        is_root(),
        "the live tests load eBPF programs: run them as root"
    );
    // `cargo xtask vm-test` runs these tests once per probe mode.
    let mode = std::env::var("TRACER_PROBE_MODE").ok();
    let mode_args: Vec<&str> = match &mode {
        Some(m) if !args.contains(&"--probe-mode") => vec!["--probe-mode", m.as_str()],
        _ => Vec::new(),
    };
    let mut child = Command::new(TRACER)
        .arg("--json")
        .args(&mode_args)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracer");
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut events = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read tracer output");
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("tracer printed non-JSON {line:?}: {e}"));
            if v["event"] == "ready" {
                let _ = ready_tx.send(());
            }
            events.push(v);
        }
        events
    });
    if ready_rx.recv_timeout(READY_LIMIT).is_err() {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "tracer never became ready within {READY_LIMIT:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Trace { child, reader }
}

impl Trace {
    /// The tracer's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the tracer with SIGINT (as Ctrl-C would) and returns every line it printed.
    pub fn stop(self) -> Vec<Value> {
        self.stop_with_stderr().0
    }

    /// As [`Trace::stop`], with what it wrote to stderr.
    pub fn stop_with_stderr(mut self) -> (Vec<Value>, String) {
        // Let the last records arrive and leave the reorder window.
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + EXIT_LIMIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "tracer did not exit after SIGINT"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            use std::io::Read;
            let _ = pipe.read_to_string(&mut stderr);
        }
        assert!(status.success(), "tracer exited with {status}: {stderr}");
        (self.reader.join().expect("reader thread"), stderr)
    }
}

/// `tracer replay FILE --json ARGS`: the events a recording renders, without privileges.
pub fn replay(file: &Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(TRACER)
        .arg("replay")
        .arg(file)
        .arg("--json")
        .args(args)
        .output()
        .expect("tracer replay");
    assert!(
        out.status.success(),
        "tracer replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("replay printed JSON"))
        .collect()
}

/// A live run's lines as a replay of its recording prints them: without the `ready` line
/// (the hooks are the live run's alone), and with the meta lines' dates, which a replay takes
/// from the recorded clock, left out.
pub fn as_replayed(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["event"] != "ready")
        .map(|e| {
            let mut e = e.clone();
            if e["layer"] == "meta"
                && let Some(o) = e.as_object_mut()
            {
                o.remove("ts_ns");
            }
            e
        })
        .collect()
}

/// Runs `cmd` to its end; fails the test, with its stderr, unless it succeeds.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a Python `script` with `args` to its end and returns what it printed; fails the test,
/// with its stderr, unless it succeeds.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `child` (stdout and stderr piped) printed and how it ended, read while it runs (a
/// full pipe would stop it); it is killed and the test fails if it has not ended within
/// `limit`.
pub fn output_within(child: Child, limit: Duration, what: &str) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child, which has not been reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what} did not end within {} s", limit.as_secs());
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Waits until something listens on `port` (checked in /proc, without connecting).
pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tracer::system::sockets::is_listening(port) {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What one echo session did.
pub struct Echo {
    pub server_pid: u32,
    pub client_pid: u32,
    pub port: u16,
    pub messages: Vec<String>,
}

/// Runs `client` (an echo client, or a command that execs one, sending `message` to
/// 127.0.0.1:`port`) to its end and checks the echo; its pid.
pub fn echo_exchange(client: &mut Command, message: &str) -> u32 {
    let child = client.stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("your message is{message}")
    );
    pid
}

/// Runs the echo server on `bind`:`port`, a client exchanging `messages`, then stops the server.
pub fn echo_session(bind: &str, port: u16, messages: &[&str]) -> Echo {
    let mut server = echo_server(Path::new(ECHO_SERVER), bind, port);
    let addr = if bind.contains(':') {
        format!("[{bind}]:{port}")
    } else {
        format!("{bind}:{port}")
    };
    let mut client = Command::new(ECHO_CLIENT);
    client.args(["--addr", &addr]);
    for m in messages {
        client.args(["--message", m]);
    }
    let client = client
        .stdout(Stdio::piped())
        .spawn()
        .expect("start echo-client");
    let client_pid = client.id();
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success(), "echo-client failed");
    let replies = String::from_utf8_lossy(&out.stdout);
    for m in messages {
        assert!(
            replies.contains(&format!("your message is{m}")),
            "reply to {m} missing: {replies}"
        );
    }
    // Let the server see the client's FIN and close its side.
    std::thread::sleep(Duration::from_millis(200));
    let server_pid = server.id();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server_pid as i32, libc::SIGTERM) };
    let _ = server.wait();
    Echo {
        server_pid,
        client_pid,
        port,
        messages: messages.iter().map(|m| m.to_string()).collect(),
    }
}

/// Starts the echo server `program` (the demo's, or a renamed copy of it) on `bind`:`port`
/// and waits until it listens.
pub fn echo_server(program: &Path, bind: &str, port: u16) -> Child {
    let server = spawn_retrying(
        Command::new(program)
            .args(["--port", &port.to_string(), "--bind", bind])
            .stderr(Stdio::null()),
    );
    wait_listening(port);
    server
}

/// Copies the program `src` to `dir/name` (a test needs a process by that name) and returns
/// the path.
pub fn renamed_copy(src: &str, dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::copy(src, &path).unwrap();
    path
}

/// Spawns `cmd`, retrying while the kernel says the program file is busy: another test thread
/// that forks while a just-copied binary is still open for writing lends that fd to its child
/// until the child execs (`ETXTBSY`, a known race of copy-then-exec in threaded programs).
pub fn spawn_retrying(cmd: &mut Command) -> Child {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.expect("spawn"),
        }
    }
}

/// Every event on a line of its own, without the fields that do not tell events apart: the
/// message of an assertion about the whole trace.
pub fn brief(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["layer"] != "meta")
        .map(|e| {
            let mut e = e.clone();
            if let Some(o) = e.as_object_mut() {
                for noise in ["comm", "family", "hook", "ts_ns", "options", "window"] {
                    o.remove(noise);
                }
            }
            e.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The events of layer `layer`.
pub fn layer<'a>(events: &'a [Value], layer: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["layer"] == layer).collect()
}

/// The events of connection `conn`, in time order.
pub fn of_conn(events: &[Value], conn: u64) -> Vec<&Value> {
    let mut v: Vec<&Value> = events.iter().filter(|e| e["conn"] == conn).collect();
    v.sort_by_key(|e| e["ts_ns"].as_u64());
    v
}

/// `(from, to)` of every state event of `conn`, in order.
pub fn states(events: &[Value], conn: u64) -> Vec<(String, String)> {
    of_conn(events, conn)
        .into_iter()
        .filter(|e| e["layer"] == "state")
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Transitions written as `"A>B"`.
pub fn path(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The connection whose state events include `from -> to` and that belongs to `pid`.
pub fn conn_with(events: &[Value], pid: u32, from: &str, to: &str) -> u64 {
    events
        .iter()
        .find(|e| e["layer"] == "state" && e["pid"] == pid && e["from"] == from && e["to"] == to)
        .and_then(|e| e["conn"].as_u64())
        .unwrap_or_else(|| panic!("no {from} -> {to} for pid {pid} in {events:#?}"))
}

/// The send family of syscalls.
pub const SENDS: [&str; 4] = ["write", "sendto", "sendmsg", "writev"];
/// The receive family of syscalls.
pub const RECVS: [&str; 4] = ["read", "recvfrom", "recvmsg", "readv"];

/// The syscalls of `conn` named in `names` (the send or the receive family).
pub fn data_calls<'a>(events: &'a [Value], conn: u64, names: &[&str]) -> Vec<&'a Value> {
    of_conn(events, conn)
        .into_iter()
        .filter(|e| e["layer"] == "syscall" && names.contains(&e["name"].as_str().unwrap_or("")))
        .collect()
}

/// Whether the `ready` event reports hook `name` attached (at any tier).
pub fn attached(events: &[Value], name: &str) -> bool {
    events[0]["hooks"].as_array().is_some_and(|hooks| {
        hooks
            .iter()
            .any(|h| h["hook"] == name && !h["tier"].is_null())
    })
}

/// The non-zero byte counts of `events`, in order.
pub fn bytes(events: &[&Value]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| e["bytes"].as_u64())
        .filter(|&b| b > 0)
        .collect()
}

/// For a server whose `accept` was already blocked when the tracer started: the bytes of its
/// receive-family and send-family syscalls on the connection it accepted. The accept's enter
/// was never seen; its fd is adopted at the accept's return (the task passed the filter), and
/// each call is tied to the connection by the kernel's receive or send hook, where attached
/// (`None` for a direction whose hook is missing on this kernel).
pub fn adopted_accept_bytes(events: &[Value], pid: u32) -> (Option<Vec<u64>>, Option<Vec<u64>>) {
    let conn = conn_with(events, pid, "LISTEN", "SYN_RECV");
    let of = |hook: &str, names: &[&str]| {
        attached(events, hook).then(|| bytes(&data_calls(events, conn, names)))
    };
    (of("tcp_recvmsg", &RECVS), of("tcp_sendmsg", &SENDS))
}
