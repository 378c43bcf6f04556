//! The `capacity` scenario: starts a router binary confined to given CPUs (`taskset`) and
//! to a memory cgroup this tool creates under its own (v1 `memory.limit_in_bytes`, as on
//! the project's machines, or v2 `memory.max`), runs `connect` against it, and answers PASS
//! or FAIL with the cgroup's peak usage. Without router arguments it starts Switchyard as a
//! user's first command does (`switchyard start` in an empty directory: the embedded
//! default configuration) with as many worker processes (`--workers`) as the router's
//! per-process file limit requires; every one of them is in the same cgroup, so the sum
//! counts. While the load runs it samples the router's RSS (all its processes) and the
//! cgroup's usage, so that the report gives the memory per idle session.
//!
//! What it does not do: no retry; it stops the router it started, by pid, and removes its
//! cgroup.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::report::Report;

/// Options of the `capacity` scenario.
#[derive(Clone, Debug)]
pub struct Config {
    /// The router binary.
    pub router_bin: PathBuf,
    /// Its arguments.
    pub router_args: Vec<String>,
    /// CPUs for the router, in `taskset -c` syntax.
    pub router_cpus: String,
    /// The memory limit in bytes.
    pub memory: u64,
    /// Sessions the load holds (for the per-session figures).
    pub sessions: u64,
    /// Sampled calls the load makes (all must be answered).
    pub sampled_calls: u64,
}

/// Open files each router process keeps for itself beyond its sessions' sockets
/// (listeners, links to the other workers, rings, logs), a generous margin.
pub const ROUTER_FD_RESERVE: u64 = 1_000;

/// The router worker processes `connections` need when each process may hold `nofile`
/// files: the per-process file limit is what forces several.
pub fn router_workers(connections: u64, nofile: u64) -> u64 {
    connections
        .div_ceil(nofile.saturating_sub(ROUTER_FD_RESERVE).max(1))
        .max(1)
}

/// `switchyard start`'s arguments for the embedded default on `cores` CPUs with `workers`
/// processes (each then takes its share of the CPUs as threads).
pub fn switchyard_args(cores: usize, workers: u64) -> Vec<String> {
    let mut args = vec!["start".to_owned(), "--loglevel".into(), "warn".into()];
    if workers > 1 {
        args.extend(["--workers".to_owned(), workers.to_string()]);
    } else {
        args.extend(["--cores".to_owned(), cores.to_string()]);
    }
    args
}

/// The answer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verdict {
    /// Whether every check passed.
    pub pass: bool,
    /// The cgroup's peak memory usage in bytes (v1 `memory.max_usage_in_bytes`).
    pub peak: u64,
    /// The limit in bytes.
    pub limit: u64,
    /// Sessions asked for.
    pub sessions: u64,
    /// The cgroup's usage once the router listened, before any session, in bytes.
    pub cgroup_base: u64,
    /// The router's RSS (all its processes) once it listened, in KiB.
    pub rss_base_kib: u64,
    /// The router's highest RSS (all its processes) sampled during the run, in KiB.
    pub rss_peak_kib: u64,
    /// Sessions that joined.
    pub joined: u64,
    /// The router's RSS while the sessions sat idle (the highest sample between setup and
    /// the broadcast), in KiB.
    pub rss_idle_kib: u64,
    /// The cgroup's usage while the sessions sat idle (likewise), in bytes.
    pub cgroup_idle: u64,
    /// Why it failed, one sentence per check that failed.
    pub reasons: Vec<String>,
}

impl Verdict {
    /// User-space memory per idle session: the router's RSS growth from its start to the
    /// idle hold, over the sessions that joined, in bytes.
    pub fn rss_per_session(&self) -> f64 {
        self.rss_idle_kib.saturating_sub(self.rss_base_kib) as f64 * 1024.0
            / self.joined.max(1) as f64
    }

    /// The cgroup's growth (user and kernel memory it accounts) from the router's start to
    /// the idle hold, per joined session, in bytes.
    pub fn cgroup_per_session(&self) -> f64 {
        self.cgroup_idle.saturating_sub(self.cgroup_base) as f64 / self.joined.max(1) as f64
    }

    /// The verdict and its figures, for the terminal.
    pub fn summary(&self) -> String {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        format!(
            "{}: {} of {} sessions joined; cgroup peak {:.1} MiB of {:.1} MiB (start {:.1} MiB, idle hold {:.1} MiB: {:.0} B per session); router RSS start {:.1} MiB, idle hold {:.1} MiB ({:.0} B per session), highest {:.1} MiB{}",
            if self.pass { "PASS" } else { "FAIL" },
            self.joined,
            self.sessions,
            mib(self.peak),
            mib(self.limit),
            mib(self.cgroup_base),
            mib(self.cgroup_idle),
            self.cgroup_per_session(),
            self.rss_base_kib as f64 / 1024.0,
            self.rss_idle_kib as f64 / 1024.0,
            self.rss_per_session(),
            self.rss_peak_kib as f64 / 1024.0,
            if self.reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.reasons.join("; "))
            }
        )
    }
}

/// Parses `4GiB`, `512MiB`, `100000` (bytes).
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("bad size {s:?}"))?;
    Ok((n * mult as f64) as u64)
}

enum Cgroup {
    V1(PathBuf),
    V2(PathBuf),
}

impl Cgroup {
    fn create(limit: u64) -> anyhow::Result<Self> {
        let own = fs::read_to_string("/proc/self/cgroup")?;
        let name = format!("switchyard-load-{}", std::process::id());
        for line in own.lines() {
            let mut f = line.splitn(3, ':');
            let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or("/"));
            if ctrls.split(',').any(|c| c == "memory") {
                let dir = Path::new("/sys/fs/cgroup/memory")
                    .join(path.trim_start_matches('/'))
                    .join(&name);
                fs::create_dir_all(&dir)?;
                fs::write(dir.join("memory.limit_in_bytes"), limit.to_string())?;
                return Ok(Self::V1(dir));
            }
        }
        let controllers =
            fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            let path = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/");
            let dir = Path::new("/sys/fs/cgroup")
                .join(path.trim_start_matches('/'))
                .join(&name);
            fs::create_dir_all(&dir)?;
            fs::write(dir.join("memory.max"), limit.to_string())?;
            return Ok(Self::V2(dir));
        }
        anyhow::bail!("no memory cgroup controller (neither v1 nor v2) is available")
    }

    fn dir(&self) -> &Path {
        match self {
            Self::V1(d) | Self::V2(d) => d,
        }
    }

    fn read(&self, file: &str) -> u64 {
        fs::read_to_string(self.dir().join(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILLs every process still in the cgroup (a router's worker that outlived its
    /// controller): all of them descend from the router this tool started, and the cgroup
    /// cannot be removed while any remains.
    fn kill_leftovers(&self) {
        for _ in 0..50 {
            let procs = fs::read_to_string(self.dir().join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<libc::pid_t> = procs
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid is a process
                // in the cgroup this tool created for the router it started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn usage_file(&self) -> PathBuf {
        match self {
            Self::V1(d) => d.join("memory.usage_in_bytes"),
            Self::V2(d) => d.join("memory.current"),
        }
    }

    fn usage(&self) -> u64 {
        fs::read_to_string(self.usage_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn peak(&self) -> u64 {
        match self {
            Self::V1(_) => self.read("memory.max_usage_in_bytes"),
            Self::V2(_) => self.read("memory.peak"),
        }
    }

    fn limit_hits(&self) -> u64 {
        match self {
            Self::V1(_) => self.read("memory.failcnt"),
            Self::V2(d) => fs::read_to_string(d.join("memory.events"))
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        l.strip_prefix("oom_kill ")
                            .and_then(|n| n.trim().parse().ok())
                    })
                })
                .unwrap_or(0),
        }
    }
}

/// Starts the router, runs `load` with its pid, and judges.
pub fn run(
    cfg: &Config,
    target: std::net::SocketAddrV4,
    load: impl FnOnce(u32) -> anyhow::Result<Report>,
) -> anyhow::Result<Verdict> {
    let cg = Cgroup::create(cfg.memory)?;
    let procs = cg.dir().join("cgroup.procs");
    // The shell joins the cgroup, then becomes taskset, which becomes the router: the
    // router and every process it forks are confined from their first instruction.
    let mut script = format!(
        "echo $$ > '{}' && exec taskset -c '{}' '{}'",
        procs.display(),
        cfg.router_cpus,
        cfg.router_bin.display()
    );
    for a in &cfg.router_args {
        script.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
    }
    // An empty working directory without CROSSBAR_DIR: Switchyard then finds no node
    // directory and serves its embedded default, and its pid file lands there.
    let workdir = std::env::temp_dir().join(format!("switchyard-load-{}", std::process::id()));
    fs::create_dir_all(&workdir)?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(&workdir)
        .env_remove("CROSSBAR_DIR");
    // Killed by a time limit, the load generator still stops the router: SIGTERM, which
    // Switchyard's controller passes on to its workers.
    crate::sys::die_with_parent(&mut cmd, libc::SIGTERM);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let tree_rss = move || -> u64 {
        super::connect::process_tree(pid)
            .into_iter()
            .filter_map(|p| super::connect::rss_kib(Some(p)))
            .sum()
    };
    let mut bases = (0, 0);
    // (time, router RSS in KiB, cgroup usage in bytes), every 250 ms while the load runs.
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u64, u64, u64)>::new()));
    let stop_sampler = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let usage_file = cg.usage_file();
    let result = (|| {
        wait_listening(&mut child, target)?;
        // Worker processes may still be starting when the first listens.
        std::thread::sleep(Duration::from_millis(500));
        bases = (cg.usage(), tree_rss());
        let sampler = {
            let (samples, stop) = (samples.clone(), stop_sampler.clone());
            std::thread::spawn(move || {
                use std::sync::atomic::Ordering;
                while !stop.load(Ordering::SeqCst) {
                    let usage = fs::read_to_string(&usage_file)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0);
                    let sample = (crate::sys::now_ns(), tree_rss(), usage);
                    if let Ok(mut v) = samples.lock() {
                        v.push(sample);
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        };
        let report = load(pid);
        stop_sampler.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = sampler.join();
        let report = report?;
        let alive = matches!(child.try_wait(), Ok(None));
        Ok::<_, anyhow::Error>((report, alive))
    })();
    stop(&mut child);
    let peak = cg.peak();
    let hits = cg.limit_hits();
    cg.kill_leftovers();
    let _ = fs::remove_dir(cg.dir());
    let _ = fs::remove_dir_all(&workdir);
    let (report, alive) = result?;
    let mut reasons = Vec::new();
    let s = &report.stats;
    let asked = report
        .rows
        .iter()
        .find(|(k, _)| k == "sessions asked")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(0);
    if !alive {
        reasons.push("the router exited during the run".into());
    }
    if s.counter("sessions_alive_at_end") < asked {
        reasons.push(format!(
            "{} of {asked} sessions alive at the end",
            s.counter("sessions_alive_at_end")
        ));
    }
    if s.counter("broadcast_received") < asked {
        reasons.push(format!(
            "{} of {asked} sessions got the broadcast",
            s.counter("broadcast_received")
        ));
    }
    if s.counter("sample_calls_ok") < cfg.sampled_calls {
        reasons.push(format!(
            "{} of {} sampled calls answered",
            s.counter("sample_calls_ok"),
            cfg.sampled_calls
        ));
    }
    if s.failure_count() > 0 {
        reasons.push(format!("{} failures", s.failure_count()));
    }
    if hits > 0 || peak > cfg.memory {
        reasons.push(format!("the memory limit was hit {hits} times"));
    }
    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    let (idle_from, idle_to) = report.idle_window_ns;
    let idle = samples
        .iter()
        .filter(|(t, _, _)| (idle_from..idle_to).contains(t));
    let rss_idle_kib = idle.clone().map(|s| s.1).max().unwrap_or(0);
    let cgroup_idle = idle.map(|s| s.2).max().unwrap_or(0);
    let rss_peak_kib = samples.iter().map(|s| s.1).max().unwrap_or(0);
    Ok(Verdict {
        pass: reasons.is_empty(),
        peak,
        limit: cfg.memory,
        sessions: cfg.sessions,
        cgroup_base: bases.0,
        rss_base_kib: bases.1,
        rss_peak_kib,
        joined: s.counter("sessions_open"),
        rss_idle_kib,
        cgroup_idle,
        reasons,
    })
}

fn wait_listening(child: &mut Child, target: std::net::SocketAddrV4) -> anyhow::Result<()> {
    for _ in 0..200 {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("the router exited at start: {status}");
        }
        if TcpStream::connect_timeout(&target.into(), Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("the router did not listen on {target} within 10 s")
}

/// Stops the router we started: SIGTERM by pid, then SIGKILL after 5 s.
fn stop(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let check = |s: &str, n: u64| assert_eq!(parse_size(s).unwrap(), n, "{s}");
        check("4GiB", 4 << 30);
        check("512MiB", 512 << 20);
        check("1.5G", 3 << 29);
        check("1000", 1000);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn router_processes_follow_the_file_limit() {
        let check = |conns: u64, nofile: u64, want: u64| {
            assert_eq!(router_workers(conns, nofile), want, "{conns} / {nofile}");
        };
        check(0, 20_000, 1);
        check(18_000, 20_000, 1);
        check(19_001, 20_000, 2);
        check(180_002, 20_000, 10);
        check(1_000_000, 20_000, 53);
        check(10, 100, 10);
        assert_eq!(
            switchyard_args(2, 1),
            ["start", "--loglevel", "warn", "--cores", "2"]
        );
        assert_eq!(
            switchyard_args(2, 10),
            ["start", "--loglevel", "warn", "--workers", "10"]
        );
    }
}
