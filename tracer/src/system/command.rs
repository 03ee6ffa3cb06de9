//! The command `tracer -- CMD ARGS...` runs: forked before the programs load (its pid goes into
//! the filter), held at a pipe until every hook is attached, then exec'd — as the user who ran
//! `sudo`, never silently as root. Its exit status becomes the tracer's.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Why the command could not be started.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Nothing executable by that name on PATH.
    #[error("{0}: command not found")]
    NotFound(String),
    /// An argument holds a NUL byte.
    #[error("the command's arguments cannot hold NUL bytes")]
    Nul,
    /// `SUDO_UID`/`SUDO_GID` name a user whose groups could not be read.
    #[error("cannot find the groups of the sudo user (uid {0}): {1}")]
    Groups(u32, std::io::Error),
    /// pipe(2) or fork(2) failed.
    #[error("cannot start the command: {0}")]
    Fork(std::io::Error),
    /// The child could not become the user or exec the program.
    #[error("cannot run {program}: {error}")]
    Exec {
        /// The program.
        program: String,
        /// What the child's `setuid`/`execve` said.
        error: std::io::Error,
    },
}

impl CommandError {
    /// The exit code a shell would give: 127 not found, 126 found but not runnable.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotFound(_) => 127,
            Self::Exec { error, .. } if error.kind() == std::io::ErrorKind::NotFound => 127,
            Self::Exec { .. } => 126,
            _ => 1,
        }
    }
}

/// The user the command runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// The user's name and home, for `USER`, `LOGNAME` and `HOME`.
    pub name: Option<(OsString, OsString)>,
}

/// Who the command should run as: under `sudo` (root, with `SUDO_UID`/`SUDO_GID` naming
/// another user), that user; otherwise `None` (as the tracer runs).
pub fn invoking_user() -> Result<Option<Credentials>, CommandError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let id = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
    let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) else {
        return Ok(None);
    };
    if uid == 0 {
        return Ok(None);
    }
    let name = passwd(uid);
    let groups = match &name {
        Some((user, _)) => group_list(user, gid).map_err(|e| CommandError::Groups(uid, e))?,
        None => vec![gid],
    };
    Ok(Some(Credentials {
        uid,
        gid,
        groups,
        name,
    }))
}

/// The name and home directory of `uid` from the password database.
fn passwd(uid: u32) -> Option<(OsString, OsString)> {
    let mut buf = vec![0u8; 16384];
    // SAFETY: a zeroed passwd is a valid out-parameter; getpwuid_r fills it with pointers into
    // `buf`, which outlives their use below.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the sizes given.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success pw_name and pw_dir are NUL-terminated strings in `buf`.
    let (name, dir) = unsafe {
        (
            std::ffi::CStr::from_ptr(pw.pw_name),
            std::ffi::CStr::from_ptr(pw.pw_dir),
        )
    };
    Some((
        OsStr::from_bytes(name.to_bytes()).to_owned(),
        OsStr::from_bytes(dir.to_bytes()).to_owned(),
    ))
}

/// The groups `user` belongs to, `gid` included.
fn group_list(user: &OsStr, gid: u32) -> std::io::Result<Vec<u32>> {
    let name = CString::new(user.as_bytes()).map_err(std::io::Error::other)?;
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: `groups` holds `n` entries; getgrouplist writes at most that many and sets
        // `n` to the count needed.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n as usize);
            return Ok(groups);
        }
        if n as usize <= groups.len() {
            return Err(std::io::Error::other("getgrouplist failed"));
        }
        groups.resize(n as usize, 0);
    }
}

/// Finds `program` as a shell would: a name with a slash as is, otherwise the first
/// executable file of that name in a `PATH` directory.
pub fn resolve(program: &OsStr) -> Result<PathBuf, CommandError> {
    let not_found = || CommandError::NotFound(program.to_string_lossy().into_owned());
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(not_found)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A forked child waiting for the word to exec the command.
#[derive(Debug)]
pub struct Held {
    pid: libc::pid_t,
    program: String,
    /// Writing a byte (or closing it) releases the child.
    go: Option<OwnedFd>,
    /// Close-on-exec in the child: reads end of file when the exec succeeded, the errno when
    /// it did not.
    exec_error: OwnedFd,
}

/// A pipe's (read, write) ends.
fn pipe(cloexec: bool) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The environment the command gets: the tracer's, with `USER`, `LOGNAME` and `HOME` of the
/// user it runs as.
fn environment(user: Option<&Credentials>) -> Result<Vec<CString>, CommandError> {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    if let Some((name, home)) = user.and_then(|u| u.name.as_ref()) {
        vars.retain(|(k, _)| !["USER", "LOGNAME", "HOME"].iter().any(|v| k == v));
        vars.push(("USER".into(), name.clone()));
        vars.push(("LOGNAME".into(), name.clone()));
        vars.push(("HOME".into(), home.clone()));
    }
    vars.into_iter()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).map_err(|_| CommandError::Nul)
        })
        .collect()
}

/// Forks a child that will run `argv` as `user` (as the tracer runs when `None`) once
/// released; it waits until then.
pub fn spawn_held(argv: &[OsString], user: Option<&Credentials>) -> Result<Held, CommandError> {
    let program = argv.first().ok_or(CommandError::NotFound(String::new()))?;
    let path = CString::new(resolve(program)?.into_os_string().into_vec())
        .map_err(|_| CommandError::Nul)?;
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| CommandError::Nul))
        .collect::<Result<_, _>>()?;
    let env = environment(user)?;
    // Everything the child touches is built before the fork: after it, only async-signal-safe
    // calls (read, setgroups, setgid, setuid, execve, write, _exit).
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let groups: Vec<libc::gid_t> = user.map(|u| u.groups.clone()).unwrap_or_default();
    let (go_read, go_write) = pipe(true).map_err(CommandError::Fork)?;
    let (err_read, err_write) = pipe(true).map_err(CommandError::Fork)?;
    // SAFETY: fork(2); the child below only makes async-signal-safe calls on memory prepared
    // before it, then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(CommandError::Fork(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: in the child; see above.
        unsafe {
            let report = |fd: libc::c_int| {
                let errno = *libc::__errno_location();
                libc::write(fd, (&raw const errno).cast(), 4);
            };
            // The parent's ends: with them open here, the child would never see end of file.
            libc::close(go_write.as_raw_fd());
            libc::close(err_read.as_raw_fd());
            let mut byte = 0u8;
            // Released by a byte; end of file means the tracer gave up: exit quietly.
            if libc::read(go_read.as_raw_fd(), (&raw mut byte).cast(), 1) != 1 {
                libc::_exit(127);
            }
            if let Some(u) = user
                && (libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(u.gid) != 0
                    || libc::setuid(u.uid) != 0)
            {
                report(err_write.as_raw_fd());
                libc::_exit(126);
            }
            libc::execve(path.as_ptr(), arg_ptrs.as_ptr(), env_ptrs.as_ptr());
            report(err_write.as_raw_fd());
            libc::_exit(127);
        }
    }
    drop(go_read);
    drop(err_write);
    Ok(Held {
        pid,
        program: program.to_string_lossy().into_owned(),
        go: Some(go_write),
        exec_error: err_read,
    })
}

impl Held {
    /// The child's pid (the command's, once it runs).
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Lets the child exec the command; fails when it could not.
    pub fn release(mut self) -> Result<Running, CommandError> {
        let go = self.go.take();
        if let Some(go) = &go {
            let byte = 1u8;
            // SAFETY: writes one byte from a live local to an fd we own.
            unsafe { libc::write(go.as_raw_fd(), (&raw const byte).cast(), 1) };
        }
        drop(go);
        let mut errno = 0i32;
        // SAFETY: reads at most 4 bytes into a live local from an fd we own. End of file (0)
        // means the exec succeeded: the pipe closed on exec.
        let n = unsafe { libc::read(self.exec_error.as_raw_fd(), (&raw mut errno).cast(), 4) };
        let running = Running { pid: self.pid };
        // The child is reaped by `running` from now on, not by Drop.
        self.pid = 0;
        if n == 4 {
            running.wait();
            return Err(CommandError::Exec {
                program: std::mem::take(&mut self.program),
                error: std::io::Error::from_raw_os_error(errno),
            });
        }
        Ok(running)
    }
}

impl Drop for Held {
    /// A start given up (the programs did not load): the child reads end of file, exits, and
    /// is reaped.
    fn drop(&mut self) {
        self.go.take();
        if self.pid > 0 {
            Running { pid: self.pid }.wait();
        }
    }
}

/// The command, running.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pid: libc::pid_t,
}

impl Running {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child, not yet reaped (we reap it in `wait`).
        unsafe { libc::kill(self.pid, signal) };
    }

    /// Waits for it to end: its exit code, or 128 + the signal that killed it (as shells say).
    pub fn wait(&self) -> u8 {
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child, writing into a live local.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid {
                break;
            }
            if rc < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return 1;
            }
        }
        exit_code(status)
    }
}

/// A wait status as a shell's exit code.
pub fn exit_code(status: libc::c_int) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else if libc::WIFSIGNALED(status) {
        128u8.saturating_add(libc::WTERMSIG(status) as u8)
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One held child at a time: a child forked by a test running beside another inherits
    /// that test's pipe ends (close-on-exec, but it has not exec'd yet) and keeps its child
    /// from seeing end of file. The tracer forks once.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn names_are_found_on_path_and_paths_kept() {
        assert!(resolve(OsStr::new("sh")).unwrap().is_absolute());
        assert_eq!(
            resolve(OsStr::new("./x")).unwrap(),
            PathBuf::from("./x"),
            "a name with a slash is used as is"
        );
        let missing = resolve(OsStr::new("no-such-command-here")).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "no-such-command-here: command not found"
        );
        assert_eq!(missing.exit_code(), 127);
    }

    #[test]
    fn a_held_child_runs_only_when_released_and_its_status_is_returned() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(format!("tracer-held-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let argv: Vec<OsString> = ["sh", "-c", "touch \"$0\"; exit 7"]
            .iter()
            .map(OsString::from)
            .chain([dir.clone().into_os_string()])
            .collect();
        let held = spawn_held(&argv, None).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!dir.exists(), "the child ran before it was released");
        let running = held.release().unwrap();
        assert_eq!(running.wait(), 7);
        assert!(dir.exists());
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn a_held_child_given_up_exits_without_running() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let marker = std::env::temp_dir().join(format!("tracer-dropped-{}", std::process::id()));
        let argv: Vec<OsString> = ["sh", "-c", "touch \"$0\""]
            .iter()
            .map(OsString::from)
            .chain([marker.clone().into_os_string()])
            .collect();
        drop(spawn_held(&argv, None).unwrap());
        assert!(!marker.exists());
    }

    #[test]
    fn exec_failures_and_signals_become_shell_codes() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let argv = [OsString::from("/etc/passwd")];
        let err = spawn_held(&argv, None).unwrap().release().unwrap_err();
        assert_eq!(err.exit_code(), 126, "{err}");
        let argv: Vec<OsString> = ["sh", "-c", "kill -9 $$"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            spawn_held(&argv, None).unwrap().release().unwrap().wait(),
            137
        );
    }
}
