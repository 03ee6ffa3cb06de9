//! Bad input: one clear line on stderr, a non-zero exit, never a panic.

mod support;

use std::process::Command;

use support::TRACER;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(TRACER)
        .args(args)
        .output()
        .expect("run tracer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr:?}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    lines[0]
}

#[test]
fn durations_beyond_the_timer_are_usage_errors_not_panics() {
    for bad in ["1e20", "1e308", "18446744073709551616", "nan", "0"] {
        let (code, err) = run(&["--port", "1", "--duration", bad]);
        assert_eq!(code, 2, "--duration {bad}");
        let line = one_line(&err);
        assert!(line.contains("at most 1e9"), "{line}");
    }
}

#[test]
fn more_ports_than_the_kernel_filter_holds_is_a_usage_error() {
    let ports: Vec<String> = (1000..1065).map(|p| p.to_string()).collect();
    let mut args = Vec::new();
    for p in &ports {
        args.extend(["--port", p.as_str()]);
    }
    let (code, err) = run(&args);
    assert_eq!(code, 2);
    let line = one_line(&err);
    assert!(line.contains("at most 64 --port values"), "{line}");
    // The same port twice is one port.
    let (code, err) = run(&["--port", "+80"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn bad_ports_are_usage_errors() {
    for bad in ["0", "65536", "abc"] {
        let (code, err) = run(&["--port", bad]);
        assert_eq!(code, 2, "--port {bad}");
        let line = one_line(&err);
        assert!(
            line.starts_with("error:") && line.contains("1 to 65535"),
            "{line}"
        );
    }
}

#[test]
fn unknown_pid_is_a_usage_error() {
    let (code, err) = run(&["--pid", "4000000"]);
    assert_eq!(code, 2);
    assert_eq!(one_line(&err), "error: no process with pid 4000000 (--pid)");
}

#[test]
fn unprivileged_run_says_what_to_do() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            TRACER,
            "--port",
            "8080",
        ])
        .output()
        .expect("run setpriv");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(one_line(&err).contains("needs root"), "{err}");
}

#[test]
fn help_works() {
    let out = Command::new(TRACER).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--port"));
}

#[test]
fn forcing_a_tier_this_kernel_lacks_names_the_missing_feature() {
    // This CI kernel has neither kprobes nor fentry (see shared/platform.md).
    let (code, err) = run(&["--probe-mode", "kprobe", "--port", "8080"]);
    assert_eq!(code, 1);
    assert_eq!(
        one_line(&err),
        "error: kprobes are not available: /sys/bus/event_source/devices/kprobe is missing (CONFIG_KPROBES off)"
    );
    let (code, err) = run(&["--probe-mode", "fentry", "--port", "8080"]);
    assert_eq!(code, 1);
    assert!(
        one_line(&err).starts_with("error: fentry is not available: "),
        "{err}"
    );
    let (code, err) = run(&["--probe-mode", "uprobe"]);
    assert_eq!(code, 2);
    one_line(&err);
}

/// A low open-file limit: raised when the hard limit allows, otherwise one line naming the
/// limit (not programs that "fail to load" and hooks blamed on the cgroup mount).
#[test]
fn a_low_open_file_limit_is_raised_or_named() {
    assert!(
        support::is_root(),
        "this test loads eBPF programs: run it as root"
    );
    let port = support::free_port();
    let shell = |limit: &str| {
        let out = Command::new("sh")
            .args([
                "-c",
                &format!("ulimit {limit}; exec {TRACER} --json --port {port} --duration 0.2"),
            ])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = shell("-n 40");
    assert_eq!(code, 1);
    let line = one_line(&err);
    assert!(
        line.contains("open-file limit is 40") && line.contains("ulimit -n"),
        "{line}"
    );
    let (code, out, err) = shell("-Sn 40");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("(26/26 syscalls)"),
        "every program loaded: {out}"
    );
}

/// `decode` reads the bytes as one layer and says why that layer fails; it never re-reads a
/// bad IP packet as a bare TCP header.
#[test]
fn decode_is_strict_about_the_layer_and_names_it() {
    // IPv4 + UDP (protocol 17), 127.0.0.1 -> 127.0.0.1, ports 53 -> 53.
    let udp = "4500001c00004000401100007f0000017f000001 0035003500080000";
    let (code, err) = run(&["decode", udp]);
    assert_eq!(code, 2);
    let line = one_line(&err);
    assert!(
        line.starts_with(
            "error: cannot decode as an IP packet: not a TCP segment (IP protocol 17)"
        ) && line.ends_with("pass --tcp"),
        "{line}"
    );
    // The same bytes as a bare TCP header, when asked: source port 0x4500.
    let out = Command::new(TRACER)
        .args(["decode", "--tcp", udp])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("source port               17664"));
    // A non-first fragment holds no TCP header.
    let fragment =
        "4500002800002001400600007f0000017f000001 a0281f90000003e8000000005002faf000000000";
    let (code, err) = run(&["decode", fragment]);
    assert_eq!(code, 2);
    assert!(
        one_line(&err).contains("fragment at offset 8 bytes"),
        "{err}"
    );
    // An IPv4 total length shorter than its headers is an IPv4 error, not a TCP one.
    let short = "4500001400004000400600007f0000017f000001 a0281f90000003e8000000005002faf000000000";
    let (code, err) = run(&["decode", short]);
    assert_eq!(code, 2);
    assert!(
        one_line(&err).contains("IPv4 total length shorter than headers"),
        "{err}"
    );
    // A SACK option with no block.
    let sack0 = "a0281f90000003e8000000006010faf000000000 05020101";
    let (code, err) = run(&["decode", sack0]);
    assert_eq!(code, 2);
    assert!(one_line(&err).contains("TCP option size"), "{err}");
}

/// As an unprivileged user holding exactly the capabilities the README names, every hook
/// attaches; with one of them missing, the one line names it.
#[test]
fn the_documented_capability_set_is_enough_and_a_missing_one_is_named() {
    assert!(
        support::is_root(),
        "this test loads eBPF programs: run it as root"
    );
    let port = support::free_port();
    let as_nobody = |caps: &str| {
        // The test's own mount namespace, where it (root) makes sure tracefs is mounted:
        // mounting it is not among the capabilities needed.
        let script = format!(
            "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; \
             exec setpriv --reuid=65534 --regid=65534 --clear-groups \
             --inh-caps=-all,{caps} --ambient-caps=-all,{caps} \
             {TRACER} --json --port {port} --duration 0.3"
        );
        let out = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = as_nobody("+bpf,+perfmon,+net_admin,+dac_read_search");
    assert_eq!(code, 0, "{err}");
    let ready: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        ready["missing_layers"].as_array().unwrap().len(),
        0,
        "{ready}"
    );
    assert!(out.contains("(26/26 syscalls)"), "{out}");
    let (code, _, err) = as_nobody("+bpf,+perfmon,+net_admin");
    assert_eq!(code, 1);
    assert!(
        one_line(&err).contains("(missing: CAP_DAC_READ_SEARCH)"),
        "{err}"
    );
}

/// A missing argument is named on the one line (clap lists it on the next).
#[test]
fn decode_without_bytes_names_what_is_missing() {
    let (code, err) = run(&["decode"]);
    assert_eq!(code, 2);
    assert_eq!(
        one_line(&err),
        "error: the following required arguments were not provided: <HEX>..."
    );
}

/// An output that cannot be opened fails before anything is attached: one line naming it,
/// no `ready`.
#[test]
fn an_unwritable_pcap_fails_before_attaching() {
    assert!(
        support::is_root(),
        "this test loads eBPF programs: run it as root"
    );
    for bad in ["/nonexistent-dir/x.pcap", "/proc"] {
        let (code, err) = run(&["--port", "1", "--duration", "5", "--pcap", bad]);
        assert_eq!(code, 1, "{bad}");
        let line = one_line(&err);
        assert!(
            line.starts_with(&format!("error: cannot write {bad}")),
            "{line}"
        );
    }
}

/// `replay` of what is not a recording, or of nothing: one line saying which, no panic.
#[test]
fn replay_refuses_what_is_not_a_recording() {
    let (code, err) = run(&["replay", "/etc/hostname"]);
    assert_eq!(code, 1);
    assert_eq!(
        one_line(&err),
        "error: /etc/hostname: not a recording made with `tracer --record`"
    );
    let (code, err) = run(&["replay", "/no/such/recording"]);
    assert_eq!(code, 1);
    assert!(one_line(&err).starts_with("error: /no/such/recording: No such file"));
    let (code, err) = run(&["replay"]);
    assert_eq!(code, 2);
    assert_eq!(
        one_line(&err),
        "error: the following required arguments were not provided: <FILE>"
    );
    // The live run's filters mean nothing to a replay.
    let (code, _) = run(&["--port", "80", "replay", "/etc/hostname"]);
    assert_eq!(code, 2);
}

/// A recording that cannot be created fails before anything is attached.
#[test]
fn an_unwritable_recording_fails_before_attaching() {
    let (code, err) = run(&["--record", "/no/such/dir/run.rec", "--port", "1"]);
    assert_ne!(code, 0);
    assert!(
        one_line(&err).contains("cannot write /no/such/dir/run.rec"),
        "{err}"
    );
}

/// `--timings` names each startup phase before `ready`, and the phases add up to the total.
#[test]
fn timings_account_for_the_whole_start() {
    let out = Command::new(TRACER)
        .args(["--port", "1", "--timings", "--duration", "0.2", "--json"])
        .output()
        .expect("run tracer");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let block: Vec<&str> = err
        .lines()
        .skip_while(|l| *l != "tracer: startup phases (--timings)")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    let ms = |l: &str| -> f64 {
        l.trim_end_matches(" ms")
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{l:?}"))
    };
    let (total, phases) = block.split_last().expect("a total");
    assert!(total.trim_start().starts_with("total"), "{err}");
    for name in ["tracepoint formats", "verifying the programs", "attaching"] {
        assert!(phases.iter().any(|l| l.contains(name)), "{name}: {err}");
    }
    let sum: f64 = phases.iter().map(|l| ms(l)).sum();
    assert!((sum - ms(total)).abs() < 0.1 * phases.len() as f64, "{err}");
    let ready = err.find("tracer: ready").expect("ready");
    assert!(err.find("startup phases").unwrap() < ready);
}
