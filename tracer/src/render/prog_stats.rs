//! `--prog-stats`: what each eBPF program cost, as the kernel counted it, written at the end of
//! the run — the first thing to look at when an overhead number moves.

use std::io::{self, Write};

use crate::hooks::runs::ProgStat;

/// Writes one line per program that ran (most time first) and a total line.
pub fn write(w: &mut impl Write, stats: &[ProgStat]) -> io::Result<()> {
    writeln!(
        w,
        "tracer: eBPF program runs (the kernel's BPF statistics, --prog-stats)"
    )?;
    writeln!(
        w,
        "  {:<32} {:>12} {:>8} {:>10}",
        "program", "runs", "avg ns", "total ms"
    )?;
    let ms = |ns: u64| ns as f64 / 1e6;
    for s in stats {
        writeln!(
            w,
            "  {:<32} {:>12} {:>8} {:>10.1}",
            s.program,
            s.runs,
            s.average_ns(),
            ms(s.run_ns)
        )?;
    }
    let runs: u64 = stats.iter().map(|s| s.runs).sum();
    let run_ns: u64 = stats.iter().map(|s| s.run_ns).sum();
    writeln!(
        w,
        "  {:<32} {:>12} {:>8} {:>10.1}",
        "all",
        runs,
        run_ns.checked_div(runs).unwrap_or(0),
        ms(run_ns)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_program_and_a_total() {
        let stats = [
            ProgStat {
                program: "sys_exit".into(),
                runs: 4,
                run_ns: 4_000_000,
            },
            ProgStat {
                program: "packets_out".into(),
                runs: 6,
                run_ns: 1_000_000,
            },
        ];
        let mut out = Vec::new();
        write(&mut out, &stats).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<Vec<&str>> = text
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            [
                ["sys_exit", "4", "1000000", "4.0"],
                ["packets_out", "6", "166666", "1.0"],
                ["all", "10", "500000", "5.0"],
            ]
        );
    }
}
