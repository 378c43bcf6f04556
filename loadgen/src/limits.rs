//! The operating-system limits a run needs: open files per process (`ulimit -n`, bounded
//! by `fs.nr_open`), open files on the machine (`fs.file-max`: the router's end of every
//! loopback connection is here too), the ephemeral port range
//! (`net.ipv4.ip_local_port_range`, which must not hand out the router's port unless
//! `net.ipv4.ip_local_reserved_ports` keeps it) and the connection-tracking table
//! (`net.netfilter.nf_conntrack_max`). It raises what it may and otherwise names exactly
//! the limit that stops the run. What it does not do: no change outside this process
//! except `nf_conntrack_max`, and only upward (`scripts/test.sh` sets the others).

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
    /// `fs.file-max`.
    pub file_max: Option<u64>,
    /// `ip_local_port_range` as (low, high).
    pub port_range: (u16, u16),
    /// `ip_local_reserved_ports`, as written (`8080,9000-9010`).
    pub reserved_ports: String,
    /// What was raised, as sentences for the report.
    pub notes: Vec<String>,
}

/// Reads the limits, raising the open-file soft limit to the hard limit.
pub fn probe() -> Limits {
    let mut notes = Vec::new();
    let nofile = raise_nofile(&mut notes);
    let port_range = read("/proc/sys/net/ipv4/ip_local_port_range")
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999));
    let ports = u64::from(port_range.1.saturating_sub(port_range.0)) + 1;
    Limits {
        nofile,
        file_max: read("/proc/sys/fs/file-max").and_then(|s| s.trim().parse().ok()),
        port_range,
        reserved_ports: read("/proc/sys/net/ipv4/ip_local_reserved_ports")
            .unwrap_or_default()
            .trim()
            .to_owned(),
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

/// Whether `port` is in a `ip_local_reserved_ports` list such as `8080,9000-9010`.
pub fn port_reserved(list: &str, port: u16) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|r| match r.split_once('-') {
            Some((a, b)) => match (a.parse::<u16>(), b.parse::<u16>()) {
                (Ok(a), Ok(b)) => (a..=b).contains(&port),
                _ => false,
            },
            None => r.parse() == Ok(port),
        })
}

/// The machine-wide limits that stop `connections` loopback connections to a router on
/// `router_port` of this machine, one sentence each naming the sysctl and the fix.
pub fn system_blockers(l: &Limits, connections: u64, router_port: u16) -> Vec<String> {
    let mut out = Vec::new();
    // Both ends of each connection are files on this machine, plus a margin for
    // everything else running.
    let files = 2 * connections + 65_536;
    if let Some(max) = l.file_max {
        if max < files {
            out.push(format!(
                "fs.file-max is {max}, below the {files} open files both ends of {connections} connections need (raise it: sysctl -w fs.file-max={files})"
            ));
        }
    }
    if let Some(nr) = l.nr_open {
        if nr < l.nofile {
            out.push(format!(
                "fs.nr_open is {nr}, below ulimit -n {} (raise it: sysctl -w fs.nr_open=1048576)",
                l.nofile
            ));
        }
    }
    let (lo, hi) = l.port_range;
    if (lo..=hi).contains(&router_port) && !port_reserved(&l.reserved_ports, router_port) {
        out.push(format!(
            "net.ipv4.ip_local_port_range {lo}-{hi} includes the router's port {router_port} and net.ipv4.ip_local_reserved_ports ({:?}) does not reserve it (sysctl -w net.ipv4.ip_local_reserved_ports={router_port})",
            l.reserved_ports
        ));
    }
    out
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
            file_max: Some(2_000_000),
            port_range: (32_768, 60_999),
            reserved_ports: String::new(),
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
    fn machine_limits_name_the_sysctl() {
        assert!(system_blockers(&limits(20_000, None), 180_000, 8080).is_empty());
        let mut l = limits(20_000, None);
        l.file_max = Some(100_000);
        let b = system_blockers(&l, 180_000, 8080);
        assert_eq!(b.len(), 1);
        assert!(b[0].starts_with("fs.file-max is 100000"), "{b:?}");
        let mut l = limits(20_000, None);
        l.port_range = (1024, 65_000);
        let b = system_blockers(&l, 10, 8080);
        assert!(
            b[0].starts_with("net.ipv4.ip_local_port_range 1024-65000"),
            "{b:?}"
        );
        l.reserved_ports = "22,8000-8100".into();
        assert!(system_blockers(&l, 10, 8080).is_empty());
        let mut l = limits(20_000, None);
        l.nr_open = Some(10_000);
        assert!(system_blockers(&l, 10, 8080)[0].starts_with("fs.nr_open is 10000"));
    }

    #[test]
    fn reserved_port_lists() {
        let check = |list: &str, port: u16, want: bool| {
            assert_eq!(port_reserved(list, port), want, "{list:?} {port}");
        };
        check("", 8080, false);
        check("8080", 8080, true);
        check("22,8080", 8080, true);
        check("8000-8100", 8080, true);
        check("8000-8079,8081", 8080, false);
        check("junk", 8080, false);
    }

    #[test]
    fn probe_reads_this_machine() {
        let l = probe();
        assert!(l.nofile >= 1024);
        assert!(l.ports > 0);
    }
}
