//! The `switchyard` command line: Crossbar's verbs (`start`, `check`, `init`, `version`,
//! `stop`, `status`) parsed with clap, and what each one does outside the server itself.
//!
//! It finds the configuration (`--config FILE`, else `CBDIR/config.json`, else the embedded
//! default), refuses one that `check` rejects with the same lines `check` prints, sets up
//! `tracing`, raises the open-file limit, keeps the pid file `node.pid` in the node
//! directory and hands the checked configuration to [`crate::server`]. It does not route,
//! bind or serve anything itself.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use rustix::process::{
    getrlimit, kill_process, setrlimit, test_kill_process, Pid, Resource, Rlimit, Signal,
};

use crate::config::{self, Checked, NodeConfig, DEFAULT_JSON};
use crate::controller::ControllerPlan;
use crate::server::WorkerPlan;

/// The parsed command line.
#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Switchyard, a WAMP router compatible with Crossbar.io's configuration"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands, named as Crossbar names them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the node (in the foreground).
    Start(StartArgs),
    /// Check a configuration: one line per problem, `path: reason`.
    Check(ConfigArgs),
    /// Write a starter node directory (`.crossbar/config.json`) and a web page.
    Init(InitArgs),
    /// Print the version.
    Version,
    /// Stop the node running from the node directory.
    Stop(NodeDirArgs),
    /// Tell whether a node runs from the node directory.
    Status(NodeDirArgs),
    /// One router worker process, started by the controller (not for direct use: its
    /// standard input must be the controller's control socket).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// The hidden `worker` subcommand's options, as the controller passes them.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Where the configuration comes from (the same as the controller's).
    #[command(flatten)]
    pub source: ConfigArgs,
    /// The most verbose level logged.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub loglevel: LogLevel,
    /// How log lines look.
    #[arg(long, value_enum, default_value_t = LogFormat::Standard)]
    pub logformat: LogFormat,
    /// This worker's index, from 0.
    #[arg(long)]
    pub index: u16,
    /// Workers in the node.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Threads (one shard each) per worker.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// The worker replaces one that died: its shards rejoin the running router.
    #[arg(long)]
    pub rejoin: bool,
    /// The node's epoch on the system-wide monotonic clock, in microseconds.
    #[arg(long, default_value_t = 0)]
    pub epoch_us: u64,
    /// Busy polling after activity, in microseconds; overrides the configuration.
    #[arg(long, value_name = "US")]
    pub busy_poll_us: Option<u32>,
}

/// Where the configuration comes from.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file (default: CBDIR/config.json, else the embedded default).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The node directory (default: $CROSSBAR_DIR, else ./.crossbar).
    #[arg(long, value_name = "DIR")]
    pub cbdir: Option<PathBuf>,
}

/// `start`'s options.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Where the configuration comes from.
    #[command(flatten)]
    pub source: ConfigArgs,
    /// The most verbose level logged.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub loglevel: LogLevel,
    /// How log lines look.
    #[arg(long, value_enum, default_value_t = LogFormat::Standard)]
    pub logformat: LogFormat,
    /// Threads (one shard each) per worker process; overrides the configuration.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub cores: Option<u16>,
    /// Router worker processes; overrides the configuration.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    /// Microseconds each core busy-polls after connection activity before it sleeps
    /// (0: off, the default); overrides the configuration's `options.busy_poll_us`.
    /// Lowers round-trip latency when the router has CPUs of its own; costs CPU time.
    #[arg(long, value_name = "US", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub busy_poll_us: Option<u32>,
}

/// `init`'s options.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The application directory to create or fill (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub appdir: PathBuf,
}

/// The node directory of `stop` and `status`.
#[derive(Debug, Args)]
pub struct NodeDirArgs {
    /// The node directory (default: $CROSSBAR_DIR, else ./.crossbar).
    #[arg(long, value_name = "DIR")]
    pub cbdir: Option<PathBuf>,
}

/// Log levels, as Crossbar spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Nothing.
    None,
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// For debugging the node.
    Debug,
    /// Everything.
    Trace,
}

/// Log line formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Standard,
    /// One JSON object per line.
    Json,
}

/// The pid file's name inside the node directory (Crossbar's).
pub const PID_FILE: &str = "node.pid";

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Start(args) => start(args),
        Command::Check(args) => check(&args),
        Command::Init(args) => init(&args.appdir),
        Command::Version => {
            println!("switchyard {}", env!("CARGO_PKG_VERSION"));
            println!("WAMP v2 router: WebSocket and RawSocket, JSON and MessagePack");
            ExitCode::SUCCESS
        }
        Command::Stop(args) => stop(&node_dir(args.cbdir.as_deref())),
        Command::Status(args) => status(&node_dir(args.cbdir.as_deref())),
        Command::Worker(args) => worker(&args),
    }
}

/// The node directory: the flag, else `$CROSSBAR_DIR`, else `./.crossbar` (Crossbar's rule).
fn node_dir(flag: Option<&Path>) -> PathBuf {
    match (flag, std::env::var_os("CROSSBAR_DIR")) {
        (Some(dir), _) => dir.to_owned(),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => PathBuf::from(".crossbar"),
    }
}

/// The directory relative TLS files and Unix socket paths are read from: the node
/// directory (Crossbar's rule), or with `--config FILE` alone the file's own directory.
fn paths_base(args: &ConfigArgs, file: &Path) -> PathBuf {
    if args.config.is_some() && args.cbdir.is_none() && std::env::var_os("CROSSBAR_DIR").is_none() {
        return file.parent().map(Path::to_owned).unwrap_or_default();
    }
    node_dir(args.cbdir.as_deref())
}

/// A configuration as found on disk (or embedded), checked.
struct Loaded {
    /// Where it came from, for messages.
    origin: String,
    /// The check's outcome.
    checked: Checked,
}

/// Finds and checks the configuration; `Err` is a one-line message (unreadable file).
fn load(args: &ConfigArgs) -> Result<Loaded, String> {
    let explicit = args.config.is_some();
    let file = match &args.config {
        Some(file) => file.clone(),
        None => node_dir(args.cbdir.as_deref()).join("config.json"),
    };
    match fs::read_to_string(&file) {
        Ok(text) => {
            let mut checked = config::check_str(&text);
            if let Some(node) = &mut checked.config {
                node.resolve_paths(&paths_base(args, &file));
            }
            Ok(Loaded {
                origin: file.display().to_string(),
                checked,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => Ok(Loaded {
            origin: "the embedded default configuration".to_owned(),
            checked: config::check_str(DEFAULT_JSON),
        }),
        Err(e) => Err(format!("cannot read {}: {e}", file.display())),
    }
}

fn check(args: &ConfigArgs) -> ExitCode {
    let loaded = match load(args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = io::stdout().lock();
    for problem in &loaded.checked.problems {
        // A closed stdout (a pager quit early) is not worth a panic.
        let _ = writeln!(out, "{problem}");
    }
    let errors = loaded.checked.errors().count();
    if errors == 0 {
        eprintln!("{}: ok", loaded.origin);
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{}: {errors} problem(s) refuse this configuration",
            loaded.origin
        );
        ExitCode::FAILURE
    }
}

fn start(args: StartArgs) -> ExitCode {
    init_logging(args.loglevel, args.logformat);
    let loaded = match load(&args.source) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(mut node) = loaded.checked.config.clone() else {
        // The same lines `check` prints, so the user sees one list whichever they ran.
        for problem in &loaded.checked.problems {
            eprintln!("{problem}");
        }
        eprintln!(
            "switchyard: {} refused ({} problem(s)); `switchyard check` lists the same",
            loaded.origin,
            loaded.checked.errors().count()
        );
        return ExitCode::FAILURE;
    };
    for warning in loaded.checked.warnings() {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        "switchyard {} starting with {}",
        env!("CARGO_PKG_VERSION"),
        loaded.origin
    );
    if let Some(cores) = args.cores {
        node.cores = Some(usize::from(cores));
    }
    if let Some(workers) = args.workers {
        node.workers = usize::from(workers);
    }
    if let Some(us) = args.busy_poll_us {
        node.busy_poll = Duration::from_micros(u64::from(us));
    }
    raise_nofile_limit();

    let dir = node_dir(args.source.cbdir.as_deref());
    let pid_file = match write_pid_file(&dir) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if node.workers > 1 {
        run_controller(&node, &args, &dir)
    } else {
        crate::server::run(node).map_err(|e| e.to_string())
    };
    // The pid file names this process only while it runs.
    let _ = fs::remove_file(&pid_file);
    match result {
        Ok(()) => {
            tracing::info!("switchyard stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the controller of `node.workers` worker processes, each started as
/// `switchyard worker` with this command's configuration source and log options.
fn run_controller(node: &NodeConfig, args: &StartArgs, dir: &Path) -> Result<(), String> {
    let workers = u16::try_from(node.workers).unwrap_or(u16::MAX);
    let threads = ControllerPlan::threads_for(workers, node.cores);
    let program =
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    let mut worker_args: Vec<std::ffi::OsString> = vec![
        "worker".into(),
        "--workers".into(),
        workers.to_string().into(),
        "--threads".into(),
        threads.to_string().into(),
        "--epoch-us".into(),
        crate::server::monotonic_us().to_string().into(),
        "--loglevel".into(),
        log_level_name(args.loglevel).into(),
        "--logformat".into(),
        match args.logformat {
            LogFormat::Standard => "standard",
            LogFormat::Json => "json",
        }
        .into(),
    ];
    if let Some(config) = &args.source.config {
        worker_args.push("--config".into());
        worker_args.push(config.clone().into_os_string());
    }
    if let Some(cbdir) = &args.source.cbdir {
        worker_args.push("--cbdir".into());
        worker_args.push(cbdir.clone().into_os_string());
    }
    if let Some(us) = args.busy_poll_us {
        worker_args.push("--busy-poll-us".into());
        worker_args.push(us.to_string().into());
    }
    let plan = ControllerPlan {
        workers,
        threads,
        program,
        args: worker_args,
        node_dir: Some(dir.to_owned()),
    };
    crate::controller::run(node, &plan).map_err(|e| e.to_string())
}

/// The hidden `worker` subcommand: one router worker process under the controller.
fn worker(args: &WorkerArgs) -> ExitCode {
    init_logging(args.loglevel, args.logformat);
    let node = match load_config(&args.source) {
        Ok(node) => node,
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            eprintln!("switchyard worker {}: configuration refused", args.index);
            return ExitCode::FAILURE;
        }
    };
    let mut node = node;
    if let Some(us) = args.busy_poll_us {
        node.busy_poll = Duration::from_micros(u64::from(us));
    }
    raise_nofile_limit();
    let plan = WorkerPlan {
        index: args.index,
        workers: args.workers,
        threads: args.threads,
        rejoin: args.rejoin,
        epoch_us: args.epoch_us,
    };
    match crate::server::run_worker(node, &plan) {
        Ok(()) => {
            tracing::info!(worker = args.index, "worker exiting");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(worker = args.index, "{e}");
            eprintln!("switchyard worker {}: {e}", args.index);
            ExitCode::FAILURE
        }
    }
}

fn log_level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::None => "none",
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

/// Sets up `tracing`: human-readable lines by default, JSON on request; `RUST_LOG`, when
/// set, refines the level per module.
fn init_logging(level: LogLevel, format: LogFormat) {
    use tracing_subscriber::EnvFilter;

    let level = match level {
        LogLevel::None => "off",
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_thread_names(true);
    // A second initialisation (only possible in tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Standard => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Raises the soft open-file limit to the hard limit: every connection is a descriptor,
/// and the default soft limit (1024) would cap the node far below what it can serve.
fn raise_nofile_limit() {
    let limit = getrlimit(Resource::Nofile);
    let new = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => tracing::info!(
            "open-file limit {} (was {})",
            fmt_limit(limit.maximum),
            fmt_limit(limit.current)
        ),
        Err(e) => tracing::warn!(
            "open-file limit stays {}: raising it failed: {e}",
            fmt_limit(limit.current)
        ),
    }
}

fn fmt_limit(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

/// Writes `DIR/node.pid`, creating the node directory if needed; refuses when the file
/// names a live process (a node already runs from this directory).
fn write_pid_file(dir: &Path) -> Result<PathBuf, String> {
    let file = dir.join(PID_FILE);
    if let Some(pid) = read_pid(&file) {
        if alive(pid) {
            return Err(format!(
                "a node already runs from {} (pid {})",
                dir.display(),
                pid.as_raw_nonzero()
            ));
        }
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    fs::write(&file, format!("{}\n", std::process::id()))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(file)
}

fn read_pid(file: &Path) -> Option<Pid> {
    let text = fs::read_to_string(file).ok()?;
    let raw: i32 = text.trim().parse().ok()?;
    Pid::from_raw(raw)
}

fn alive(pid: Pid) -> bool {
    test_kill_process(pid).is_ok()
}

fn status(dir: &Path) -> ExitCode {
    match read_pid(&dir.join(PID_FILE)) {
        Some(pid) if alive(pid) => {
            println!(
                "running (pid {}) from {}",
                pid.as_raw_nonzero(),
                dir.display()
            );
            // A node of worker processes: the controller lists them.
            if let Ok(text) = fs::read_to_string(dir.join(crate::controller::WORKERS_FILE)) {
                for line in text.lines() {
                    if let Some(described) = describe_worker(line) {
                        println!("{described}");
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Some(_) => {
            println!("stopped (stale pid file in {})", dir.display());
            ExitCode::from(2)
        }
        None => {
            println!("stopped (no node runs from {})", dir.display());
            ExitCode::from(2)
        }
    }
}

/// One line of the controller's workers file (`index pid state restarts`) as `status`
/// prints it; a worker listed as running whose pid is gone is reported dead (the
/// controller is about to restart it).
fn describe_worker(line: &str) -> Option<String> {
    let mut fields = line.split_whitespace();
    let index: u16 = fields.next()?.parse().ok()?;
    let pid: i32 = fields.next()?.parse().ok()?;
    let state = fields.next()?;
    let restarts: u32 = fields.next()?.parse().ok()?;
    let restarted = match restarts {
        0 => String::new(),
        1 => ", restarted once".to_owned(),
        n => format!(", restarted {n} times"),
    };
    Some(match (state, Pid::from_raw(pid)) {
        ("running", Some(pid)) if alive(pid) => {
            format!(
                "worker {index}: running (pid {}){restarted}",
                pid.as_raw_nonzero()
            )
        }
        ("running", Some(pid)) => {
            format!(
                "worker {index}: dead (pid {}){restarted}",
                pid.as_raw_nonzero()
            )
        }
        ("given-up", _) => format!("worker {index}: given up (not restarted){restarted}"),
        (other, _) => format!("worker {index}: {other}{restarted}"),
    })
}

/// How long `stop` waits for the node to finish its graceful shutdown.
const STOP_WAIT: Duration = Duration::from_secs(15);

fn stop(dir: &Path) -> ExitCode {
    let Some(pid) = read_pid(&dir.join(PID_FILE)).filter(|pid| alive(*pid)) else {
        eprintln!("switchyard: no node runs from {}", dir.display());
        return ExitCode::from(2);
    };
    if let Err(e) = kill_process(pid, Signal::TERM) {
        eprintln!(
            "switchyard: cannot signal pid {}: {e}",
            pid.as_raw_nonzero()
        );
        return ExitCode::FAILURE;
    }
    let deadline = Instant::now() + STOP_WAIT;
    while alive(pid) {
        if Instant::now() > deadline {
            eprintln!(
                "switchyard: pid {} still runs after {} s",
                pid.as_raw_nonzero(),
                STOP_WAIT.as_secs()
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("stopped (pid {})", pid.as_raw_nonzero());
    ExitCode::SUCCESS
}

/// The page `init` writes: it connects with Autobahn|JS from a local copy, and says how
/// to get one when there is none (no CDN, so the page works offline and leaks nothing).
const INDEX_HTML: &str = include_str!("config/init_index.html");

fn init(appdir: &Path) -> ExitCode {
    let cbdir = appdir.join(".crossbar");
    let config_file = cbdir.join("config.json");
    if config_file.exists() {
        eprintln!(
            "switchyard: {} exists; init leaves existing nodes alone",
            config_file.display()
        );
        return ExitCode::FAILURE;
    }
    let web = appdir.join("web");
    let result = fs::create_dir_all(&cbdir)
        .and_then(|()| fs::write(&config_file, DEFAULT_JSON))
        .and_then(|()| fs::create_dir_all(&web))
        .and_then(|()| {
            let index = web.join("index.html");
            if index.exists() {
                Ok(())
            } else {
                fs::write(index, INDEX_HTML)
            }
        });
    match result {
        Ok(()) => {
            println!("wrote {}", config_file.display());
            println!("wrote {}", web.join("index.html").display());
            println!(
                "start the node with `switchyard start --cbdir {}` and open web/index.html",
                cbdir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard: init in {} failed: {e}", appdir.display());
            ExitCode::FAILURE
        }
    }
}

/// The checked configuration `start` would run, for tests and tools.
pub fn load_config(args: &ConfigArgs) -> Result<NodeConfig, Vec<String>> {
    let loaded = load(args).map_err(|e| vec![e])?;
    match loaded.checked.config {
        Some(config) => Ok(config),
        None => Err(loaded
            .checked
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()),
    }
}
