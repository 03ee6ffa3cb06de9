//! `--demo`: the echo server and a scripted echo client, started once every hook is attached;
//! `--demo loss`: the same, and a bulk transfer, through a lossy path ([`loss`]).

pub mod echo;
pub mod loss;

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::system::sockets::is_listening;

/// The messages the scripted client sends before `Q`.
pub const MESSAGES: [&str; 3] = ["hello", "from code", "to packet capture"];

/// Which demo `--demo` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Demo {
    /// The echo session on loopback.
    Echo,
    /// The loss lab: the echo session and a bulk transfer through an impaired path.
    Loss,
}

/// The binary `name` next to this one.
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs server and client to completion; returns a line describing anything that went wrong.
pub async fn run(port: u16) -> Result<(), String> {
    let mut server = Command::new(sibling("echo-server"))
        .args(["--port", &port.to_string()])
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("demo: cannot start echo-server: {e}"))?;
    for _ in 0..100 {
        if is_listening(port) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !is_listening(port) {
        return Err(format!("demo: echo-server is not listening on port {port}"));
    }
    let mut client = Command::new(sibling("echo-client"));
    client.args(["--addr", &format!("127.0.0.1:{port}")]);
    for m in MESSAGES {
        client.args(["--message", m]);
    }
    let status = client
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| format!("demo: cannot start echo-client: {e}"))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SIGTERM: the server closes its listener and exits.
    if let Some(pid) = server.id() {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let _ = server.wait().await;
    if status.success() {
        Ok(())
    } else {
        Err(format!("demo: echo-client exited with {status}"))
    }
}
