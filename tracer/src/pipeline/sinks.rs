//! The views the pipeline writes to, each on its own: one that cannot write (a full disk under
//! `--pcap`) is reported once, naming what it writes, and dropped; the others go on, and the
//! run ends saying its output is incomplete. A reader that went away (`tracer | head`) ends
//! the run instead: nobody reads any more.

use std::io;

use crate::render::View;

/// A view that stopped writing.
#[derive(Debug)]
pub struct Failed {
    /// What it wrote to (`stdout`, a file's path).
    pub target: String,
    /// Why it stopped.
    pub error: io::Error,
}

/// Every view, and those that failed.
pub(super) struct Sinks {
    live: Vec<Box<dyn View>>,
    /// Views that stopped writing, in the order they failed.
    pub(super) failed: Vec<Failed>,
}

impl Sinks {
    pub(super) fn new(views: Vec<Box<dyn View>>) -> Self {
        Self {
            live: views,
            failed: Vec::new(),
        }
    }

    /// Runs `write` on each view still writing. A broken pipe is returned (the run ends); any
    /// other error retires that view alone.
    pub(super) fn each(
        &mut self,
        mut write: impl FnMut(&mut dyn View) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut i = 0;
        while i < self.live.len() {
            match write(self.live[i].as_mut()) {
                Ok(()) => i += 1,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Err(e),
                Err(error) => {
                    let view = self.live.remove(i);
                    let target = view.target();
                    eprintln!(
                        "tracer: cannot write {target}: {error}; it stops here, the other \
                         outputs go on"
                    );
                    self.failed.push(Failed { target, error });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Line;

    struct Full(&'static str, io::ErrorKind);

    impl View for Full {
        fn event(&mut self, _line: &Line) -> io::Result<()> {
            Ok(())
        }

        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from(self.1))
        }

        fn target(&self) -> String {
            self.0.into()
        }
    }

    struct Fine(u32);

    impl View for Fine {
        fn event(&mut self, _line: &Line) -> io::Result<()> {
            Ok(())
        }

        fn flush(&mut self) -> io::Result<()> {
            self.0 += 1;
            Ok(())
        }
    }

    #[test]
    fn a_failing_view_is_retired_and_the_others_go_on() {
        let mut sinks = Sinks::new(vec![
            Box::new(Full("/full/x.pcap", io::ErrorKind::StorageFull)),
            Box::new(Fine(0)),
        ]);
        sinks.each(|v| v.flush()).unwrap();
        sinks.each(|v| v.flush()).unwrap();
        assert_eq!(sinks.failed.len(), 1);
        assert_eq!(sinks.failed[0].target, "/full/x.pcap");
        assert_eq!(sinks.live.len(), 1);
    }

    #[test]
    fn a_closed_pipe_ends_the_run() {
        let mut sinks = Sinks::new(vec![Box::new(Full("stdout", io::ErrorKind::BrokenPipe))]);
        let e = sinks.each(|v| v.flush()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert!(sinks.failed.is_empty());
    }
}
