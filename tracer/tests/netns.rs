//! `--netns PATH|PID`: two network namespaces each run the same echo server on the same
//! address and port, and a client talks to each; only the named namespace's connections are
//! traced — the socket's own namespace is checked in the kernel, so the other namespace's
//! accepted child (same port, same listener entry) stays out. `ip netns` and the kernel's
//! `/proc/PID/ns/net` are the oracle.
//!
//! Needs root and iproute2.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A named network namespace with loopback up, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Self {
        support::run(Command::new("ip").args(["netns", "add", &name]));
        support::run(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        Netns(name)
    }

    fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    /// The echo server on 127.0.0.1:`port` in this namespace, listening.
    fn echo_server(&self, port: u16) -> Child {
        let child = self
            .exec(support::ECHO_SERVER)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self
                .exec("ss")
                .args(["-Hltn", &format!("sport = :{port}")])
                .output()
                .unwrap();
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "no listener in {}", self.0);
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// One echo exchange inside this namespace; the client's pid.
    fn talk(&self, port: u16, message: &str) -> u32 {
        support::echo_exchange(
            self.exec(support::ECHO_CLIENT).args([
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--message",
                message,
            ]),
            message,
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// A connection as the test compares it: comm, role, bytes sent, bytes received.
type Shape = (String, String, u64, u64);

/// The shape of every connection of the summary, and the pids that own them.
fn conns(events: &[Value]) -> (Vec<Shape>, Vec<u64>) {
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    let all = summary["conns"].as_array().unwrap();
    let mut v: Vec<Shape> = all
        .iter()
        .map(|c| {
            (
                c["comm"].as_str().unwrap_or("?").to_string(),
                c["role"].as_str().unwrap_or("?").to_string(),
                c["bytes_sent"].as_u64().unwrap_or(0),
                c["bytes_received"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    let mut pids: Vec<u64> = all.iter().filter_map(|c| c["pid"].as_u64()).collect();
    pids.sort();
    pids.dedup();
    (v, pids)
}

/// Traces `--netns SELECTOR` while both namespaces run a session (each server started, and
/// blocked in `accept`, before the tracer); returns the events, the pids of the namespace
/// traced and its server's pid.
fn traced_sessions(a: &Netns, b: &Netns, selector: &str, port: u16) -> (Vec<Value>, Vec<u64>, u32) {
    let server_a = a.echo_server(port);
    let server_b = b.echo_server(port);
    let trace = support::start(&["--netns", selector]);
    let client_a = a.talk(port, "inside");
    let _client_b = b.talk(port, "outside!");
    std::thread::sleep(Duration::from_millis(200));
    let server_a_pid = server_a.id();
    stop(server_a);
    stop(server_b);
    let events = trace.stop();
    let mut pids = vec![u64::from(server_a_pid), u64::from(client_a)];
    pids.sort();
    (events, pids, server_a_pid)
}

/// The server's reads and writes of the connection it accepted show at the syscall layer,
/// though its accept was blocked before the tracer started (adopted at the accept's return
/// because the task is in the namespace traced).
fn check_adopted_accept(events: &[Value], server: u32) {
    let (received, sent) = support::adopted_accept_bytes(events, server);
    assert_eq!(
        received.unwrap_or(vec![6]),
        [6],
        "{}",
        support::brief(events)
    );
    assert_eq!(sent.unwrap_or(vec![21]), [21], "{}", support::brief(events));
}

#[test]
fn only_the_named_network_namespace_is_traced() {
    assert!(support::is_root(), "run as root");
    let tag = std::process::id();
    let a = Netns::new(format!("tracer-test-{tag}-a"));
    let b = Netns::new(format!("tracer-test-{tag}-b"));
    let port = support::free_port();
    // The listener, the accepted connection and the client of namespace a; nothing of b's
    // (whose messages are longer: a byte count from b would show).
    let expected = vec![
        ("echo-client".to_string(), "client".to_string(), 6, 21),
        ("echo-server".to_string(), "listener".to_string(), 0, 0),
        ("echo-server".to_string(), "server".to_string(), 21, 6),
    ];

    let (events, pids, server) = traced_sessions(&a, &b, &format!("/run/netns/{}", a.0), port);
    let (got, owners) = conns(&events);
    assert_eq!(got, expected, "{}", support::brief(&events));
    assert_eq!(owners, pids);
    check_adopted_accept(&events, server);
    // Every event and connection says which namespace: the inode of the namespace's file.
    // The client has exited before its first record is read: its namespace is what the
    // kernel told as it started its first traced syscall.
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(format!("/run/netns/{}", a.0))
        .unwrap()
        .ino();
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    for e in events
        .iter()
        .filter(|e| e["conn"].is_u64())
        .chain(summary["conns"].as_array().unwrap())
    {
        assert_eq!(e["netns"], inode, "{e}");
    }

    // The same namespace named by a pid inside it: the server's, started before the tracer.
    let holder = a
        .exec("sleep")
        .arg("30")
        .spawn()
        .expect("sleep in the namespace");
    std::thread::sleep(Duration::from_millis(100));
    let (events, _, server) = traced_sessions(&a, &b, &holder.id().to_string(), port);
    stop(holder);
    let (got, _) = conns(&events);
    assert_eq!(got, expected, "{}", support::brief(&events));
    check_adopted_accept(&events, server);
}

#[test]
fn a_file_that_is_no_network_namespace_is_refused_in_one_line() {
    let out = Command::new(support::TRACER)
        .args(["--netns", "/proc/self/ns/mnt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: --netns /proc/self/ns/mnt: not a network namespace (give /run/netns/NAME, \
         /proc/PID/ns/net or a pid)"
    );
}
