//! Reading a guest's console into results, and the table printed at the end of a matrix run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// One run of the tests in one mode.
#[derive(Debug, Default)]
pub struct Run {
    /// The probe mode.
    pub mode: String,
    /// The test binary's exit code; `None` when the guest died before it ended.
    pub rc: Option<i32>,
    /// Tests that passed.
    pub passed: usize,
    /// Names of the tests that failed (twice: a failed test binary is run again).
    pub failed: Vec<String>,
    /// Names of the tests that failed, then passed when run again.
    pub flaky: Vec<String>,
}

/// What one kernel's VM reported.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `uname -r` in the guest.
    pub release: Option<String>,
    /// Every run, in order.
    pub runs: Vec<Run>,
    /// Per mode, the tier each hook got (`missing` when none).
    pub tiers: BTreeMap<String, Vec<(String, String)>>,
    /// Why the guest did not finish: a panic, a fault, a timeout.
    pub crash: Option<String>,
    /// What each failed test said first (its panic message, a few lines), by name.
    pub messages: BTreeMap<String, String>,
    /// Forced modes not run because their hooks got exactly what another mode's got (the
    /// same programs attached the same way), with that mode: `fentry` → `auto` on kernels
    /// where auto picks fentry for every hook that has it.
    pub same: BTreeMap<String, String>,
}

/// Lines of a failed test's panic message kept for the report.
const MESSAGE_LINES: usize = 8;

impl Outcome {
    /// Whether every planned run (`repeat` of each of `modes` but those the guest found the
    /// same as another) ended with every test passing and nothing crashed.
    pub fn passed(&self, modes: &[String], repeat: usize) -> bool {
        let planned = modes.iter().filter(|m| !self.same.contains_key(*m)).count() * repeat;
        self.crash.is_none()
            && self.runs.len() == planned
            && self
                .runs
                .iter()
                .all(|r| r.rc == Some(0) && r.failed.is_empty())
    }
}

/// A hook's tier in a `ready` line, as the report shows it.
fn tier_cell(hook: &Value) -> String {
    let tier = hook["tier"].as_str().unwrap_or("missing");
    // The syscall layer says how many of its programs attached: "(14/16 syscalls)".
    let via = hook["via"].as_str().unwrap_or("");
    match via.rfind('(') {
        Some(at) if via.ends_with("syscalls)") => {
            let count = via[at + 1..].trim_end_matches(" syscalls)");
            match count.split_once('/') {
                Some((got, all)) if got != all => format!("{tier} {count}"),
                _ => tier.to_string(),
            }
        }
        _ => tier.to_string(),
    }
}

/// Reads the `VMTEST` lines and libtest's own lines of a guest's console.
pub fn parse(console: &str) -> Outcome {
    let mut out = Outcome::default();
    let mut current: Option<Run> = None;
    let mut retrying = false;
    // The failed test whose output libtest is printing, and whether its panic began.
    let mut quoting: Option<(String, bool)> = None;
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            quoting = Some((name.to_string(), false));
            continue;
        }
        if let Some((name, panicked)) = quoting.as_mut() {
            if line.starts_with("note: run with") || line == "failures:" {
                quoting = None;
            } else {
                *panicked |= line.contains("panicked at");
                let said = out.messages.entry(name.clone()).or_default();
                if *panicked && said.lines().count() < MESSAGE_LINES && !retrying {
                    let cut: String = line.chars().take(300).collect();
                    said.push_str(&cut);
                    said.push('\n');
                }
                continue;
            }
        }
        // The console may put terminal escapes before the guest's first line.
        let line = line.find("VMTEST ").map_or(line, |at| &line[at..]);
        if let Some(release) = line.strip_prefix("VMTEST kernel ") {
            out.release = Some(release.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("VMTEST tiers mode=") {
            let (mode, json) = rest.split_once(' ').unwrap_or((rest, ""));
            let hooks = serde_json::from_str::<Value>(json)
                .ok()
                .and_then(|v| v["hooks"].as_array().cloned())
                .unwrap_or_default();
            out.tiers.insert(
                mode.to_string(),
                hooks
                    .iter()
                    .map(|h| (h["hook"].as_str().unwrap_or("?").to_string(), tier_cell(h)))
                    .collect(),
            );
        } else if let Some(rest) = line.strip_prefix("VMTEST same mode=") {
            let (mode, like) = rest.split_once(" as=").unwrap_or((rest, "?"));
            out.same.insert(mode.to_string(), like.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("VMTEST begin mode=") {
            let mode = rest.split_whitespace().next().unwrap_or("?");
            current = Some(Run {
                mode: mode.to_string(),
                ..Run::default()
            });
        } else if line.starts_with("VMTEST retry") {
            retrying = true;
        } else if line.starts_with("test result: ") {
            retrying = false;
        } else if line.starts_with("VMTEST end ") {
            if let Some(mut run) = current.take() {
                run.rc = line
                    .rsplit_once("rc=")
                    .and_then(|(_, rc)| rc.trim().parse().ok());
                out.runs.push(run);
            }
        } else if let (Some(run), Some(rest)) = (current.as_mut(), line.strip_prefix("test ")) {
            if let Some(name) = rest.strip_suffix(" ... ok") {
                if !retrying {
                    run.passed += 1;
                } else if let Some(at) = run.failed.iter().position(|f| f == name) {
                    run.failed.remove(at);
                    run.flaky.push(name.to_string());
                    run.passed += 1;
                }
            } else if let Some(name) = rest.strip_suffix(" ... FAILED")
                && !run.failed.iter().any(|f| f == name)
            {
                run.failed.push(name.to_string());
            }
        }
        if out.crash.is_none()
            && [
                "Kernel panic",
                "double fault",
                "BUG: ",
                "Oops",
                "general protection fault",
            ]
            .iter()
            .any(|m| line.contains(m))
        {
            out.crash = Some(line.trim().to_string());
        }
    }
    // A run that began and never ended: the guest died or hung inside it.
    if let Some(run) = current {
        out.runs.push(run);
    }
    out
}

/// One kernel's row of the result table.
pub struct Row<'a> {
    /// The kernel's name in the matrix (or the package's).
    pub kernel: &'a str,
    /// A failure here does not fail the run.
    pub canary: bool,
    /// Why failures here are known and do not fail the run.
    pub known: Option<&'a str>,
    /// Modes run, in order.
    pub modes: &'a [String],
    /// Repeats per mode.
    pub repeat: usize,
    /// What the guest reported, or why it could not run.
    pub outcome: Result<&'a Outcome, String>,
}

/// One mode's cell of the table (`pass`, `FAIL 2/3`) and the failures to list under it.
pub fn cell(outcome: &Outcome, mode: &str, repeat: usize) -> (String, Vec<String>) {
    let runs: Vec<&Run> = outcome.runs.iter().filter(|r| r.mode == mode).collect();
    let good = runs
        .iter()
        .filter(|r| r.rc == Some(0) && r.failed.is_empty())
        .count();
    let mut failures: Vec<String> = Vec::new();
    for r in &runs {
        for f in &r.flaky {
            let note = format!("{f} (flaky: failed, then passed when run again)");
            if !failures.contains(&note) {
                failures.push(note);
            }
        }
        for f in &r.failed {
            if !failures.contains(f) {
                failures.push(f.clone());
            }
        }
        if r.rc.is_none() {
            failures.push("(guest died mid-run)".into());
        }
    }
    let word = if good == repeat { "pass" } else { "FAIL" };
    let text = if repeat > 1 {
        format!("{word} {good}/{repeat}")
    } else {
        word.to_string()
    };
    (text, failures)
}

/// The tier each hook got per kernel in each mode, then the table: kernel × mode → pass/fail,
/// failing tests under it, and last (where a CI log's tail shows it) what each test that failed
/// on a kernel expected to pass said.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    // Tiers: one line per kernel and mode, hooks in the ready event's order.
    s.push_str("tiers (hook=tier per mode):\n");
    for row in rows {
        let Ok(o) = &row.outcome else { continue };
        for (mode, hooks) in &o.tiers {
            let cells: Vec<String> = hooks.iter().map(|(h, t)| format!("{h}={t}")).collect();
            let _ = writeln!(s, "  {:<12} {mode:<10} {}", row.kernel, cells.join(" "));
        }
    }
    s.push('\n');
    let modes: Vec<String> =
        rows.iter()
            .flat_map(|r| r.modes.iter().cloned())
            .fold(Vec::new(), |mut v, m| {
                if !v.contains(&m) {
                    v.push(m);
                }
                v
            });
    let _ = write!(s, "{:<18} {:<28}", "kernel", "uname -r");
    for m in &modes {
        let _ = write!(s, " {m:<12}");
    }
    s.push('\n');
    let mut notes = Vec::new();
    for row in rows {
        let release = row
            .outcome
            .as_ref()
            .ok()
            .and_then(|o| o.release.clone())
            .unwrap_or_else(|| "?".into());
        let name = format!(
            "{}{}",
            row.kernel,
            if row.canary {
                " (canary)"
            } else if row.known.is_some() {
                " (known)"
            } else {
                ""
            }
        );
        let _ = write!(s, "{name:<18} {release:<28}");
        match &row.outcome {
            Err(why) => {
                let _ = write!(s, " not run");
                notes.push(format!("{}: {why}", row.kernel));
            }
            Ok(o) => {
                for m in &modes {
                    if !row.modes.contains(m) {
                        let _ = write!(s, " {:<12}", "-");
                        continue;
                    }
                    if let Some(like) = o.same.get(m) {
                        let _ = write!(s, " {:<12}", format!("= {like}"));
                        continue;
                    }
                    let (text, failures) = cell(o, m, row.repeat);
                    let _ = write!(s, " {text:<12}");
                    if !failures.is_empty() {
                        notes.push(format!("{} {m}: {}", row.kernel, failures.join(", ")));
                    }
                }
                if let (Some(why), false) = (row.known, o.passed(row.modes, row.repeat)) {
                    notes.push(format!(
                        "{}: known, does not fail the run: {why}",
                        row.kernel
                    ));
                }
                if let Some(crash) = &o.crash {
                    notes.push(format!("{}: guest crashed: {crash}", row.kernel));
                }
            }
        }
        s.push('\n');
    }
    for n in notes {
        let _ = writeln!(s, "  {n}");
    }
    for row in rows.iter().filter(|r| r.known.is_none() && !r.canary) {
        let Ok(o) = &row.outcome else { continue };
        let mut named: Vec<&String> = o
            .runs
            .iter()
            .flat_map(|r| r.failed.iter().chain(&r.flaky))
            .collect();
        named.sort();
        named.dedup();
        for name in named {
            if let Some(said) = o.messages.get(name).filter(|m| !m.is_empty()) {
                let _ = writeln!(s, "\n{} {name} said first:", row.kernel);
                for line in said.lines() {
                    let _ = writeln!(s, "    {line}");
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
\x1bc\x1b[?7lVMTEST kernel 5.10.0-32-amd64\r
VMTEST tiers mode=auto {\"event\":\"ready\",\"hooks\":[{\"hook\":\"syscalls\",\"tier\":\"tracepoint\",\"via\":\"tracepoint:syscalls:sys_enter_*/sys_exit_* (14/16 syscalls)\"},{\"hook\":\"tcp_close\",\"tier\":null}]}
VMTEST begin mode=auto run=1
test refused_connection ... ok
test pid_filter_traces_the_server_without_a_port ... FAILED
test result: FAILED. 1 passed; 1 failed
VMTEST end mode=auto run=1 rc=101
VMTEST begin mode=auto run=2
test refused_connection ... ok
[   12.3] traps: PANIC: double fault, error_code: 0x0
";

    /// The table of one gating kernel.
    fn one_kernel(kernel: &str, modes: &[String], repeat: usize, o: &Outcome) -> String {
        table(&[Row {
            kernel,
            canary: false,
            known: None,
            modes,
            repeat,
            outcome: Ok(o),
        }])
    }

    #[test]
    fn console_lines_become_runs_tiers_and_crashes() {
        let o = parse(CONSOLE);
        assert_eq!(o.release.as_deref(), Some("5.10.0-32-amd64"));
        assert_eq!(
            o.tiers["auto"],
            [
                ("syscalls".to_string(), "tracepoint 14/16".to_string()),
                ("tcp_close".to_string(), "missing".to_string())
            ]
        );
        assert_eq!(o.runs.len(), 2);
        assert_eq!(o.runs[0].rc, Some(101));
        assert_eq!(o.runs[0].passed, 1);
        assert_eq!(
            o.runs[0].failed,
            ["pid_filter_traces_the_server_without_a_port"]
        );
        assert_eq!(o.runs[1].rc, None, "the guest died inside run 2");
        assert!(o.crash.as_deref().unwrap().contains("double fault"));
        assert!(!o.passed(&["auto".to_string()], 2));
        let modes = ["auto".to_string()];
        let t = one_kernel("5.10", &modes, 2, &o);
        assert!(t.contains("5.10               5.10.0-32-amd64 "), "{t}");
        assert!(t.contains("FAIL 0/2"), "{t}");
        assert!(
            t.contains("pid_filter_traces_the_server_without_a_port"),
            "{t}"
        );
        assert!(t.contains("syscalls=tracepoint 14/16"), "{t}");
    }

    #[test]
    fn a_test_that_passes_when_run_again_is_flaky_and_its_message_is_kept() {
        let o = parse(
            "VMTEST kernel 6.1.0-48-amd64\nVMTEST begin mode=auto run=1\n\
             test a ... ok\ntest b ... FAILED\n\nfailures:\n\n---- b stdout ----\n\
             echo-server: listening\nthread 'b' panicked at tracer/tests/live.rs:9:5:\n\
             assertion `left == right` failed\nnote: run with `RUST_BACKTRACE=1`\n\n\
             failures:\n    b\n\ntest result: FAILED. 1 passed; 1 failed\n\
             VMTEST retry\ntest a ... ok\ntest b ... ok\ntest result: ok. 2 passed\n\
             test c ... FAILED\nVMTEST retry\ntest c ... FAILED\ntest result: FAILED\n\
             VMTEST end mode=auto run=1 rc=1\n",
        );
        let run = &o.runs[0];
        assert_eq!(run.flaky, ["b"]);
        assert_eq!(run.failed, ["c"], "failed twice, named once");
        assert_eq!(run.passed, 2);
        assert_eq!(
            o.messages["b"],
            "thread 'b' panicked at tracer/tests/live.rs:9:5:\nassertion `left == right` failed\n"
        );
        let modes = ["auto".to_string()];
        let t = one_kernel("6.1", &modes, 1, &o);
        assert!(
            t.contains("b (flaky: failed, then passed when run again)"),
            "{t}"
        );
        assert!(
            t.trim_end().ends_with("assertion `left == right` failed"),
            "{t}"
        );
    }

    #[test]
    fn a_clean_console_passes() {
        let o = parse(
            "VMTEST kernel 6.12.117\nVMTEST begin mode=kprobe run=1\ntest a ... ok\n\
             VMTEST end mode=kprobe run=1 rc=0\n",
        );
        let kprobe = ["kprobe".to_string()];
        assert!(o.passed(&kprobe, 1));
        assert!(
            !o.passed(&kprobe, 2),
            "a planned run that never happened fails"
        );
    }

    #[test]
    fn a_mode_the_guest_found_the_same_as_auto_is_shown_so_and_not_awaited() {
        let o = parse(
            "VMTEST kernel 6.12.117\nVMTEST begin mode=auto run=1\ntest a ... ok\n\
             VMTEST end mode=auto run=1 rc=0\nVMTEST same mode=fentry as=auto\n",
        );
        let modes = ["auto".to_string(), "fentry".to_string()];
        assert!(o.passed(&modes, 1));
        let t = one_kernel("6.12", &modes, 1, &o);
        assert!(t.contains(" pass         = auto"), "{t}");
        assert!(!parse("VMTEST kernel 6.12.117\n").passed(&modes, 1));
    }
}
