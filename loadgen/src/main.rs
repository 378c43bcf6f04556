//! `switchyard-load`: the bundled WAMP load generator's command line.
//!
//! Parses options, checks and raises the limits it needs, spreads the load over pinned
//! executors and (past the per-process file limit) worker processes of its own, and prints
//! a final table (plus `--json FILE` and `--markdown`). What it does not do: no load
//! against anything outside 127.0.0.0/8; every run is bounded in time and stops by itself.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use switchyard_loadgen::limits;
use switchyard_loadgen::report;
use switchyard_loadgen::scenario::{self, capacity, connect, pubsub, rpc, Common, Plan, Scenario};
use switchyard_loadgen::sys::now_ns;

#[derive(Parser)]
#[command(
    name = "switchyard-load",
    version,
    about = "WAMP load generator (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open N sessions at a rate, hold them, verify each is alive.
    Connect {
        #[command(flatten)]
        common: CommonArgs,
        /// Sessions to open.
        #[arg(long, default_value_t = 1000)]
        sessions: u64,
        /// New sessions per second.
        #[arg(long, default_value_t = 5000.0)]
        rate: f64,
        /// Do not subscribe the sessions to the broadcast topic.
        #[arg(long)]
        no_subscribe: bool,
        /// One session in this many calls an RPC after the broadcast (0 = none).
        #[arg(long, default_value_t = 0)]
        call_every: u64,
    },
    /// Publishers × subscribers × topics.
    Pubsub {
        #[command(flatten)]
        common: CommonArgs,
        /// Publishing sessions.
        #[arg(long, default_value_t = 1)]
        publishers: u64,
        /// Subscribing sessions.
        #[arg(long, default_value_t = 10)]
        subscribers: u64,
        /// Topics.
        #[arg(long, default_value_t = 1)]
        topics: u64,
        /// Bytes of args per event.
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// Publications per second over all publishers; 0 = flat out.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Flat out: publications per write.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Testing the tool: subscribers drop every Nth event they receive (0 = none), so
        /// that the report must show a loss.
        #[arg(long, default_value_t = 0, hide = true)]
        drop_every: u64,
    },
    /// Callers × callees.
    Rpc {
        #[command(flatten)]
        common: CommonArgs,
        /// Calling sessions.
        #[arg(long, default_value_t = 1)]
        callers: u64,
        /// Registering sessions.
        #[arg(long, default_value_t = 1)]
        callees: u64,
        /// Bytes of args per call.
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// Calls per second over all callers; 0 = flat out (closed loop).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Closed loop: calls in flight per caller (1 = sequential round trips).
        #[arg(long, default_value_t = 1)]
        in_flight: usize,
    },
    /// Start a router in a memory cgroup on given cores, hold N subscribed sessions, PASS or
    /// FAIL. Here `--cores N` confines the router to CPUs 0..N (the load generator shares
    /// them, one executor per process).
    Capacity {
        #[command(flatten)]
        common: CommonArgs,
        /// The router binary.
        #[arg(long)]
        router_bin: PathBuf,
        /// Arguments for the router (after `--`); default: Switchyard's `start` on its
        /// embedded default, with the worker processes the file limit requires.
        #[arg(last = true)]
        router_args: Vec<String>,
        /// CPUs the router may use, e.g. `0` or `0,1` (default: 0..--cores).
        #[arg(long)]
        router_cpus: Option<String>,
        /// Router worker processes (default: as many as the file limit requires).
        #[arg(long)]
        router_workers: Option<u64>,
        /// The memory limit, e.g. `4GiB`.
        #[arg(long, default_value = "4GiB")]
        memory: String,
        /// Sessions to hold.
        #[arg(long, default_value_t = 1000)]
        sessions: u64,
        /// New sessions per second.
        #[arg(long, default_value_t = 5000.0)]
        rate: f64,
        /// One session in this many calls an RPC after the broadcast (0 = none).
        #[arg(long, default_value_t = 1000)]
        call_every: u64,
    },
    /// Internal: run one worker process's share of a plan (JSON).
    #[command(hide = true)]
    Worker { plan: String },
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Router URL: ws://127.0.0.1:8080/ws or rs://127.0.0.1:8080.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Realm to join.
    #[arg(long, default_value = "realm1")]
    realm: String,
    /// json or msgpack.
    #[arg(long, default_value = "json")]
    serializer: String,
    /// Executors (pinned threads) per process.
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// CPUs to pin the executors to, e.g. `1` (default: all).
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Seconds to connect and subscribe before the load (default: from the session count).
    #[arg(long)]
    setup: Option<f64>,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured (connect: seconds held).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds for the last messages to arrive after the window.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// Worker processes to use at least (more are started when the file limit needs them).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Most worker processes to start.
    #[arg(long, default_value_t = 64)]
    max_workers: usize,
    /// Seed for WebSocket keys and masks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Microseconds each executor spins looking for work before it sleeps (default 0:
    /// sleep at once). Removes an idle core's wake-up latency from the measured round
    /// trips; use it when the load generator has cores of its own.
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also print the report as a Markdown table.
    #[arg(long)]
    markdown: bool,
    /// The router's pid, to report its RSS and CPU time.
    #[arg(long)]
    router_pid: Option<u32>,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("switchyard-load: {e:#}");
        std::process::exit(2);
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let (args, scenario) = match cli.command {
        Command::Worker { plan } => {
            let plan: Plan = serde_json::from_str(&plan)?;
            limits::probe();
            return scenario::worker_main(&plan);
        }
        Command::Connect {
            common,
            sessions,
            rate,
            no_subscribe,
            call_every,
        } => (
            common,
            Scenario::Connect(connect::Config {
                sessions,
                rate,
                subscribe: !no_subscribe,
                connect_timeout_secs: 10.0,
                call_every,
            }),
        ),
        Command::Pubsub {
            common,
            publishers,
            subscribers,
            topics,
            payload,
            rate,
            batch,
            drop_every,
        } => (
            common,
            Scenario::PubSub(pubsub::Config {
                publishers,
                subscribers,
                topics,
                payload,
                rate,
                batch,
                drop_every,
            }),
        ),
        Command::Rpc {
            common,
            callers,
            callees,
            payload,
            rate,
            in_flight,
        } => (
            common,
            Scenario::Rpc(rpc::Config {
                callers,
                callees,
                payload,
                rate,
                in_flight,
            }),
        ),
        Command::Capacity {
            mut common,
            router_bin,
            router_args,
            router_cpus,
            router_workers,
            memory,
            sessions,
            rate,
            call_every,
        } => {
            let cores = common.cores.max(1);
            let connect = connect::Config {
                sessions,
                rate,
                subscribe: true,
                connect_timeout_secs: 10.0,
                call_every,
            };
            let scenario = Scenario::Connect(connect.clone());
            let router_args = if router_args.is_empty() {
                let workers = router_workers.unwrap_or_else(|| {
                    capacity::router_workers(scenario.connections(), limits::probe().nofile)
                });
                eprintln!(
                    "capacity: the router runs {workers} worker process(es) on {cores} CPU(s)"
                );
                capacity::switchyard_args(cores, workers)
            } else {
                router_args
            };
            let cfg = capacity::Config {
                router_bin,
                router_args,
                router_cpus: router_cpus.unwrap_or_else(|| format!("0-{}", cores - 1)),
                memory: capacity::parse_size(&memory)?,
                sessions,
                sampled_calls: connect.sampled(),
            };
            // The load generator: one executor per process, on the same CPUs; the last
            // messages of a large broadcast and the sampled calls need time to arrive.
            common.cores = 1;
            common.drain = common.drain.max(5.0 + sessions as f64 / 10_000.0);
            let target = target_of(&common)?;
            let json = common.json.clone();
            let verdict = capacity::run(&cfg, target.addr, |pid| {
                run(common.clone(), scenario.clone(), Some(pid))
            })?;
            println!("{}", verdict.summary());
            if let Some(path) = json {
                // Next to the load's report: the verdict with its memory figures.
                let mut p = path.into_os_string();
                p.push(".verdict.json");
                std::fs::write(p, serde_json::to_string_pretty(&verdict)?)?;
            }
            if !verdict.pass {
                std::process::exit(1);
            }
            return Ok(());
        }
    };
    run(args, scenario, None).map(|_| ())
}

/// The router address, realm and serializer the options name.
fn target_of(args: &CommonArgs) -> anyhow::Result<switchyard_loadgen::target::Target> {
    Common {
        url: args.url.clone(),
        realm: args.realm.clone(),
        serializer: args.serializer.clone(),
        cores: 1,
        cpus: vec![],
        setup_secs: 0.0,
        warmup_secs: 0.0,
        duration_secs: 0.0,
        drain_secs: 0.0,
        sources: 1,
        seed: 0,
        spin_us: 0,
    }
    .target()
}

/// Runs one scenario to its report; returns whether it had no failures.
fn run(
    args: CommonArgs,
    scenario: Scenario,
    router_pid: Option<u32>,
) -> anyhow::Result<report::Report> {
    let mut lim = limits::probe();
    let conns = scenario.connections();
    if let Some(note) = limits::raise_conntrack(&mut lim, conns + conns / 10) {
        lim.notes.push(note);
    }
    let mut fit = limits::fit(&lim, conns, args.max_workers);
    fit.workers = fit.workers.max(args.workers.min(args.max_workers));
    for n in &lim.notes {
        eprintln!("limits: {n}");
    }
    if let Some(b) = &fit.blocker {
        anyhow::bail!("cannot run: {b}");
    }
    let port = target_of(&args)?.addr.port();
    if let Some(b) = limits::system_blockers(&lim, conns, port).first() {
        anyhow::bail!("cannot run: {b}");
    }
    let setup = args.setup.unwrap_or(match &scenario {
        // Twice the nominal time plus a margin: a busy machine joins more slowly than asked,
        // and a session joining after the broadcast would miss it.
        Scenario::Connect(c) => 2.0 * c.sessions as f64 / c.rate.max(1e-3) + 10.0,
        // Slow routers (Crossbar joins a few hundred sessions per second) need the time.
        _ => 3.0 + conns as f64 / 200.0,
    });
    let plan = Plan {
        common: Common {
            url: args.url.clone(),
            realm: args.realm,
            serializer: args.serializer,
            cores: args.cores.max(1),
            cpus: args.cpus,
            setup_secs: setup,
            warmup_secs: if matches!(scenario, Scenario::Connect(_)) {
                0.0
            } else {
                args.warmup
            },
            duration_secs: args.duration,
            drain_secs: args.drain,
            sources: fit.sources,
            seed: args.seed,
            spin_us: args.spin_us,
        },
        scenario,
        worker: 0,
        workers: fit.workers,
        // Workers need a moment to start before setup begins.
        t_start_ns: now_ns()
            + if fit.workers > 1 {
                500_000_000
            } else {
                50_000_000
            },
    };
    plan.common.target()?;
    eprintln!(
        "{}: {} connections, {} worker process(es) × {} executor(s), {} source address(es)",
        plan.scenario.name(),
        conns,
        fit.workers,
        plan.common.cores,
        fit.sources
    );
    let router = args.router_pid.or(router_pid);
    // A router's CPU and memory include its worker processes (Crossbar runs one per
    // router worker, Switchyard one per worker process).
    fn tree_cpu(pid: u32) -> u64 {
        connect::process_tree(pid)
            .into_iter()
            .filter_map(connect::cpu_ticks)
            .sum()
    }
    let cpu0 = router.map(tree_cpu);
    let own0 = connect::cpu_ticks(std::process::id());
    // The CPU of each side in the measured window alone (setup and drain would dilute it),
    // to say which side saturated. Several worker processes: only the router's.
    let t = plan.timeline();
    let own = (fit.workers == 1).then(std::process::id);
    let window_cpu = std::thread::spawn(move || {
        let sample = || (router.map(tree_cpu), own.and_then(connect::cpu_ticks));
        let wait_until = |at: u64| {
            let now = now_ns();
            if at > now {
                std::thread::sleep(std::time::Duration::from_nanos(at - now));
            }
        };
        wait_until(t.measure_start);
        let a = sample();
        wait_until(t.measure_end);
        (a, sample())
    });
    let mut stats = scenario::run(plan.clone(), fit.workers)?;
    if let Ok(((r0, l0), (r1, l1))) = window_cpu.join() {
        if let (Some(a), Some(b)) = (r0, r1) {
            stats.add("router_cpu_window_ms", b.saturating_sub(a) * 10);
        }
        if let (Some(a), Some(b)) = (l0, l1) {
            stats.add("loadgen_cpu_window_ms", b.saturating_sub(a) * 10);
        }
    }
    // /proc reports CPU time in USER_HZ ticks, 100 per second on Linux.
    if let (Some(a), Some(b)) = (own0, connect::cpu_ticks(std::process::id())) {
        if fit.workers == 1 {
            stats.add("loadgen_cpu_ms", (b - a) * 10);
        }
    }
    if let Some(pid) = router {
        let rss: u64 = connect::process_tree(pid)
            .into_iter()
            .filter_map(|p| connect::rss_kib(Some(p)))
            .sum();
        stats.add("router_rss_kib", rss);
        if let Some(a) = cpu0 {
            stats.add("router_cpu_ms", tree_cpu(pid).saturating_sub(a) * 10);
        }
    }
    let r = report::build(&plan, stats);
    print!("{}", r.table());
    if args.markdown {
        println!("\n{}", r.markdown());
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&r)?)?;
    }
    Ok(r)
}
