//! Where CPU time is read from: the container's cgroup when the process runs in one, the whole
//! machine otherwise.
//!
//! Every source reports cumulative counters (CPU time used, and the CPU time that was
//! available), so that the sampler takes the usage between two readings as the ratio of their
//! differences: no source needs its own clock.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Cumulative CPU counters, as a [`CpuSource`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuReading {
    /// CPU time used so far.
    pub used: Duration,
    /// CPU time that was available so far (wall time × CPUs, for a cgroup wall time × its
    /// quota); `None` when the source cannot tell, and the sampler counts wall time × the CPUs
    /// it was told about instead.
    pub available: Option<Duration>,
}

/// A source of CPU counters: the machine's `/proc/stat`, a cgroup's `cpu.stat`, or anything a
/// test or an application supplies.
pub trait CpuSource: Send + 'static {
    /// Reads the counters now.
    ///
    /// # Errors
    ///
    /// The I/O or parse error of the read; the sampler keeps its last figure and tries again at
    /// the next tick.
    fn read(&mut self) -> io::Result<CpuReading>;

    /// How many CPUs the usage is a share of, for sources whose readings carry no
    /// `available` time (a cgroup's quota, in CPUs).
    fn cpus(&self) -> f64 {
        std::thread::available_parallelism().map_or(1.0, |cpus| f64_from(cpus.get()))
    }
}

#[allow(clippy::cast_precision_loss)]
fn f64_from(value: usize) -> f64 {
    value as f64
}

/// The machine's CPU time from `/proc/stat` (its first line: every CPU, in clock ticks).
#[derive(Debug, Clone)]
pub struct ProcStat {
    path: PathBuf,
}

impl ProcStat {
    /// Reads `/proc/stat`.
    pub fn new() -> Self {
        Self { path: PathBuf::from("/proc/stat") }
    }
}

impl Default for ProcStat {
    fn default() -> Self {
        Self::new()
    }
}

/// Clock ticks per second in `/proc/stat`: `USER_HZ`, 100 on every Linux architecture that
/// exposes it to user space.
const USER_HZ: u64 = 100;

impl CpuSource for ProcStat {
    fn read(&mut self) -> io::Result<CpuReading> {
        parse_proc_stat(&fs::read_to_string(&self.path)?)
    }
}

/// `(used, available)` from `/proc/stat`'s aggregate `cpu` line: everything but `idle` and
/// `iowait` is used; everything is available.
pub(crate) fn parse_proc_stat(text: &str) -> io::Result<CpuReading> {
    let line = text
        .lines()
        .find(|line| line.starts_with("cpu "))
        .ok_or_else(|| invalid("no aggregate cpu line in /proc/stat"))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("a cpu counter in /proc/stat is not a number"))?;
    if ticks.len() < 4 {
        return Err(invalid("the cpu line of /proc/stat has fewer than four counters"));
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks[3] + ticks.get(4).copied().unwrap_or(0);
    let to_time = |ticks: u64| Duration::from_millis(ticks.saturating_mul(1000 / USER_HZ));
    Ok(CpuReading { used: to_time(total - idle), available: Some(to_time(total)) })
}

/// This process's own CPU time, from `/proc/self/stat` (user and system time), as a share of
/// the machine's CPUs: what the process itself burns, whatever else runs beside it.
#[derive(Debug, Clone, Default)]
pub struct ProcessCpu;

impl CpuSource for ProcessCpu {
    fn read(&mut self) -> io::Result<CpuReading> {
        let used = parse_process_stat(&fs::read_to_string("/proc/self/stat")?)?;
        Ok(CpuReading { used, available: None })
    }
}

/// User plus system time from `/proc/<pid>/stat`. The command name (field 2) sits in
/// parentheses and may hold spaces, so fields are counted after its closing one.
pub(crate) fn parse_process_stat(text: &str) -> io::Result<Duration> {
    let (_, after) =
        text.rsplit_once(')').ok_or_else(|| invalid("no command name in /proc/self/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state (3), ppid (4), ..., utime (14), stime (15).
    let field = |number: usize| -> io::Result<u64> {
        fields
            .get(number - 3)
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| invalid("a time field of /proc/self/stat is missing"))
    };
    let ticks = field(14)? + field(15)?;
    Ok(Duration::from_millis(ticks.saturating_mul(1000 / USER_HZ)))
}

/// A cgroup v2's CPU time (`cpu.stat`'s `usage_usec`), as a share of its quota (`cpu.max`) or,
/// without one, of the CPUs it may run on.
#[derive(Debug, Clone)]
pub struct CgroupV2 {
    dir: PathBuf,
}

impl CgroupV2 {
    /// The cgroup whose files are in `dir` (normally `/sys/fs/cgroup` plus the path in
    /// `/proc/self/cgroup`).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// This process's cgroup, if it runs in a cgroup v2 other than the root (that is, in a
    /// container or a systemd slice): its `cpu.stat` must be readable.
    pub fn current() -> Option<Self> {
        let membership = fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = cgroup_v2_path(&membership)?;
        if path == "/" {
            return None;
        }
        let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        dir.join("cpu.stat").is_file().then(|| Self::at(dir))
    }
}

/// The cgroup v2 path in `/proc/self/cgroup` (its `0::` line).
pub(crate) fn cgroup_v2_path(membership: &str) -> Option<&str> {
    membership.lines().find_map(|line| line.strip_prefix("0::"))
}

impl CpuSource for CgroupV2 {
    fn read(&mut self) -> io::Result<CpuReading> {
        let stat = fs::read_to_string(self.dir.join("cpu.stat"))?;
        Ok(CpuReading { used: parse_usage_usec(&stat)?, available: None })
    }

    fn cpus(&self) -> f64 {
        let machine = std::thread::available_parallelism().map_or(1.0, |cpus| f64_from(cpus.get()));
        fs::read_to_string(self.dir.join("cpu.max"))
            .ok()
            .and_then(|text| parse_cpu_max(&text))
            .map_or(machine, |quota| quota.min(machine))
    }
}

/// `usage_usec` from a cgroup v2 `cpu.stat`.
pub(crate) fn parse_usage_usec(stat: &str) -> io::Result<Duration> {
    stat.lines()
        .find_map(|line| line.strip_prefix("usage_usec "))
        .and_then(|value| value.trim().parse().ok())
        .map(Duration::from_micros)
        .ok_or_else(|| invalid("no usage_usec in cpu.stat"))
}

/// The quota in CPUs from a cgroup v2 `cpu.max` (`"max 100000"` is no quota).
pub(crate) fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota: f64 = fields.next()?.parse().ok()?;
    let period: f64 = fields.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// The source a sampler uses by default: the process's cgroup v2 when it has one of its own,
/// the machine's `/proc/stat` otherwise.
pub(crate) fn detect() -> Box<dyn CpuSource> {
    match CgroupV2::current() {
        Some(cgroup) => Box::new(cgroup),
        None => Box::new(ProcStat::new()),
    }
}

impl fmt::Debug for dyn CpuSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CpuSource")
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_counts_all_but_idle_and_iowait_as_used() {
        let text = "cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let reading = parse_proc_stat(text).unwrap();
        assert_eq!(reading.used, Duration::from_millis(160 * 10));
        assert_eq!(reading.available, Some(Duration::from_millis(980 * 10)));
        assert!(parse_proc_stat("intr 1 2 3").is_err());
        assert!(parse_proc_stat("cpu  1 x 3 4").is_err());
    }

    #[test]
    fn process_stat_reads_user_and_system_time_past_a_name_with_spaces() {
        let text = "4242 (my (odd) app) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 99";
        assert_eq!(parse_process_stat(text).unwrap(), Duration::from_millis(300 * 10));
        assert!(parse_process_stat("4242 (short) S 1").is_err());
    }

    #[test]
    fn cgroup_v2_files_parse() {
        let stat = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n";
        assert_eq!(parse_usage_usec(stat).unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(
            cgroup_v2_path("1:cpu:/\n0::/system.slice/app.service\n"),
            Some("/system.slice/app.service")
        );
        assert_eq!(cgroup_v2_path("4:memory:/x\n"), None);
    }

    #[test]
    fn a_cgroup_directory_reads_as_a_source() {
        let dir = std::env::temp_dir().join(format!("millpond-cgroup-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cpu.stat"), "usage_usec 1000\n").unwrap();
        fs::write(dir.join("cpu.max"), "50000 100000\n").unwrap();
        let mut cgroup = CgroupV2::at(&dir);
        assert_eq!(cgroup.read().unwrap().used, Duration::from_micros(1000));
        assert!((cgroup.cpus() - 0.5).abs() < 1e-9);
        fs::remove_dir_all(&dir).unwrap();
    }
}
