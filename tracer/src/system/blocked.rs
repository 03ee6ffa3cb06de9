//! Threads inside a syscall when the tracer starts. An `accept` blocked since before the start
//! returns through no fexit (its function's trampoline was not there when it entered), so the
//! loader keeps the exit tracepoint for the accepts only while such a thread exists.

use std::io;

/// Whether a thread of one of `pids` (every process when `None`) is inside one of the syscalls
/// numbered `nrs` now, from `/proc/PID/task/TID/syscall`. An error when a thread's could not be
/// read for want of permission (it needs ptrace access): then nobody knows.
pub fn any_thread_in(nrs: &[i64], pids: Option<&[u32]>) -> io::Result<bool> {
    let all;
    let pids = match pids {
        Some(pids) => pids,
        None => {
            all = numbered("/proc")?;
            &all[..]
        }
    };
    for pid in pids {
        // A process gone since is not in any syscall.
        let Ok(tids) = numbered(&format!("/proc/{pid}/task")) else {
            continue;
        };
        for tid in tids {
            match std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")) {
                Ok(text) if in_syscall(&text, nrs) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(e),
                Err(_) => {}
            }
        }
    }
    Ok(false)
}

/// The entries of `dir` named by a number.
fn numbered(dir: &str) -> io::Result<Vec<u32>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// Whether a `syscall` file's text says its thread is blocked in one of `nrs`: the number
/// first, then the arguments; `running` or `-1` when it is in none.
fn in_syscall(text: &str, nrs: &[i64]) -> bool {
    text.split_whitespace()
        .next()
        .and_then(|nr| nr.parse::<i64>().ok())
        .is_some_and(|nr| nrs.contains(&nr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_syscall_file_names_the_call_first() {
        let accept4 = [libc::SYS_accept, libc::SYS_accept4];
        let blocked = format!(
            "{} 0x3 0x7ffd7a0 0x7ffd79c 0x80800 0x0 0x0 0x7ffd 0x7f1",
            accept4[1]
        );
        assert!(in_syscall(&blocked, &accept4));
        assert!(!in_syscall("running\n", &accept4));
        assert!(!in_syscall("-1 0x7ffd 0x7f1\n", &accept4));
        assert!(!in_syscall(
            "0 0x3 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x7f1\n",
            &accept4
        ));
    }

    /// The kernel's own account: a thread of this process blocked in `accept` is found.
    #[test]
    fn a_thread_blocked_in_accept_is_found() {
        let accepts = [libc::SYS_accept, libc::SYS_accept4];
        let me = [std::process::id()];
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let waiter = std::thread::spawn(move || listener.accept().map(|_| ()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !any_thread_in(&accepts, Some(&me)).unwrap() {
            assert!(
                std::time::Instant::now() < deadline,
                "no thread seen in accept"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::net::TcpStream::connect(addr).unwrap();
        waiter.join().unwrap().unwrap();
    }
}
