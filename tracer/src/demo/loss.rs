//! `--demo loss`: the loss lab. Two private network namespaces joined by a veth pair (the host's
//! interfaces are never touched), the path between them impaired, the echo demo and a bulk
//! transfer run through it while every hook is attached.
//!
//! The impairments, and why these: this machine's kernels have no `netem`, so
//! - exact segments are dropped by an nftables rule in the client's namespace (`numgen inc`
//!   counts the data segments the servers send as they arrive, retransmissions included, and
//!   the listed ones are dropped once): the sender's capture sees them leave, the receiver's
//!   never sees them arrive, and the run is the same every time — what tests need;
//! - random loss is the same rule with `numgen random`;
//! - a rate limit is a `tbf` qdisc on the server's end: its queue overflows, which is real
//!   congestion.
//!
//! Both ends are built with `gso_max_segs 1`, so that every segment is its own packet as on a
//! wire, and one dropped packet is one lost segment. Deleting the namespaces removes the veth
//! pair, the rule and the qdisc with them: that happens on every exit, and namespaces left by a
//! killed run are removed by the next one.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::{MESSAGES, sibling};

/// The server's address in the lab (TEST-NET-1: never routed anywhere).
pub const SERVER_ADDR: &str = "192.0.2.1";
/// The client's address in the lab.
pub const CLIENT_ADDR: &str = "192.0.2.2";
/// Bytes the bulk transfer sends.
pub const BULK_BYTES: usize = 1 << 20;
/// The prefix of the lab's namespace names; the tracer's pid follows.
const PREFIX: &str = "tracer-lab-";

/// How the path from the servers to the client is impaired.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impairment {
    /// Data segments to drop, numbered from 1 in the order they reach the client's side.
    pub drop: Vec<u32>,
    /// Percent of data segments dropped at random.
    pub loss_percent: Option<f64>,
    /// A rate limit on the server's side (`tc` syntax: `20mbit`).
    pub rate: Option<String>,
}

impl Impairment {
    /// What the lab does to segments, in a few words.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.drop.is_empty() {
            let list: Vec<String> = self.drop.iter().map(u32::to_string).collect();
            parts.push(format!("data segment(s) {} dropped", list.join(", ")));
        }
        if let Some(p) = self.loss_percent {
            parts.push(format!("{p}% of data segments dropped at random"));
        }
        if let Some(r) = &self.rate {
            parts.push(format!("rate limited to {r}"));
        }
        if parts.is_empty() {
            "no impairment".into()
        } else {
            parts.join(", ")
        }
    }

    /// The nftables ruleset for the client's namespace.
    fn ruleset(&self) -> String {
        // A data segment from the server: IPv4 TCP with the 32-byte header Linux sends (with
        // timestamps; SACK blocks only ride on ACKs) and more than the headers.
        let data = format!("ip saddr {SERVER_ADDR} tcp doff 8 ip length > 52");
        let mut rules = String::new();
        if !self.drop.is_empty() {
            let set: Vec<String> = self.drop.iter().map(|n| (n - 1).to_string()).collect();
            rules.push_str(&format!(
                "    {data} numgen inc mod 1000000000 {{ {} }} counter drop\n",
                set.join(", ")
            ));
        }
        if let Some(p) = self.loss_percent {
            let per_10k = (p * 100.0).round() as u32;
            rules.push_str(&format!(
                "    {data} numgen random mod 10000 < {per_10k} counter drop\n"
            ));
        }
        format!(
            "table ip tracer_lab {{\n  chain impair {{\n    type filter hook prerouting priority raw; policy accept;\n{rules}  }}\n}}\n"
        )
    }
}

/// The two namespaces, deleted when dropped.
struct Lab {
    server: String,
    client: String,
}

impl Lab {
    fn create(impairment: &Impairment) -> Result<Lab, String> {
        remove_stale();
        let pid = std::process::id();
        let lab = Lab {
            server: format!("{PREFIX}{pid}-srv"),
            client: format!("{PREFIX}{pid}-cli"),
        };
        for ns in [&lab.server, &lab.client] {
            run("ip", &["netns", "add", ns])?;
        }
        run(
            "ip",
            &[
                "link",
                "add",
                "lab-srv",
                "netns",
                &lab.server,
                "gso_max_segs",
                "1",
                "type",
                "veth",
                "peer",
                "name",
                "lab-cli",
                "netns",
                &lab.client,
                "gso_max_segs",
                "1",
            ],
        )?;
        for (ns, dev, addr) in [
            (&lab.server, "lab-srv", SERVER_ADDR),
            (&lab.client, "lab-cli", CLIENT_ADDR),
        ] {
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev],
            )?;
            run("ip", &["-n", ns, "link", "set", dev, "up"])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        if !impairment.drop.is_empty() || impairment.loss_percent.is_some() {
            run_with_input(
                "ip",
                &["netns", "exec", &lab.client, "nft", "-f", "-"],
                &impairment.ruleset(),
            )?;
        }
        if let Some(rate) = &impairment.rate {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &lab.server,
                    "tc",
                    "qdisc",
                    "replace",
                    "dev",
                    "lab-srv",
                    "root",
                    "tbf",
                    "rate",
                    rate,
                    "burst",
                    "16kb",
                    "latency",
                    "20ms",
                ],
            )?;
        }
        Ok(lab)
    }

    /// `program args...` inside namespace `ns`.
    fn command(&self, ns: &str, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns])
            .arg(sibling(program))
            .args(args)
            .kill_on_drop(true);
        c
    }

    /// Segments the lab's rules dropped so far.
    fn dropped(&self) -> u64 {
        let Ok(out) = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                "nft",
                "list",
                "table",
                "ip",
                "tracer_lab",
            ])
            .output()
        else {
            return 0;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("packets ")
            .skip(1)
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Deletes namespaces a killed tracer left behind (their names carry its pid).
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &name])
                .status();
        }
    }
}

/// Runs a set-up command; its failure is the demo's error, naming the command.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    run_with_input(program, args, "")
}

fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("demo loss: cannot run `{program}` ({e}): install iproute2 and nftables")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("demo loss: `{program}` failed: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr);
    let why = why.lines().next().unwrap_or("").trim();
    Err(format!(
        "demo loss: `{program} {}` failed: {why}",
        args.join(" ")
    ))
}

/// Whether process `pid`'s network namespace has a listener on `port`.
fn listening_in(pid: u32, port: u16) -> bool {
    crate::system::sockets::is_listening_in(&format!("/proc/{pid}"), port)
}

/// Runs the lab: the echo session on `port`, then the bulk transfer on `port + 1`; returns a
/// line describing anything that went wrong.
pub async fn run_lab(port: u16, impairment: &Impairment) -> Result<(), String> {
    let bulk_port = port
        .checked_add(1)
        .ok_or("demo loss: the port must be below 65535")?;
    let lab = Lab::create(impairment)?;
    eprintln!(
        "demo loss: server {SERVER_ADDR} and client {CLIENT_ADDR} in namespaces {} and {}; {}",
        lab.server,
        lab.client,
        impairment.describe()
    );
    let port_s = port.to_string();
    let bulk_s = bulk_port.to_string();
    let bytes_s = BULK_BYTES.to_string();
    let mut echo = lab
        .command(&lab.server, "echo-server", &["--port", &port_s])
        .spawn()
        .map_err(|e| format!("demo loss: cannot start echo-server: {e}"))?;
    let mut bulk = lab
        .command(
            &lab.server,
            "bulk",
            &["serve", "--port", &bulk_s, "--bytes", &bytes_s],
        )
        .spawn()
        .map_err(|e| format!("demo loss: cannot start bulk: {e}"))?;
    let pids = (echo.id().unwrap_or(0), bulk.id().unwrap_or(0));
    for _ in 0..250 {
        if listening_in(pids.0, port) && listening_in(pids.1, bulk_port) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addr = format!("{SERVER_ADDR}:{port}");
    let mut args = vec!["--addr", addr.as_str()];
    for m in MESSAGES {
        args.extend(["--message", m]);
    }
    let echoed = lab
        .command(&lab.client, "echo-client", &args)
        .stdout(Stdio::null())
        .status()
        .await
        .map_err(|e| format!("demo loss: cannot start echo-client: {e}"))?;
    let bulk_addr = format!("{SERVER_ADDR}:{bulk_port}");
    let fetched = lab
        .command(&lab.client, "bulk", &["fetch", "--addr", &bulk_addr])
        .output()
        .await
        .map_err(|e| format!("demo loss: cannot start bulk fetch: {e}"))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some(pid) = echo.id() {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let _ = echo.wait().await;
    let _ = bulk.wait().await;
    eprintln!("demo loss: the lab dropped {} segment(s)", lab.dropped());
    if !echoed.success() {
        return Err(format!("demo loss: echo-client exited with {echoed}"));
    }
    let got = String::from_utf8_lossy(&fetched.stdout);
    if got.trim() != bytes_s {
        return Err(format!(
            "demo loss: the bulk transfer received {} of {BULK_BYTES} bytes",
            got.trim()
        ));
    }
    Ok(())
}
