//! The operating-system limits a run needs: open files per process (`ulimit -n`, bounded
//! by `fs.nr_open`), the ephemeral port range (`net.ipv4.ip_local_port_range`) and the
//! connection-tracking table (`net.netfilter.nf_conntrack_max`). It raises what it may and
//! otherwise names exactly the limit that stops the run. What it does not do: no change
//! outside this process except the two sysctls, and only upward.

use std::fs;

/// File descriptors a process keeps for itself beyond its sockets (executors' rings,
/// eventfds, stdio, the binary's files).
pub const FD_RESERVE: u64 = 500;

/// What the limits allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open files per process after raising the soft limit to the hard one.
    pub nofile: u64,
    /// `fs.nr_open`.
    pub nr_open: Option<u64>,
    /// Ports in `ip_local_port_range`.
    pub ports: u64,
    /// `nf_conntrack_max`, when connection tracking is loaded.
    pub conntrack_max: Option<u64>,
    /// What was raised, as sentences for the report.
    pub notes: Vec<String>,
}

/// Reads the limits, raising the open-file soft limit to the hard limit.
pub fn probe() -> Limits {
    let mut notes = Vec::new();
    let nofile = raise_nofile(&mut notes);
    let ports = read("/proc/sys/net/ipv4/ip_local_port_range")
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            Some((it.next()??, it.next()??))
        })
        .map_or(28_232, |(lo, hi)| hi.saturating_sub(lo) + 1);
    Limits {
        nofile,
        nr_open: read("/proc/sys/fs/nr_open").and_then(|s| s.trim().parse().ok()),
        ports,
        conntrack_max: read("/proc/sys/net/netfilter/nf_conntrack_max")
            .and_then(|s| s.trim().parse().ok()),
        notes,
    }
}

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn raise_nofile(notes: &mut Vec<String>) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the hard one is
        // always permitted.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            notes.push(format!(
                "raised ulimit -n from {} to {}",
                lim.rlim_cur, lim.rlim_max
            ));
            return lim.rlim_max;
        }
    }
    lim.rlim_cur
}

/// How a run of `connections` sockets fits the limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fit {
    /// Worker processes needed for the file limit.
    pub workers: usize,
    /// Source addresses needed for the port range.
    pub sources: u64,
    /// The limit that stops the run, if one does.
    pub blocker: Option<String>,
}

/// Plans `connections` sockets to one router address (plus the router's own sockets on
/// this machine when `router_local`, which conntrack counts once per connection).
pub fn fit(l: &Limits, connections: u64, max_workers: usize) -> Fit {
    let per_process = l.nofile.saturating_sub(FD_RESERVE).max(1);
    let workers = connections.div_ceil(per_process).max(1) as usize;
    let sources = crate::sys::source_count(connections, l.ports);
    let mut blocker = None;
    if workers > max_workers {
        blocker = Some(format!(
            "ulimit -n is {} per process (hard limit; fs.nr_open {}): {} connections need {} worker processes, more than --max-workers {}",
            l.nofile,
            l.nr_open.map_or("unknown".into(), |n| n.to_string()),
            connections,
            workers,
            max_workers
        ));
    }
    if let Some(max) = l.conntrack_max {
        if connections > max {
            blocker = Some(format!(
                "net.netfilter.nf_conntrack_max is {max}, below {connections} connections (raise it: sysctl -w net.netfilter.nf_conntrack_max={})",
                connections + connections / 10
            ));
        }
    }
    Fit {
        workers,
        sources,
        blocker,
    }
}

/// Tries to raise `nf_conntrack_max` to at least `want`; returns a note on success.
pub fn raise_conntrack(l: &mut Limits, want: u64) -> Option<String> {
    let max = l.conntrack_max?;
    if max >= want {
        return None;
    }
    let path = "/proc/sys/net/netfilter/nf_conntrack_max";
    fs::write(path, want.to_string()).ok()?;
    l.conntrack_max = Some(want);
    Some(format!(
        "raised net.netfilter.nf_conntrack_max from {max} to {want}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(nofile: u64, conntrack: Option<u64>) -> Limits {
        Limits {
            nofile,
            nr_open: Some(1 << 20),
            ports: 28_232,
            conntrack_max: conntrack,
            notes: vec![],
        }
    }

    #[test]
    fn fits() {
        let f = fit(&limits(20_000, Some(262_144)), 180_001, 64);
        assert_eq!((f.workers, f.sources, f.blocker), (10, 9, None));
        let f = fit(&limits(20_000, None), 100, 64);
        assert_eq!((f.workers, f.sources, f.blocker), (1, 1, None));
        let f = fit(&limits(20_000, Some(100_000)), 180_000, 64);
        assert!(f
            .blocker
            .unwrap()
            .starts_with("net.netfilter.nf_conntrack_max is 100000"));
        let f = fit(&limits(1024, None), 180_000, 8);
        assert!(f.blocker.unwrap().starts_with("ulimit -n is 1024"));
    }

    #[test]
    fn probe_reads_this_machine() {
        let l = probe();
        assert!(l.nofile >= 1024);
        assert!(l.ports > 0);
    }
}
