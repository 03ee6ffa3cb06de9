//! tcpdump as an independent witness: started in a network namespace (or here) on one
//! interface, writing a pcap file, and returned once it says it listens.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running tcpdump.
pub struct Tcpdump(Child);

impl Tcpdump {
    /// Captures what `filter` (a pcap filter, as words) selects on `iface` in namespace `ns`
    /// (here when `None`) into `path`, once tcpdump says it listens.
    pub fn start(ns: Option<&str>, iface: &str, filter: &[&str], path: &Path) -> Self {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "tcpdump"]);
                c
            }
            None => Command::new("tcpdump"),
        };
        let mut child = cmd
            // Immediate mode: without it a packet waits in the kernel's ring until its block
            // fills or times out (up to a second), and a capture stopped soon after the last
            // segment loses them.
            .args([
                "-B",
                "32768",
                "-U",
                "--immediate-mode",
                "-n",
                "-i",
                iface,
                "-w",
            ])
            .arg(path)
            .args(filter)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("tcpdump is installed (cargo xtask conformance installs it)");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        assert!(line.contains("listening on"), "tcpdump: {line}");
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Self(child)
    }

    /// Stops it (SIGINT: it flushes), after the last segments had time to arrive.
    pub fn stop(mut self) {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let _ = self.0.wait();
    }
}
