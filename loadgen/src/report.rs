//! Turns merged statistics into the final human table, Markdown for `BENCHMARKS.md`, and a
//! JSON document. What it does not do: no measuring, no judging beyond what the scenario
//! asked (PASS/FAIL belongs to `capacity`).

use serde::Serialize;

use crate::stats::{Latency, Stats};

/// One run's figures, ready to print.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The router URL.
    pub url: String,
    /// The measured window in seconds.
    pub window_secs: f64,
    /// Rows of (figure, value).
    pub rows: Vec<(String, String)>,
    /// The headline figures as numbers, for scripts: `per_sec` (events delivered or calls
    /// answered per second in the window), `p50_us`, `p99_us`, `lost`, `failures`.
    pub figures: std::collections::BTreeMap<String, f64>,
    /// The merged statistics.
    pub stats: Stats,
    /// The end of setup and the end of the measured window on the monotonic clock
    /// ([`crate::sys::now_ns`]): in `connect`, the sessions sit idle between the two.
    pub idle_window_ns: (u64, u64),
}

fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1e3)
}

/// The latency rows: p50, p90, p99, p99.9, max.
pub fn latency_rows(name: &str, l: &Latency) -> Vec<(String, String)> {
    if l.count() == 0 {
        return vec![(format!("{name} latency"), "no samples".into())];
    }
    vec![
        (format!("{name} p50"), us(l.quantile(0.5))),
        (format!("{name} p90"), us(l.quantile(0.9))),
        (format!("{name} p99"), us(l.quantile(0.99))),
        (format!("{name} p99.9"), us(l.quantile(0.999))),
        (format!("{name} max"), us(l.max())),
        (format!("{name} samples"), l.count().to_string()),
    ]
}

impl Report {
    /// Appends the failure rows (one per cause).
    pub fn add_failures(&mut self) {
        if self.stats.failures.is_empty() {
            self.rows.push(("failures".into(), "0".into()));
        }
        for (cause, n) in &self.stats.failures {
            self.rows
                .push((format!("failures: {cause}"), n.to_string()));
        }
    }

    /// A plain table for the terminal.
    pub fn table(&self) -> String {
        let w = self
            .rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut s = format!(
            "{} against {} ({:.1} s measured)\n",
            self.scenario, self.url, self.window_secs
        );
        for (k, v) in &self.rows {
            s.push_str(&format!("  {k:<w$}  {v}\n"));
        }
        s
    }

    /// A Markdown table for `BENCHMARKS.md`.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "#### `{}` against `{}` ({:.1} s measured)\n\n| figure | value |\n|---|---|\n",
            self.scenario, self.url, self.window_secs
        );
        for (k, v) in &self.rows {
            s.push_str(&format!("| {k} | {v} |\n"));
        }
        s
    }
}

/// Builds the report of a finished `plan` from its merged statistics.
pub fn build(plan: &crate::scenario::Plan, stats: Stats) -> Report {
    use crate::scenario::{pubsub, Scenario};
    let t = plan.timeline();
    let window = (t.measure_end - t.measure_start) as f64 / 1e9;
    let per_sec = |n: u64| format!("{:.0}/s", n as f64 / window.max(1e-9));
    let mut rows = Vec::new();
    match &plan.scenario {
        Scenario::PubSub(c) => {
            let lost = stats.lost(|p| pubsub::fanout(c, p));
            rows.push(("published".into(), stats.counter("published").to_string()));
            rows.push((
                "events delivered (all)".into(),
                stats.counter("events_received").to_string(),
            ));
            rows.push((
                "events delivered in window".into(),
                per_sec(stats.counter("events_measured")),
            ));
            rows.push((
                "events lost (not delivered by the end of the drain)".into(),
                lost.to_string(),
            ));
            rows.push(("sequence gaps seen".into(), stats.gaps.to_string()));
            rows.push(("reordered".into(), stats.late.to_string()));
            rows.push(("duplicates".into(), stats.duplicates.to_string()));
            rows.extend(latency_rows("event", &stats.latency));
        }
        Scenario::Rpc(_) => {
            rows.push(("calls sent".into(), stats.counter("calls_sent").to_string()));
            rows.push((
                "calls answered".into(),
                stats.counter("calls_ok").to_string(),
            ));
            rows.push((
                "calls in window".into(),
                per_sec(stats.counter("calls_measured")),
            ));
            rows.extend(latency_rows("call", &stats.latency));
        }
        Scenario::Connect(c) => {
            let open = stats.counter("sessions_open");
            let setup = (t.setup_end - t.start) as f64 / 1e9;
            rows.push(("sessions asked".into(), c.sessions.to_string()));
            rows.push(("sessions joined".into(), open.to_string()));
            rows.push(("join rate (asked)".into(), format!("{:.0}/s", c.rate)));
            rows.push(("setup phase".into(), format!("{setup:.1} s")));
            rows.push((
                "alive at the end".into(),
                stats.counter("sessions_alive_at_end").to_string(),
            ));
            if c.subscribe {
                rows.push((
                    "got the broadcast".into(),
                    stats.counter("broadcast_received").to_string(),
                ));
            }
            if c.call_every > 0 {
                rows.push((
                    "sampled calls answered".into(),
                    format!("{} of {}", stats.counter("sample_calls_ok"), c.sampled()),
                ));
            }
            if stats.counters.contains_key("router_session_count") {
                rows.push((
                    "router's wamp.session.count".into(),
                    stats.counter("router_session_count").to_string(),
                ));
            }
            rows.push((
                "load generator RSS".into(),
                format!("{} KiB", stats.counter("loadgen_rss_kib")),
            ));
        }
    }
    let run_secs = (t.drain_end - t.start) as f64 / 1e9;
    for (k, label) in [
        ("router_rss_kib", "router RSS (with its child processes)"),
        ("router_cpu_ms", "router CPU during the run"),
        ("loadgen_cpu_ms", "load generator CPU during the run"),
    ] {
        if let Some(v) = stats.counters.get(k) {
            let shown = if k.ends_with("kib") {
                format!("{v} KiB")
            } else {
                format!(
                    "{v} ms ({:.0}% of one core)",
                    *v as f64 / 10.0 / run_secs.max(1e-9)
                )
            };
            rows.push((label.into(), shown));
        }
    }
    rows.extend(latency_rows("connect", &stats.connect));
    let mut figures = std::collections::BTreeMap::new();
    let measured = match &plan.scenario {
        Scenario::PubSub(c) => {
            figures.insert("lost".into(), stats.lost(|p| pubsub::fanout(c, p)) as f64);
            stats.counter("events_measured")
        }
        Scenario::Rpc(_) => stats.counter("calls_measured"),
        Scenario::Connect(_) => stats.counter("sessions_open"),
    };
    figures.insert("per_sec".into(), measured as f64 / window.max(1e-9));
    figures.insert("p50_us".into(), stats.latency.quantile(0.5) as f64 / 1e3);
    figures.insert("p99_us".into(), stats.latency.quantile(0.99) as f64 / 1e3);
    figures.insert("failures".into(), stats.failure_count() as f64);
    rows.extend(saturation(
        &stats,
        plan.common.cores.max(1),
        measured,
        window,
    ));
    for k in [
        "router_cpu_ms",
        "loadgen_cpu_ms",
        "router_rss_kib",
        "router_cpu_window_ms",
        "loadgen_cpu_window_ms",
    ] {
        if let Some(v) = stats.counters.get(k) {
            figures.insert(k.into(), *v as f64);
        }
    }
    let mut r = Report {
        idle_window_ns: (t.setup_end, t.measure_end),
        figures,
        scenario: plan.scenario.name().into(),
        url: plan.common.url.clone(),
        window_secs: window,
        rows,
        stats,
    };
    r.add_failures();
    r
}

/// Which side saturated, from each side's share of its CPUs.
fn verdict(router: f64, load: f64) -> &'static str {
    match (router >= SATURATED, load >= SATURATED) {
        (true, true) => "both",
        (true, false) => "router",
        (false, true) => "load generator",
        (false, false) => "neither (latency bound, or the CPUs were busy with other work)",
    }
}

/// A side at or above this share of its CPUs in the window counts as saturated.
const SATURATED: f64 = 0.9;

/// The rows saying how busy each side was in the measured window, its CPU time per
/// operation, and which side saturated. The router counts as one core (the side-by-side
/// setup pins it to one); the load generator as its executors.
fn saturation(stats: &Stats, cores: usize, ops: u64, window: f64) -> Vec<(String, String)> {
    let (Some(router), Some(load)) = (
        stats.counters.get("router_cpu_window_ms"),
        stats.counters.get("loadgen_cpu_window_ms"),
    ) else {
        return Vec::new();
    };
    let share = |ms: u64, cpus: usize| ms as f64 / 1e3 / window.max(1e-9) / cpus.max(1) as f64;
    let per_op = |ms: u64| ms as f64 * 1e3 / ops.max(1) as f64;
    let (r, l) = (share(*router, 1), share(*load, cores));
    let side = verdict(r, l);
    vec![
        (
            "router CPU in the window".into(),
            format!(
                "{:.0}% of one core, {:.2} µs per operation",
                r * 100.0,
                per_op(*router)
            ),
        ),
        (
            "load generator CPU in the window".into(),
            format!(
                "{:.0}% of its cores, {:.2} µs per operation",
                l * 100.0,
                per_op(*load)
            ),
        ),
        ("saturated".into(), side.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Window CPU (ms) of each side over a 2 s window of 1,000 operations, the load
    /// generator on `cores` executors: the rows name the saturated side and the time per
    /// operation.
    fn check(router_ms: u64, load_ms: u64, cores: usize, expect: &[&str]) {
        let mut stats = Stats::default();
        stats.add("router_cpu_window_ms", router_ms);
        stats.add("loadgen_cpu_window_ms", load_ms);
        let rows = saturation(&stats, cores, 1000, 2.0);
        let text: Vec<String> = rows.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        for e in expect {
            assert!(text.iter().any(|t| t.contains(e)), "{e:?} not in {text:?}");
        }
    }

    #[test]
    fn says_which_side_saturated() {
        check(
            1900,
            400,
            1,
            &["saturated: router", "95% of one core", "1900.00 µs per"],
        );
        check(
            400,
            1900,
            1,
            &["saturated: load generator", "20% of one core"],
        );
        check(1990, 3800, 2, &["saturated: both", "95% of its cores"]);
        check(400, 2000, 2, &["saturated: neither", "50% of its cores"]);
        check(0, 0, 1, &["saturated: neither", "0.00 µs per operation"]);
        assert!(saturation(&Stats::default(), 1, 10, 1.0).is_empty());
    }

    #[test]
    fn renders() {
        let mut stats = Stats::default();
        stats.fail("eof");
        let mut l = Latency::default();
        l.record(40_000);
        let mut r = Report {
            scenario: "rpc".into(),
            url: "ws://127.0.0.1:8080/ws".into(),
            window_secs: 3.0,
            rows: latency_rows("call", &l),
            figures: Default::default(),
            stats,
            idle_window_ns: (0, 0),
        };
        r.add_failures();
        let t = r.table();
        assert!(t.contains("call p50"), "{t}");
        assert!(t.contains("40.0 µs"), "{t}");
        assert!(t.contains("failures: eof  1"), "{t}");
        let m = r.markdown();
        assert!(m.contains("| failures: eof | 1 |"), "{m}");
    }
}
