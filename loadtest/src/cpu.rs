//! CPU time of a process (user + system), from `/proc/<pid>/stat`.

use std::time::Duration;

/// Clock ticks per second of `/proc` times (`USER_HZ`, 100 on every Linux platform).
const USER_HZ: u64 = 100;

/// CPU time used so far by `pid` (`None` = this process), or `None` where `/proc` is
/// not available.
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces: fields resume after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// CPU used by a process over a measured window.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuUsage {
    /// CPU seconds over the window.
    pub cpu_secs: f64,
    /// Average cores busy (1.0 = one core all the time).
    pub cores: f64,
    /// Percent of one core per 10,000 requests/s.
    pub core_pct_per_10k_rps: f64,
    /// CPU milliseconds per 1,000 orders.
    pub cpu_ms_per_1k_orders: f64,
}

impl CpuUsage {
    /// Usage from CPU time spent over `wall`, for `requests` and `orders` done in it.
    pub fn new(cpu: Duration, wall: Duration, requests: u64, orders: u64) -> Self {
        let wall = wall.as_secs_f64().max(1e-9);
        let cpu_secs = cpu.as_secs_f64();
        let cores = cpu_secs / wall;
        let rps = requests as f64 / wall;
        Self {
            cpu_secs,
            cores,
            core_pct_per_10k_rps: if rps > 0.0 { cores * 100.0 * 10_000.0 / rps } else { 0.0 },
            cpu_ms_per_1k_orders: if orders > 0 { cpu_secs * 1000.0 * 1000.0 / orders as f64 } else { 0.0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time_and_computes_costs() {
        let before = cpu_time(None).expect("/proc is mounted on Linux");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_time(None).expect("readable") >= before);
        assert_eq!(cpu_time(Some(u32::MAX)), None, "no such process");
        let u = CpuUsage::new(Duration::from_secs(6), Duration::from_secs(60), 600_000, 600_000);
        assert!((u.cores - 0.1).abs() < 1e-9);
        assert!((u.core_pct_per_10k_rps - 10.0).abs() < 1e-9);
        assert!((u.cpu_ms_per_1k_orders - 10.0).abs() < 1e-9);
    }
}
