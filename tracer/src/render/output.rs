//! Where the trace is written: stdout, stderr (when a traced command owns stdout), or a file
//! (`-o FILE`). Every view of a run writes to the same place, each through its own handle.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::Path;

use super::{Finish, Line, Meta, View};

/// One handle on the trace's destination.
#[derive(Debug)]
pub enum Output {
    /// Standard output.
    Stdout(io::Stdout),
    /// Standard error.
    Stderr(io::Stderr),
    /// A file, shared by the views (one open file description: writes follow each other).
    File(File),
}

/// Bytes a pipe on stdout is asked to hold: 1 MiB, the default `fs.pipe-max-size`.
const PIPE_BYTES: i32 = 1 << 20;

impl Output {
    /// Standard output; when it is a pipe (`tracer --json | jq`), the pipe is widened from
    /// the kernel's 64 KiB to [`PIPE_BYTES`], so that a reader that falls behind for a moment
    /// does not block the consumer in `write` while the ring buffer fills behind it.
    pub fn stdout() -> Self {
        let out = io::stdout();
        if !out.is_terminal() {
            // SAFETY: fcntl on our own stdout with an integer argument; on anything but a
            // pipe it fails with EBADF or EINVAL and changes nothing, which is fine.
            unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_SETPIPE_SZ, PIPE_BYTES) };
        }
        Self::Stdout(out)
    }

    /// Creates (truncates) `path`; the error names it.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        File::create(path)
            .map(Self::File)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }

    /// Another handle on the same destination.
    pub fn handle(&self) -> io::Result<Self> {
        Ok(match self {
            Self::Stdout(_) => Self::Stdout(io::stdout()),
            Self::Stderr(_) => Self::Stderr(io::stderr()),
            Self::File(f) => Self::File(f.try_clone()?),
        })
    }

    /// Whether a person is reading it (colour by default).
    pub fn is_terminal(&self) -> bool {
        match self {
            Self::Stdout(o) => o.is_terminal(),
            Self::Stderr(e) => e.is_terminal(),
            Self::File(_) => false,
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(o) => o.write(buf),
            Self::Stderr(e) => e.write(buf),
            Self::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(o) => o.flush(),
            Self::Stderr(e) => e.flush(),
            Self::File(f) => f.flush(),
        }
    }
}

/// A view writing to a named destination (`-o FILE`, stderr): messages about a failed write
/// name it instead of `stdout`.
pub struct Named {
    inner: Box<dyn View>,
    target: String,
}

impl Named {
    /// `inner`, which writes to `target`.
    pub fn new(inner: Box<dyn View>, target: String) -> Self {
        Named { inner, target }
    }
}

impl View for Named {
    fn meta(&mut self, meta: &Meta) -> io::Result<()> {
        self.inner.meta(meta)
    }

    fn event(&mut self, line: &Line) -> io::Result<()> {
        self.inner.event(line)
    }

    fn finish(&mut self, end: &Finish) -> io::Result<()> {
        self.inner.finish(end)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    fn target(&self) -> String {
        self.target.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_on_a_file_append_to_each_other() {
        let path = std::env::temp_dir().join(format!("tracer-output-{}", std::process::id()));
        let mut a = Output::create(&path).unwrap();
        let mut b = a.handle().unwrap();
        a.write_all(b"one\n").unwrap();
        b.write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        assert!(!a.is_terminal());
        let _ = std::fs::remove_file(&path);
    }
}
