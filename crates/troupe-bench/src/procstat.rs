//! CPU accounting from `/proc`: the bench process itself and the Python runtimes it
//! (through the mesh) spawned.

use std::io;
use std::path::Path;

/// `/proc/<pid>/stat` counts CPU time in `USER_HZ` ticks, which Linux fixes at 100 for
/// every userspace-visible interface regardless of the kernel's internal `HZ`.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of `/proc/<pid>/stat` the benchmark needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Parent pid.
    pub ppid: u32,
    /// User plus system time of all threads, in ticks.
    pub cpu_ticks: u64,
}

/// Parses one `/proc/<pid>/stat` line; `None` if it is not one.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may itself contain spaces and
    // parentheses, so split after the *last* closing parenthesis.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcStat {
        ppid,
        cpu_ticks: utime + stime,
    })
}

/// Reads `/proc/<pid>/stat`.
pub fn read_stat(pid: u32) -> io::Result<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/stat format"),
        )
    })
}

/// CPU seconds (user + system, all threads) used so far by `pid`.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    Ok(ticks_to_seconds(read_stat(pid)?.cpu_ticks))
}

/// CPU seconds used so far by this process.
pub fn self_cpu_seconds() -> io::Result<f64> {
    cpu_seconds(std::process::id())
}

/// Converts `USER_HZ` ticks to seconds.
pub fn ticks_to_seconds(ticks: u64) -> f64 {
    // Tick counts stay far below 2^52, where the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let t = ticks as f64;
    t / TICKS_PER_SECOND
}

/// A Python runtime process found among this process's children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeChild {
    /// Its pid.
    pub pid: u32,
    /// `ASYA_ACTOR_NAME` from its environment, when readable.
    pub actor: Option<String>,
}

/// Live children of `parent` whose command line mentions `marker` (the runtime file name).
pub fn children_running(parent: u32, marker: &str) -> io::Result<Vec<RuntimeChild>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes may exit while we look: skip whatever cannot be read.
        let Ok(stat) = read_stat(pid) else { continue };
        if stat.ppid != parent {
            continue;
        }
        let dir = entry.path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        found.push(RuntimeChild {
            pid,
            actor: env_var(&dir, "ASYA_ACTOR_NAME"),
        });
    }
    found.sort_by_key(|c| c.pid);
    Ok(found)
}

fn env_var(proc_dir: &Path, name: &str) -> Option<String> {
    let environ = std::fs::read(proc_dir.join("environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(name)
            .and_then(|v| v.strip_prefix('='))
            .map(str::to_owned)
    })
}

/// Resident set size of this process in KiB (`VmRSS` of `/proc/self/status`).
pub fn self_rss_kib() -> io::Result<u64> {
    self_status_field("VmRSS:")
}

/// Threads of this process (`Threads` of `/proc/self/status`).
pub fn self_threads() -> io::Result<u64> {
    self_status_field("Threads:")
}

fn self_status_field(name: &str) -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/status")?;
    status_field(&text, name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no {name} line in /proc/self/status"),
        )
    })
}

/// The number after `name` in a `/proc/<pid>/status` text (`VmRSS:  1234 kB` -> 1234).
pub fn status_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One-minute, five-minute and fifteen-minute load averages.
pub fn load_average() -> Option<(f64, f64, f64)> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_parentheses_and_spaces_in_the_name() {
        let line =
            "4242 (py (x) y) S 17 4242 4242 0 -1 4194560 1 0 0 0 250 35 0 0 20 0 1 0 100 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                ppid: 17,
                cpu_ticks: 285
            })
        );
    }

    #[test]
    fn reads_rss_and_threads() {
        let text = "Name:\tx\nVmPeak:\t 9 kB\nVmRSS:\t    5120 kB\nThreads:\t3\n";
        assert_eq!(status_field(text, "VmRSS:"), Some(5120));
        assert_eq!(status_field(text, "Threads:"), Some(3));
        assert_eq!(status_field("Name:\tkthreadd\n", "VmRSS:"), None);
        assert!(self_rss_kib().unwrap() > 0);
        assert!(self_threads().unwrap() >= 1);
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat("1 (init) S 0 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_own_process_and_sees_cpu_grow() {
        let me = std::process::id();
        let stat = read_stat(me).unwrap();
        let parent = std::os::unix::process::parent_id();
        assert_eq!(stat.ppid, parent);
        let before = self_cpu_seconds().unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(150) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = self_cpu_seconds().unwrap();
        assert!(
            after - before >= 0.05,
            "busy loop of 150 ms accounted as {} s",
            after - before
        );
    }

    #[test]
    fn finds_a_spawned_child_by_marker_and_env() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .env("ASYA_ACTOR_NAME", "zed")
            .spawn()
            .unwrap();
        // Right after spawn the child may not have exec'd yet (its cmdline is still
        // ours), so look again for a while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let found = loop {
            let found = children_running(std::process::id(), "sleep").unwrap();
            if found.iter().any(|c| c.pid == child.id()) || std::time::Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let _ = child.kill();
        let _ = child.wait();
        let mine: Vec<_> = found.iter().filter(|c| c.pid == child.id()).collect();
        assert_eq!(mine.len(), 1, "{found:?}");
        assert_eq!(mine[0].actor.as_deref(), Some("zed"));
        assert!(children_running(std::process::id(), "no-such-marker-xyz")
            .unwrap()
            .is_empty());
    }
}
