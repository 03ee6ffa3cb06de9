//! `--timings`: how long each startup phase took, from the process's start to `ready`, so that
//! a slow start says where its time went.

use std::io::Write;
use std::time::{Duration, Instant};

/// The phases measured so far.
pub struct Phases {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    /// Starts measuring now.
    pub fn start() -> Self {
        Self {
            last: Instant::now(),
            done: Vec::new(),
        }
    }

    /// The phase `name` ended now (it began where the last one ended).
    pub fn end(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }

    /// Each phase in order, in milliseconds, and their total.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "tracer: startup phases (--timings)")?;
        for (name, took) in &self.done {
            writeln!(out, "  {name:<40} {:>8.1} ms", took.as_secs_f64() * 1e3)?;
        }
        let total: Duration = self.done.iter().map(|(_, d)| *d).sum();
        writeln!(
            out,
            "  {:<40} {:>8.1} ms",
            "total",
            total.as_secs_f64() * 1e3
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_to_the_total() {
        let mut p = Phases::start();
        std::thread::sleep(Duration::from_millis(2));
        p.end("one");
        p.end("two");
        let mut out = Vec::new();
        p.write(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let ms: Vec<f64> = text
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().rev().nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(ms.len(), 3);
        assert!(ms[0] >= 2.0);
        assert!((ms[0] + ms[1] - ms[2]).abs() < 0.2);
    }
}
