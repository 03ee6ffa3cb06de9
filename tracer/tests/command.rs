//! `tracer -- CMD`: the command starts only once everything is attached, it and every process
//! it starts are traced (followed in the kernel at fork), the run ends when it exits, the
//! tracer exits with its status, its stdout stays its own, and under sudo it runs as the
//! invoking user. Also `--pid N --follow-children`. Programs nobody here wrote are driven
//! (sh, curl, id) and their own accounts are the oracle: curl's exit code and byte counts, a
//! server's count of what it read and wrote.
//!
//! Needs root and curl (`cargo xtask test` installs it).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A JSON trace file, removed when dropped.
struct TraceFile(PathBuf);

impl TraceFile {
    fn new(tag: &str) -> Self {
        TraceFile(
            std::env::temp_dir().join(format!("tracer-command-{tag}-{}.jsonl", std::process::id())),
        )
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.0)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }
}

impl Drop for TraceFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `tracer --json -o FILE [extra] -- CMD...`, to its end (bounded).
fn run_traced(file: &TraceFile, extra: &[&str], cmd: &[&str], env: &[(&str, &str)]) -> Output {
    assert!(support::is_root(), "run as root");
    let mode = std::env::var("TRACER_PROBE_MODE").unwrap_or_else(|_| "auto".into());
    let child = Command::new(support::TRACER)
        .args(["--json", "--probe-mode", &mode, "-o"])
        .arg(&file.0)
        .args(extra)
        .arg("--")
        .args(cmd)
        // Run by sudo or not, the command runs as the test says.
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    support::output_within(
        child,
        Duration::from_secs(60),
        &format!("tracer -- {cmd:?}"),
    )
}

/// The echo demo's server on 127.0.0.1:`port` (not traced: outside the command's tree),
/// listening.
fn echo_server(port: u16) -> std::process::Child {
    support::echo_server(
        std::path::Path::new(support::ECHO_SERVER),
        "127.0.0.1",
        port,
    )
}

/// The connections of the summary.
fn conns(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .find(|e| e["event"] == "summary")
        .expect("a summary line")["conns"]
        .as_array()
        .unwrap()
        .clone()
}

/// The syscall names of connection `conn`, in order, with their results.
fn syscalls(events: &[Value], conn: u64) -> Vec<String> {
    support::of_conn(events, conn)
        .iter()
        .filter(|e| e["layer"] == "syscall")
        .map(|e| e["name"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn a_command_and_its_grandchildren_are_traced_and_its_status_is_returned() {
    let port = support::free_port();
    let mut server = echo_server(port);
    let file = TraceFile::new("tree");
    // sh runs sh, which runs the client: the client is the command's grandchild.
    let script = format!(
        "sh -c '{} --addr 127.0.0.1:{port} --message one --message three'; exit 3",
        support::ECHO_CLIENT
    );
    let out = run_traced(&file, &[], &["sh", "-c", &script], &[]);
    let _ = server.kill();
    let _ = server.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    // The command's stdout is its own: the replies, nothing of the tracer's.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["your message isone", "your message isthree"],
        "{stderr}"
    );
    assert!(stderr.contains("and every process it starts"), "{stderr}");

    let events = file.events();
    assert_eq!(
        events[0]["event"], "ready",
        "the trace starts before the command"
    );
    let conns = conns(&events);
    // Only the command's tree is traced: the server (not in it) has no connection here.
    assert_eq!(conns.len(), 1, "{conns:?}");
    let c = &conns[0];
    assert_eq!(c["comm"], "echo-client");
    assert_eq!(c["role"], "client");
    assert_eq!(c["rport"], port);
    assert_eq!(c["bytes_sent"], 3 + 5);
    assert_eq!(c["bytes_received"], 18 + 20);
    // From its first call on: nothing it did before the attach could be missed.
    let calls = syscalls(&events, c["conn"].as_u64().unwrap());
    assert_eq!(
        calls.first().map(String::as_str),
        Some("socket"),
        "{calls:?}"
    );
    assert!(calls.iter().any(|c| c == "connect"), "{calls:?}");
    assert_eq!(calls.last().map(String::as_str), Some("close"), "{calls:?}");
}

/// A tiny HTTP/1.0 server: answers one request with `body`, and reports how many bytes it
/// read (up to the end of the request's headers) and wrote.
fn http_once(body: &'static str) -> (u16, std::thread::JoinHandle<(usize, usize)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut buf).unwrap() {
                0 => break,
                n => request.extend_from_slice(&buf[..n]),
            }
        }
        let response = format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).unwrap();
        (request.len(), response.len())
    });
    (port, handle)
}

#[test]
fn curl_is_traced_from_start_to_end_and_its_exit_code_is_kept() {
    let (port, server) = http_once("hello from the test\n");
    let file = TraceFile::new("curl");
    let url = format!("http://127.0.0.1:{port}/x");
    let out = run_traced(
        &file,
        &[],
        &["curl", "-s", "-w", "%{size_request} %{size_download}", &url],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (read, written) = server.join().unwrap();
    // curl's own account (request size; body size) and the server's.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("hello from the test\n"), "{stdout}");
    assert_eq!(
        stdout.trim_start_matches("hello from the test\n"),
        format!("{read} 20")
    );

    let events = file.events();
    let conns = conns(&events);
    assert_eq!(conns.len(), 1, "{conns:?}");
    let c = &conns[0];
    assert_eq!(c["comm"], "curl");
    assert_eq!(c["bytes_sent"], read);
    assert_eq!(c["bytes_received"], written);
    let states = support::states(&events, c["conn"].as_u64().unwrap());
    assert_eq!(
        states.first(),
        Some(&("CLOSE".to_string(), "SYN_SENT".to_string()))
    );

    // A refused connection: curl says 7, so does the tracer, and the refusal is on record.
    let refused = TraceFile::new("curl-refused");
    let closed = support::free_port();
    let out = run_traced(
        &refused,
        &[],
        &["curl", "-s", &format!("http://127.0.0.1:{closed}/")],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = refused.events();
    // curl connects without blocking: O_NONBLOCK, EINPROGRESS, the RST refuses it, and
    // SO_ERROR tells curl so. (Its other options vary with its version: not part of the story.)
    let story: Vec<String> = events
        .iter()
        .filter(|e| e["conn"] == 1)
        .filter_map(|e| match e["layer"].as_str()? {
            "syscall" if e["name"] == "setsockopt" || e["cmd"] == "F_GETFL" => None,
            "syscall" if e["name"] == "fcntl" => Some(format!(
                "fcntl {} {}",
                e["cmd"].as_str()?,
                e["flags"].as_str()?
            )),
            "syscall" if e["name"] == "getsockopt" => Some(format!(
                "getsockopt {} {}",
                e["option"].as_str()?,
                e["value_errno"].as_str().unwrap_or("0")
            )),
            "syscall" => Some(format!(
                "{} {}",
                e["name"].as_str()?,
                e["errno"].as_str().unwrap_or("ok")
            )),
            "state" => Some(format!("{} > {}", e["from"].as_str()?, e["to"].as_str()?)),
            "kernel" => Some(e["event"].as_str()?.to_string()),
            "packet" => Some(format!("{} {}", e["dir"].as_str()?, e["flags"].as_str()?)),
            _ => None,
        })
        .collect();
    assert_eq!(
        story,
        [
            "socket ok",
            "fcntl F_SETFL O_RDWR|O_NONBLOCK",
            "connect EINPROGRESS",
            "CLOSE > SYN_SENT",
            "tcp_connect",
            "out S",
            "in RA",
            "tcp_reset",
            "SYN_SENT > CLOSE",
            "getsockopt SO_ERROR ECONNREFUSED",
            "close ok",
            "tcp_destroy_sock"
        ],
        "{}",
        support::brief(&events)
    );
}

#[test]
fn under_sudo_the_command_runs_as_the_invoking_user() {
    let file = TraceFile::new("sudo");
    // What sudo sets; nobody (65534) exists on Debian.
    let env = [
        ("SUDO_UID", "65534"),
        ("SUDO_GID", "65534"),
        ("SUDO_USER", "nobody"),
    ];
    let out = run_traced(&file, &[], &["sh", "-c", "id -u; id -g; echo $HOME"], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let expected_home = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.split(':').nth(2) == Some("65534"))
        .and_then(|l| l.split(':').nth(5).map(str::to_string))
        .expect("a user 65534 in /etc/passwd");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["65534", "65534", expected_home.as_str()]
    );
    assert!(stderr.contains("as uid 65534"), "{stderr}");
}

#[test]
fn a_command_that_cannot_run_exits_as_a_shell_would() {
    let file = TraceFile::new("missing");
    let out = run_traced(&file, &[], &["no-such-command-anywhere"], &[]);
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Where tracefs is not mounted (a fresh machine), the tracer says it mounted it: a
    // notice, not part of the error.
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("tracer: mounted tracefs"))
        .collect();
    assert_eq!(said, ["error: no-such-command-anywhere: command not found"]);
}

#[test]
fn a_pid_with_follow_children_traces_what_it_starts_later() {
    let port = support::free_port();
    let mut server = echo_server(port);
    // A shell that starts the client when told (a line on its stdin); not as its last
    // command, which a shell may exec in its own process (busybox does).
    let script = format!(
        "read go; {} --addr 127.0.0.1:{port} --message hi; exit 0",
        support::ECHO_CLIENT
    );
    let mut parent = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let trace = support::start(&["--pid", &parent.id().to_string(), "--follow-children"]);
    parent.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let reply = BufReader::new(parent.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(reply, "your message ishi");
    assert!(parent.wait().unwrap().success());
    let events = trace.stop();
    let _ = server.kill();
    let _ = server.wait();
    let found = conns(&events);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["comm"], "echo-client");
    assert_eq!(found[0]["bytes_sent"], 2);

    // Without --follow-children the same child is not traced.
    let mut parent = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = echo_server(port);
    let trace = support::start(&["--pid", &parent.id().to_string()]);
    parent.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(parent.wait().unwrap().success());
    let events = trace.stop();
    let _ = server.kill();
    let _ = server.wait();
    assert!(conns(&events).is_empty(), "{}", support::brief(&events));
}

/// `-o FILE` on a full filesystem: the message names the file (not "stdout"), the command
/// still runs to its end, and the exit code says the trace is incomplete.
#[test]
fn a_full_disk_under_the_trace_file_is_named() {
    let dir = std::env::temp_dir().join(format!("tracer-full-o-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4k", "tracer-full-o"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a 4 KiB tmpfs");
    let port = support::free_port();
    let mut server = echo_server(port);
    let file = TraceFile(dir.join("trace.jsonl"));
    let mut cmd = vec![
        support::ECHO_CLIENT.to_string(),
        "--addr".into(),
        format!("127.0.0.1:{port}"),
    ];
    for i in 0..40 {
        cmd.extend(["--message".to_string(), format!("message number {i}")]);
    }
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let out = run_traced(&file, &[], &cmd, &[]);
    let _ = server.kill();
    let _ = server.wait();
    drop(file);
    let _ = Command::new("umount").arg(&dir).status();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        40,
        "the command ran to its end"
    );
    let name = dir.join("trace.jsonl").display().to_string();
    assert!(
        err.contains(&format!(
            "tracer: cannot write {name}: No space left on device"
        )),
        "{err}"
    );
    assert!(err.contains("error: the output is incomplete"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
}

/// A prefork server written with Python's `os.fork`: the master listens, forks two workers and
/// closes its copy of the listener; each worker accepts one connection on the inherited
/// socket and answers with its pid. Every connection is attributed to the worker that served
/// it (the pid it names itself), bytes exact.
#[test]
fn a_prefork_servers_workers_each_own_the_connection_they_accepted() {
    let port = support::free_port();
    let script = format!(
        r#"
import os, socket
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", {port}))
ls.listen(8)
workers = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        conn, _ = ls.accept()
        data = conn.recv(100)
        conn.sendall(b"worker %d got " % os.getpid() + data)
        conn.close()
        os._exit(0)
    workers.append(pid)
ls.close()
for pid in workers:
    os.waitpid(pid, 0)
"#
    );
    let file = TraceFile::new("prefork");
    let (tx, rx) = std::sync::mpsc::channel();
    let file_path = file.0.clone();
    let runner = std::thread::spawn(move || {
        let traced = TraceFile(file_path);
        let out = run_traced(&traced, &[], &["python3", "-c", &script], &[]);
        std::mem::forget(traced);
        let _ = tx.send(());
        out
    });
    support::wait_listening(port);
    let mut replies = Vec::new();
    // Both connections from one local port: the second has the first one's 4-tuple, which the
    // first worker's end holds in TIME_WAIT (it closed first); on loopback the kernel lets the
    // new SYN take it over. The tracer must tell the two apart.
    let mut local_ports = Vec::new();
    for message in ["first!", "second one"] {
        let mut stream = connect_from(CLIENT_PORT_BASE + (port % 1000), port);
        local_ports.push(stream.local_addr().unwrap().port());
        stream.write_all(message.as_bytes()).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        replies.push((message, reply));
    }
    assert_eq!(local_ports[0], local_ports[1], "one 4-tuple for both");
    rx.recv_timeout(Duration::from_secs(60))
        .expect("python exited");
    let out = runner.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let events = file.events();
    let mut servers: Vec<(u64, u64, u64)> = conns(&events)
        .iter()
        .filter(|c| c["role"] == "server")
        .map(|c| {
            (
                c["pid"].as_u64().unwrap(),
                c["bytes_received"].as_u64().unwrap(),
                c["bytes_sent"].as_u64().unwrap(),
            )
        })
        .collect();
    servers.sort();
    // What each worker said it was, and the bytes each connection carried.
    let mut expected: Vec<(u64, u64, u64)> = replies
        .iter()
        .map(|(message, reply)| {
            let pid: u64 = reply
                .strip_prefix("worker ")
                .and_then(|r| r.split(' ').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("reply {reply:?}"));
            (pid, message.len() as u64, reply.len() as u64)
        })
        .collect();
    expected.sort();
    assert_ne!(expected[0].0, expected[1].0, "two workers served");
    assert_eq!(servers, expected, "{}", support::brief(&events));
    // Each connection has its own handshake and exactly its own payload on the wire, and
    // begins, for its worker, with the accept that returned it — though the master closed its
    // listener before the workers accepted on their copies.
    for c in conns(&events).iter().filter(|c| c["role"] == "server") {
        let id = c["conn"].as_u64().unwrap();
        let accepts: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| {
                e["layer"] == "syscall"
                    && (e["name"] == "accept4" || e["name"] == "accept")
                    && e["pid"] == c["pid"]
            })
            .collect();
        assert_eq!(accepts.len(), 1, "{}", support::brief(&events));
        assert_eq!(accepts[0]["conn"], id, "{}", support::brief(&events));
        let segs: Vec<&serde_json::Value> = support::of_conn(&events, id)
            .into_iter()
            .filter(|e| e["layer"] == "packet")
            .collect();
        let count = |dir: &str, flags: &str| {
            segs.iter()
                .filter(|e| e["dir"] == dir && e["flags"] == flags)
                .count()
        };
        assert_eq!(
            (count("in", "S"), count("out", "SA")),
            (1, 1),
            "conn {id}: {}",
            support::brief(&events)
        );
        let payload = |dir: &str| -> u64 {
            segs.iter()
                .filter(|e| e["dir"] == dir)
                .map(|e| e["len"].as_u64().unwrap())
                .sum()
        };
        assert_eq!(
            (payload("in"), payload("out")),
            (
                c["bytes_received"].as_u64().unwrap(),
                c["bytes_sent"].as_u64().unwrap()
            ),
            "conn {id}"
        );
    }
}

/// The other side of following fds closed by a parent: a traced socket closed *before* a
/// fork is not the child's, and the file the child then opens on that fd number is not traced.
/// A socket closed by the parent *after* the fork stays traced in the child.
#[test]
fn an_fd_closed_before_a_fork_is_not_traced_in_the_child() {
    let port = support::free_port();
    let mut server = echo_server(port);
    let script = format!(
        r#"
import os, socket
a = socket.create_connection(("127.0.0.1", {port}))
assert a.fileno() == 3
a.close()
b = socket.create_connection(("127.0.0.1", {port}))
assert b.fileno() == 3
pid = os.fork()
if pid == 0:
    b.sendall(b"after the parent closed it")
    b.recv(100)
    os._exit(0)
b.close()
os.waitpid(pid, 0)
# Closed before this fork: fd 3 is a file here.
pid = os.fork()
if pid == 0:
    fd = os.open("/etc/hostname", os.O_RDONLY)
    assert fd == 3, fd
    os.read(fd, 64)
    os.read(fd, 64)
    os._exit(0)
os.waitpid(pid, 0)
"#
    );
    let file = TraceFile::new("closed-before-fork");
    let out = run_traced(&file, &[], &["python3", "-c", &script], &[]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = file.events();
    let calls = |name: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["layer"] == "syscall" && e["name"] == name)
            .collect()
    };
    // The first child's send and receive on its inherited copy are traced.
    let sends: Vec<&Value> = calls("sendto")
        .into_iter()
        .chain(calls("send"))
        .filter(|e| e["ret"] == 26)
        .collect();
    assert_eq!(sends.len(), 1, "{}", support::brief(&events));
    // No read of the second child's file.
    assert!(calls("read").is_empty(), "{}", support::brief(&events));
}

/// Where the prefork test's client binds: its ports are not in the ephemeral range.
const CLIENT_PORT_BASE: u16 = 21000;

/// A TCP connection to 127.0.0.1:`port` from 127.0.0.1:`from` (SO_REUSEADDR: the port may be
/// held by a connection in TIME_WAIT).
fn connect_from(from: u16, port: u16) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    let addr = |p: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: p.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on an fd this function owns until it hands it to TcpStream;
    // the addresses are live locals of the length given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let local = addr(from);
        let r = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
        assert_eq!(r, 0, "bind {from}: {}", std::io::Error::last_os_error());
        let remote = addr(port);
        let r = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len);
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        std::net::TcpStream::from_raw_fd(fd)
    }
}

/// Top-level comma-separated arguments of an strace call, brackets, braces and quotes kept
/// whole: `3, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=5}, 8`.
fn strace_args(text: &str) -> Vec<String> {
    let (mut args, mut depth, mut quoted, mut cur) = (Vec::new(), 0, false, String::new());
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '[' | '{' | '(' if !quoted => depth += 1,
            ']' | '}' | ')' if !quoted => depth -= 1,
            ',' if depth == 0 && !quoted => {
                args.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    args.push(cur.trim().to_string());
    args
}

/// One call as both sides are compared: name, fd, what the arguments say, result (a number,
/// or `-ERRNO`).
type Call = (String, i64, Vec<String>, String);

/// strace's calls on the socket's fds, from its `socket()` on: the fd set grows with each
/// duplication, as the kernel's does.
fn strace_calls(log: &str) -> Vec<Call> {
    let mut fds: Vec<i64> = Vec::new();
    let mut calls = Vec::new();
    for line in log.lines() {
        // `-f` puts the pid first.
        let line = line.trim_start_matches(|c: char| c.is_ascii_digit()).trim();
        let Some((call, result)) = line.rsplit_once(" = ") else {
            continue;
        };
        let Some((name, args)) = call.trim().split_once('(') else {
            continue;
        };
        let args = strace_args(args.strip_suffix(')').unwrap_or(args));
        let mut words = result.split_whitespace();
        let word = words.next().unwrap_or("");
        let ret = match word.strip_prefix("0x") {
            Some(hex) => i64::from_str_radix(hex, 16).unwrap(),
            None => word.parse().unwrap_or(i64::MIN),
        };
        let said_ret = if ret == -1 {
            format!("-{}", words.next().unwrap_or("?"))
        } else {
            ret.to_string()
        };
        if name == "socket" && args[0] == "AF_INET" {
            fds = vec![ret];
            continue;
        }
        let Ok(fd) = args[0].parse::<i64>() else {
            continue;
        };
        if !fds.contains(&fd) {
            continue;
        }
        let bare = |v: &str| v.trim_matches(['[', ']', '"']).to_string();
        let said = match name {
            "setsockopt" | "getsockopt" => vec![args[1].clone(), args[2].clone(), bare(&args[3])],
            "fcntl" | "dup2" | "dup3" => args[1..].iter().take(2).cloned().collect(),
            _ => Vec::new(),
        };
        let duplicates = matches!(name, "dup" | "dup2" | "dup3")
            || (name == "fcntl" && args[1].starts_with("F_DUPFD"));
        if duplicates && ret >= 0 {
            fds.push(ret);
        }
        if name == "close" {
            fds.retain(|&f| f != fd);
        }
        calls.push((name.to_string(), fd, said, said_ret));
    }
    calls
}

/// The tracer's calls of the same kinds on the connection's fds, said the same way.
fn traced_calls(events: &[Value], conn: u64, names: &[&str]) -> Vec<Call> {
    support::of_conn(events, conn)
        .iter()
        .filter(|e| e["layer"] == "syscall" && names.contains(&e["name"].as_str().unwrap()))
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                Value::Object(o) => {
                    format!("{{l_onoff={}, l_linger={}}}", o["l_onoff"], o["l_linger"])
                }
                other => other.to_string(),
            };
            let said = match name.as_str() {
                "setsockopt" | "getsockopt" => {
                    vec![text(&e["level"]), text(&e["option"]), text(&e["value"])]
                }
                "fcntl" => {
                    let mut v = vec![text(&e["cmd"])];
                    if e["cmd"] == "F_SETFL" {
                        v.push(text(&e["flags"]));
                    } else if let Some(arg) = e.get("arg") {
                        v.push(text(arg));
                    }
                    v
                }
                "dup2" | "dup3" => vec![text(&e["newfd"])],
                _ => Vec::new(),
            };
            let ret = match e["ret"].as_i64().unwrap() {
                r if r < 0 => format!("-{}", e["errno"].as_str().unwrap_or("?")),
                r => r.to_string(),
            };
            (name, e["fd"].as_i64().unwrap(), said, ret)
        })
        .collect()
}

/// A socket configured, connected without blocking, and used through duplicates — what
/// strace saw the client do, call for call, is what the tracer shows on its connection: the
/// options and their values, `connect = -EINPROGRESS` then `getsockopt(SO_ERROR) = 0`, and
/// every fd the socket got landing on one connection.
#[test]
fn options_duplicates_and_a_non_blocking_connect_agree_with_strace() {
    let port = support::free_port();
    let mut server = echo_server(port);
    let script = format!(
        r#"
import fcntl, os, select, socket, struct
s = socket.socket()
fd = s.fileno()
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 5))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
flags = fcntl.fcntl(fd, fcntl.F_GETFL)
fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
assert s.connect_ex(("127.0.0.1", {port})) == 115
select.select([], [s], [], 10)
assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
fcntl.fcntl(fd, fcntl.F_SETFL, flags)
d1 = os.dup(fd)
os.dup2(fd, 50)
d3 = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 60)
os.write(d1, b"one")
assert os.read(50, 100) == b"your message isone"
os.close(d1)
os.write(d3, b"two")
assert os.read(fd, 100) == b"your message istwo"
os.close(50)
os.close(d3)
s.close()
"#
    );
    let file = TraceFile::new("sockopt");
    let log = std::env::temp_dir().join(format!("tracer-strace-{}.log", std::process::id()));
    let out = run_traced(
        &file,
        &[],
        &[
            "strace",
            "-f",
            "-qq",
            "-o",
            log.to_str().unwrap(),
            "-e",
            "trace=socket,connect,setsockopt,getsockopt,fcntl,dup,dup2,dup3,close",
            "python3",
            "-c",
            &script,
        ],
        &[],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let strace = std::fs::read_to_string(&log).expect("strace's log");
    if std::env::var_os("KEEP_STRACE").is_none() {
        let _ = std::fs::remove_file(&log);
    }
    let events = file.events();
    let client = conns(&events)
        .into_iter()
        .find(|c| c["role"] == "client" && c["rport"] == port)
        .expect("the client's connection");
    let conn = client["conn"].as_u64().unwrap();
    let names = [
        "connect",
        "setsockopt",
        "getsockopt",
        "fcntl",
        "dup",
        "dup2",
        "dup3",
        "close",
    ];
    let expected = strace_calls(&strace);
    assert!(expected.len() >= 17, "strace saw too little: {strace}");
    assert_eq!(
        traced_calls(&events, conn, &names),
        expected,
        "the tracer's calls on the connection vs strace's on the socket's fds:\n{strace}"
    );
    // Bytes through the duplicates are the connection's.
    assert_eq!(client["bytes_sent"], 6, "{client}");
    assert_eq!(client["bytes_received"], 36, "{client}");
    assert!(
        client["outcome"].as_str().unwrap().starts_with("closed"),
        "{client}"
    );
}
