//! The kernel's tick rate (`CONFIG_HZ`), which TCP's retransmission timeout is counted in.
//! Read from the kernel's build configuration in `/boot` where the distribution installs it,
//! else derived from `/proc/timer_list` (jiffies start 300 s before zero, and tick HZ times a
//! second); `None` when neither is readable, and the RTO is then not shown.

use std::sync::OnceLock;

/// The tick rate, read once.
pub fn kernel_hz() -> Option<u32> {
    static HZ: OnceLock<Option<u32>> = OnceLock::new();
    *HZ.get_or_init(|| from_boot_config().or_else(from_timer_list))
}

/// Converts `jiffies` to microseconds, when the tick rate is known.
pub fn jiffies_to_us(jiffies: u32) -> Option<u64> {
    kernel_hz().map(|hz| u64::from(jiffies) * 1_000_000 / u64::from(hz))
}

fn from_boot_config() -> Option<u32> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let text = std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok()?;
    config_hz(&text)
}

fn config_hz(config: &str) -> Option<u32> {
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.trim().parse().ok())
}

fn from_timer_list() -> Option<u32> {
    timer_list_hz(&std::fs::read_to_string("/proc/timer_list").ok()?)
}

/// HZ from a `/proc/timer_list`: its `now at N nsecs` (time since boot) and the jiffies count
/// printed with it, knowing that jiffies start at `2^32 - 300 * HZ`. The count is the tick
/// device's `jiffies:` line, current when the file is read; kernels without it give each
/// CPU's `.last_jiffies`, the last tick that CPU took, seconds old on an idle CPU of a tickless
/// kernel: the latest of them.
fn timer_list_hz(text: &str) -> Option<u32> {
    let now_ns: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("now at "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let count = |key: &str| -> Option<u64> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter_map(|v| v.trim_start_matches([' ', ':']).trim().parse().ok())
            .max()
    };
    let jiffies = count("jiffies:").or_else(|| count(".last_jiffies"))?;
    // Negative in the first 300 s after boot (a fresh VM, a container's host just booted):
    // both sides are then negative, and the ratio still HZ. Around 300 s every rate gives
    // the same count: nothing to tell them apart by.
    let since_start = jiffies as f64 - (1u64 << 32) as f64;
    let seconds = now_ns as f64 / 1e9 - 300.0;
    if seconds.abs() < 2.0 {
        return None;
    }
    let hz = since_start / seconds;
    // The rates Linux is built with.
    [100u32, 250, 300, 1000]
        .into_iter()
        .find(|&c| (hz - f64::from(c)).abs() < f64::from(c) * 0.02)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hz_from_a_config_and_a_timer_list() {
        assert_eq!(
            config_hz("# x\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n"),
            Some(250)
        );
        assert_eq!(config_hz("CONFIG_HZ_250=y\n"), None);
        let list = "Timer List Version: v0.10\nnow at 38663504975534 nsecs\n\n  \
                    .last_jiffies   : 4304558137\n";
        assert_eq!(timer_list_hz(list), Some(250));
        // 1000 Hz, an hour after boot.
        let list = format!(
            "now at {} nsecs\n .last_jiffies : {}\n",
            3_600_000_000_000u64,
            (1u64 << 32) + (3600 - 300) * 1000
        );
        assert_eq!(timer_list_hz(&list), Some(1000));
        // 250 Hz, two minutes after boot: jiffies still below 2^32.
        let list = format!(
            "now at {} nsecs\n .last_jiffies : {}\n",
            120_000_000_000u64,
            (1u64 << 32) - (300 - 120) * 250
        );
        assert_eq!(timer_list_hz(&list), Some(250));
        // The current count wins over a stale `.last_jiffies` (an idle CPU's, 8 s old): 250 Hz,
        // 30 s after the jiffies wrap, where the stale count would read as 184 Hz.
        let list = format!(
            "now at {} nsecs\n  .last_jiffies   : {}\njiffies: {}\n",
            330_000_000_000u64,
            (1u64 << 32) + 22 * 250,
            (1u64 << 32) + 30 * 250
        );
        assert_eq!(timer_list_hz(&list), Some(250));
    }
}
