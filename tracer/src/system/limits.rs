//! The open-file limit: every loaded program, map and attachment is a file descriptor.

use thiserror::Error;

/// File descriptors a run can need: about 60 programs, as many links, 20 maps, the ring
/// buffer, the output files, with room to spare.
pub const FDS_NEEDED: u64 = 512;

/// The open-file limit is too low and cannot be raised.
#[derive(Debug, Error)]
#[error(
    "the open-file limit is {soft} (hard limit {hard}) and the tracer needs about {FDS_NEEDED} \
     file descriptors (one per program, map and attachment); raise it: ulimit -n {FDS_NEEDED}"
)]
pub struct FdLimitError {
    /// The soft limit after trying to raise it.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft open-file limit towards the hard one when it is below [`FDS_NEEDED`];
/// fails when even the hard limit is lower. Without this, a low limit shows up as programs
/// that "fail to load" and hooks reported missing for the wrong reason.
pub fn ensure_fd_room() -> Result<(), FdLimitError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Ok(());
    }
    if lim.rlim_cur >= FDS_NEEDED {
        return Ok(());
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max.min(FDS_NEEDED.max(4096)),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct it is given.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0;
    let soft = if ok { raised.rlim_cur } else { lim.rlim_cur };
    if soft < FDS_NEEDED {
        return Err(FdLimitError {
            soft,
            hard: lim.rlim_max,
        });
    }
    Ok(())
}
