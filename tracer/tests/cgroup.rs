//! `--cgroup PATH`: of two identical echo servers, each in its own cgroup v2, only the one in
//! the named cgroup (or below it) is traced — filtered in the kernel by the current task's
//! cgroup id — and a cgroup created below it after the start joins within a second. Clients
//! outside the cgroup are not traced; one inside it is, and its connection names its cgroup
//! though it exits before the tracer could read `/proc`. The kernel's own account of
//! membership (`/proc/PID/cgroup`) is the oracle.
//!
//! Needs root and a cgroup v2 hierarchy.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A cgroup directory the test made, removed (with its children) when dropped.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(parent: &Path, name: &str) -> Self {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Cgroup(dir)
    }

    /// A command that runs `program args` inside this cgroup (moved there before it execs).
    fn command(&self, program: &str, args: &str) -> Command {
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(format!(
            "echo $$ > '{}/cgroup.procs' && exec '{program}' {args}",
            self.0.display()
        ));
        sh
    }

    /// Runs the echo server on `port` inside this cgroup.
    fn echo_server(&self, port: u16) -> Child {
        let child = self
            .command(
                support::ECHO_SERVER,
                &format!("--port {port} --bind 127.0.0.1"),
            )
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        support::wait_listening(port);
        let text = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
        let name = self.0.file_name().unwrap().to_string_lossy().into_owned();
        assert!(text.contains(&format!("/{name}\n")), "not moved: {text}");
        child
    }

    /// One echo exchange with the server on `port` from a client inside this cgroup; its pid.
    fn talk(&self, port: u16, message: &str) -> u32 {
        support::echo_exchange(
            &mut self.command(
                support::ECHO_CLIENT,
                &format!("--addr 127.0.0.1:{port} --message '{message}'"),
            ),
            message,
        )
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` in hybrid mode).
fn cgroup2_mount() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
        })
        .expect("a cgroup v2 hierarchy")
}

/// One echo exchange with the server on `port`, from outside any test cgroup.
fn talk(port: u16, message: &str) {
    support::echo_exchange(
        Command::new(support::ECHO_CLIENT).args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--message",
            message,
        ]),
        message,
    );
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// (pid, role, local port or 0 for a client) of every connection of the summary.
fn owners(events: &[Value]) -> Vec<(u64, String, u64)> {
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    let mut v: Vec<(u64, String, u64)> = summary["conns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["pid"].as_u64().unwrap_or(0),
                c["role"].as_str().unwrap_or("?").to_string(),
                // A client's port is the kernel's pick.
                if c["role"] == "client" {
                    0
                } else {
                    c["lport"].as_u64().unwrap_or(0)
                },
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn only_the_named_cgroup_and_its_descendants_are_traced() {
    assert!(support::is_root(), "run as root");
    let mount = cgroup2_mount();
    let tag = std::process::id();
    let a = Cgroup::new(&mount, &format!("tracer-test-{tag}-a"));
    let b = Cgroup::new(&mount, &format!("tracer-test-{tag}-b"));
    let inner = Cgroup::new(&a.0, "inner");
    let (pa, pb, pc) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let server_a = inner.echo_server(pa);
    let server_b = b.echo_server(pb);

    let trace = support::start(&["--cgroup", a.0.to_str().unwrap()]);
    talk(pa, "to a");
    talk(pb, "to b");
    // From inside the traced cgroup to the server outside it: the client is traced.
    let client = inner.talk(pb, "from a");
    // A cgroup made below the traced one after the start: picked up within a second.
    let late = Cgroup::new(&a.0, "late");
    std::thread::sleep(Duration::from_millis(1500));
    let server_c = late.echo_server(pc);
    talk(pc, "to c");
    std::thread::sleep(Duration::from_millis(200));
    let (ida, idb, idc) = (server_a.id(), server_b.id(), server_c.id());
    stop(server_a);
    stop(server_b);
    stop(server_c);
    let events = trace.stop();

    let got = owners(&events);
    let expected: Vec<(u64, String, u64)> = {
        let mut v = vec![
            (u64::from(ida), "listener".to_string(), u64::from(pa)),
            (u64::from(ida), "server".to_string(), u64::from(pa)),
            (u64::from(idc), "listener".to_string(), u64::from(pc)),
            (u64::from(idc), "server".to_string(), u64::from(pc)),
            (u64::from(client), "client".to_string(), 0),
        ];
        v.sort();
        v
    };
    assert_eq!(
        got,
        expected,
        "server b ({idb}, port {pb}) and the other clients are outside the cgroup: {}",
        support::brief(&events)
    );
    // Server a's accept was blocked before the tracer started: its fd is adopted at the
    // accept's return (the task is in the cgroup), so its reads and writes show.
    let (received, sent) = support::adopted_accept_bytes(&events, ida);
    let echoed = "your message isto a".len() as u64;
    assert_eq!(
        received.unwrap_or(vec![4]),
        [4],
        "{}",
        support::brief(&events)
    );
    assert_eq!(
        sent.unwrap_or(vec![echoed]),
        [echoed],
        "{}",
        support::brief(&events)
    );
    let ready = &events[0];
    assert_eq!(ready["event"], "ready");
    // Every event and connection says which cgroup, as /proc/PID/cgroup spells it: the path
    // the test made, below the hierarchy's mount. The client had exited before its first
    // record was read: its cgroup is what the kernel told.
    let path_of = |c: &Cgroup| format!("/{}", c.0.strip_prefix(&mount).unwrap().display());
    let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
    for e in events
        .iter()
        .filter(|e| e["conn"].is_u64())
        .chain(summary["conns"].as_array().unwrap())
    {
        let want = if e["lport"] == pa || e["pid"] == client {
            path_of(&inner)
        } else {
            path_of(&late)
        };
        assert_eq!(e["cgroup"], want.as_str(), "{e}");
    }
    drop(late);
    drop(inner);
}

#[test]
fn a_path_that_is_no_cgroup_is_refused_in_one_line() {
    let out = Command::new(support::TRACER)
        .args(["--cgroup", "/etc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--cgroup /etc: not a cgroup v2 directory"),
        "{stderr}"
    );
}
