//! The imipd command line.

use clap::{Parser, Subcommand};
use imipd::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// jemalloc rather than glibc's malloc: with a thread per core and a blocking pool, glibc keeps
/// freed memory in per-thread arenas, and a daemon that parses mail all day held about twice the
/// memory it uses (BENCHMARKS.md, resident memory). jemalloc hands unused pages back within a
/// second from a background thread, and allocates faster.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts (`_RJEM_MALLOC_CONF` in the environment still
/// overrides them).
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static _rjem_malloc_conf: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[derive(Parser)]
#[command(
    name = "imipd",
    version,
    about = "Calendar scheduling gateway for mail systems (iMIP)"
)]
struct Cli {
    /// The TOML configuration file (defaults apply to every key it leaves out), before or
    /// after the command. [default: /etc/imipd/imipd.toml]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the daemon: LMTP/SMTP intake, HTTP API, outbound queue.
    Serve {
        /// Runs on the built-in defaults when there is no configuration file (a scratch
        /// demo: a store in ./data, outbound mail as files in ./spool). Without it, `serve`
        /// refuses to start without a file: a store found in the working folder would
        /// otherwise send its queue wherever the defaults say.
        #[arg(long)]
        defaults: bool,
    },
    /// Pipe hook for MTAs: hands the message on standard input to the running daemon.
    /// Exits 0 (delivered), 67 (unknown user), 65 (refused), 75 (try later).
    Deliver {
        /// Envelope sender.
        #[arg(long, default_value = "")]
        from: String,
        /// Envelope recipient (repeat for several).
        #[arg(long = "to", required = true)]
        to: Vec<String>,
    },
    /// Asks the running daemon what a message would do, committing nothing: for each
    /// recipient and calendar part, the method, the verdict and why, the stored object it
    /// matches, the change and the messages it would send.
    Explain {
        /// The message (an .eml file).
        message: PathBuf,
        /// Recipient (repeat for several).
        #[arg(long = "to", required = true)]
        to: Vec<String>,
    },
    /// The outbound queue of the running daemon: list, show, retry now, or drop (status 5.1).
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Writes a backup into a new folder DIR: every account's objects as `.ics` files
    /// (objects/ACCOUNT/UID.ics) and the outbound queue as queue.json. Through the running
    /// daemon (a snapshot between two commits), or from the store when no daemon runs.
    Export {
        /// The folder to create.
        dir: PathBuf,
    },
    /// Reads a backup folder into the store: objects the store lacks, or has in an older
    /// version, are written; newer copies stay; queued messages are queued again unless they
    /// already are. Through the running daemon, or into the store when no daemon runs.
    Import {
        /// The backup folder.
        dir: PathBuf,
    },
    /// Sends realistic iMIP load to any LMTP or SMTP server and prints one JSON line of figures:
    /// invitations from outside organizers to userN@DOMAIN, then updates and cancellations of them.
    Bench(BenchArgs),
    /// Creates or upgrades the schema of the PostgreSQL store (`store.url`); `serve` does it
    /// too. With sled, checks that the store in `server.data_dir` opens.
    Migrate,
    /// Gives back the space a sled store keeps beyond its data (one an earlier imipd loaded
    /// in a burst, or one much of whose mail has expired): copies it into a fresh database at
    /// a pace and puts the copy in its place. Stop the daemon first. The store is as it was
    /// if the copy fails; a swap cut short is finished by the next start. (PostgreSQL's
    /// VACUUM does this there.)
    Compact {
        /// Megabytes of keys and values copied a second (16: about a minute a gigabyte of
        /// data), to spare a disk the mail system shares.
        #[arg(long, default_value = "16", value_parser = pace_of)]
        pace: imipd::store::Pace,
    },
    /// Validates a configuration file without starting anything: every problem of it at
    /// once, and warnings.
    CheckConfig,
    /// Asks for a password (without echo on a terminal; otherwise the first line of standard
    /// input) and prints its argon2 hash for `password_hash`.
    HashPassword,
    /// Runs scenario files against the scheduling engine, in-process.
    Conformance {
        /// Rewrite each file with the actual results as expectations (for authoring; read
        /// the result before keeping it).
        #[arg(long)]
        bless: bool,
        /// Scenario files (the language README's Scenarios section describes; the project's
        /// own are in tests/scenarios/).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// What `imipd queue` does.
#[derive(Subcommand)]
enum QueueAction {
    /// Every queued message: id, method, UID, recipient, attempts, last error.
    List,
    /// One queued message with its iTIP object.
    Show {
        /// The queue id (hex, as `list` shows it).
        id: String,
    },
    /// Try the message now, whatever its backoff says.
    Retry {
        /// The queue id.
        id: String,
    },
    /// Give up on the message: SCHEDULE-STATUS 5.1 in the sender's copy.
    Drop {
        /// The queue id.
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command {
        Command::Serve { defaults } => serve(config, defaults),
        Command::Deliver { from, to } => deliver(config, &from, &to),
        Command::CheckConfig => check_config(config),
        Command::Migrate => migrate(config),
        Command::Compact { pace } => compact(config, pace),
        Command::HashPassword => hash_password(),
        Command::Bench(args) => bench(args),
        Command::Explain { message, to } => explain(config, &message, &to),
        Command::Queue { action } => queue(config, &action),
        Command::Export { dir } => export(config, &dir),
        Command::Import { dir } => import(config, &dir),
        Command::Conformance {
            files,
            bless: false,
        } => conformance(&files),
        Command::Conformance { files, bless: true } => bless(&files),
    }
}

/// Where `serve` and the other commands look when `--config` is not given.
const DEFAULT_CONFIG: &str = "/etc/imipd/imipd.toml";

/// `--config`, or the default file when it exists.
fn config_path(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()))
}

/// Prints every problem of a configuration on a line of its own, after the file's name.
fn print_problems(file: Option<&std::path::Path>, error: &imipd::config::ConfigError) {
    let file = file
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "configuration".into());
    for line in error.to_string().lines() {
        eprintln!("{file}: {line}");
    }
}

fn check_config(path: Option<PathBuf>) -> ExitCode {
    let Some(path) = config_path(path) else {
        eprintln!(
            "imipd check-config: no configuration: give --config FILE ({DEFAULT_CONFIG} does not exist)"
        );
        return ExitCode::from(78);
    };
    match Config::load(Some(&path)) {
        Ok(config) => {
            for warning in config.warnings(Some(&path)) {
                eprintln!("{}: warning: {warning}", path.display());
            }
            if let Some(target) = &config.inbound.forward
                && let Err(why) = runtime().block_on(imipd::inbound::pipe::probe(target))
            {
                eprintln!(
                    "{}: warning: inbound.forward: nothing answers at {target} ({why}): mail \
                     for its recipients would be deferred until it does",
                    path.display()
                );
            }
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_problems(Some(&path), &e);
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn serve(path: Option<PathBuf>, defaults: bool) -> ExitCode {
    let path = config_path(path);
    if path.is_none() && !defaults {
        eprintln!(
            "imipd serve: no configuration: give --config FILE, or create {DEFAULT_CONFIG}; \
             `imipd serve --defaults` runs a scratch daemon on the built-in defaults (a store in \
             ./data, outbound mail as files in ./spool)"
        );
        return ExitCode::from(78);
    }
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            print_problems(path.as_deref(), &e);
            return ExitCode::from(78);
        }
    };
    let log_level = init_logging(&config);
    for warning in config.warnings(path.as_deref()) {
        tracing::warn!("{warning}");
    }
    let reload = imipd::daemon::Reload {
        path,
        log_level: Some(log_level),
    };
    match runtime().block_on(imipd::daemon::serve(config, reload)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot run");
            eprintln!("imipd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts logging to standard error; returns how to change the level later (SIGHUP). A level
/// in `RUST_LOG` wins over `log.level`, then and at every reload.
fn init_logging(config: &Config) -> imipd::daemon::SetLogLevel {
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt, reload};
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = EnvFilter::new(from_env.as_deref().unwrap_or(&config.log.level));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    let output = if config.log.format == "json" {
        output.json().boxed()
    } else {
        output.boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .init();
    Box::new(move |level: &str| {
        if from_env.is_some() {
            return Ok(());
        }
        handle
            .reload(EnvFilter::new(level))
            .map_err(|e| e.to_string())
    })
}

fn deliver(path: Option<PathBuf>, from: &str, to: &[String]) -> ExitCode {
    use imipd::inbound::pipe;
    let path = config_path(path);
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imipd deliver: {e}");
            return ExitCode::from(pipe::exit::TEMPFAIL);
        }
    };
    let Some(target) = config.lmtp.listen else {
        eprintln!("imipd deliver: lmtp.listen is off; the pipe hook delivers through it");
        return ExitCode::from(pipe::exit::TEMPFAIL);
    };
    // The MTA's arguments become SMTP commands: mailboxes only.
    use imipd::mailbox::Mailbox;
    let from = match from {
        "" => None,
        from => match Mailbox::parse(from) {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("imipd deliver: --from {from:?} is no mailbox: {e}");
                return ExitCode::from(pipe::exit::USAGE);
            }
        },
    };
    let mut recipients = Vec::new();
    for address in to {
        match Mailbox::parse(address) {
            Ok(m) => recipients.push(m),
            Err(e) => {
                eprintln!("imipd deliver: --to {address:?} is no mailbox: {e}");
                return ExitCode::from(pipe::exit::USAGE);
            }
        }
    }
    let mut message = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut message) {
        eprintln!("imipd deliver: reading the message: {e}");
        return ExitCode::from(pipe::exit::TEMPFAIL);
    }
    let message = pipe::crlf(&message);
    let submitted = pipe::submit(&target, from.as_ref(), &recipients, b"", &message);
    match runtime().block_on(submitted) {
        Ok(outcomes) => {
            for o in &outcomes {
                eprintln!("{}: {}", o.recipient, o.line());
            }
            ExitCode::from(pipe::exit_code(&outcomes))
        }
        Err(e) => {
            eprintln!("imipd deliver: daemon at {target} unreachable: {e}");
            ExitCode::from(pipe::exit::TEMPFAIL)
        }
    }
}

fn hash_password() -> ExitCode {
    use argon2::PasswordHasher;
    use argon2::password_hash::{SaltString, rand_core::OsRng};
    // On a terminal the password is asked for without echo, twice; otherwise it is the first
    // line of standard input (scripts, `echo secret | imipd hash-password`).
    let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let first = rpassword::prompt_password("Password: ");
        let again = rpassword::prompt_password("Again: ");
        match (first, again) {
            (Ok(a), Ok(b)) if a == b => a,
            (Ok(_), Ok(_)) => {
                eprintln!("imipd hash-password: the two passwords differ");
                return ExitCode::FAILURE;
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("imipd hash-password: reading the password: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().read_line(&mut line) {
            eprintln!("imipd hash-password: reading standard input: {e}");
            return ExitCode::FAILURE;
        }
        line
    };
    if password.trim_end_matches(['\r', '\n']).is_empty() {
        eprintln!("imipd hash-password: the password is empty");
        return ExitCode::FAILURE;
    }
    let salt = SaltString::generate(&mut OsRng);
    match argon2::Argon2::default()
        .hash_password(password.trim_end_matches(['\r', '\n']).as_bytes(), &salt)
    {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imipd hash-password: {e}");
            ExitCode::FAILURE
        }
    }
}

fn conformance(files: &[PathBuf]) -> ExitCode {
    let mut report = imipd::conformance::Report::default();
    for path in files {
        match std::fs::read_to_string(path) {
            Ok(text) => report.merge(imipd::conformance::run(&path.display().to_string(), &text)),
            Err(e) => {
                eprintln!("imipd: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    for failure in &report.failures {
        println!("{failure}");
    }
    println!("{}", report.totals());
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn bless(files: &[PathBuf]) -> ExitCode {
    for path in files {
        let written = std::fs::read_to_string(path)
            .and_then(|text| std::fs::write(path, imipd::conformance::bless(&text)));
        if let Err(e) = written {
            eprintln!("imipd: cannot bless {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// Why the running daemon could not be asked.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    /// Nothing answers: no daemon runs, or it listens for no HTTP.
    #[error("{0}")]
    NoDaemon(String),
    /// It could not be asked, or its answer not be read.
    #[error("{0}")]
    Failed(String),
}

/// One request to the running daemon's HTTP API with the admin token; status and body.
fn admin_request(
    config: &Config,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), AdminError> {
    let failed = |e: &dyn std::fmt::Display| AdminError::Failed(e.to_string());
    let (url, agent) = admin_agent(config, path, query, Some(Duration::from_secs(60)))?;
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url.as_str())
        .header(
            "Authorization",
            format!("Bearer {}", config.http.admin_token),
        )
        .body(body.to_vec())
        .map_err(|e| failed(&e))?;
    let mut response = agent.run(request).map_err(|e| unreached(config, e))?;
    let status = response.status().as_u16();
    no_token(config, status)?;
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| AdminError::Failed(format!("daemon: {e}")))?;
    Ok((status, text))
}

/// A daemon that wants credentials from a command whose configuration has no admin token: it
/// was given another file than the daemon's.
fn no_token(config: &Config, status: u16) -> Result<(), AdminError> {
    match status == 401 && config.http.admin_token.is_empty() {
        true => Err(AdminError::Failed(
            "http.admin_token is not set in this configuration, and the daemon wants it: give \
             --config the daemon's file"
                .into(),
        )),
        false => Ok(()),
    }
}

/// The URL of an admin request and an agent for it, with a timeout for the whole call or
/// (none) for the daemon's answer to start.
fn admin_agent(
    config: &Config,
    path: &str,
    query: &[(&str, &str)],
    whole: Option<Duration>,
) -> Result<(url::Url, ureq::Agent), AdminError> {
    let failed = |e: &dyn std::fmt::Display| AdminError::Failed(e.to_string());
    let target = config.http.listen.ok_or_else(|| {
        AdminError::NoDaemon("http.listen is off; this asks the daemon over HTTP".into())
    })?;

    // Over HTTPS the daemon's certificate names its public host, not the address of its
    // listener: it is not checked, which keeps the admin token safe only on this host.
    let scheme = match config.http.tls {
        None => "http",
        Some(_) if target.ip().is_loopback() => "https",
        Some(_) => {
            return Err(AdminError::Failed(format!(
                "http.listen {target} serves HTTPS beyond this host: the admin commands need a \
                 loopback listener (put imipd behind a reverse proxy, README TLS)"
            )));
        }
    };
    let mut url = url::Url::parse(&format!("{scheme}://{target}{path}")).map_err(|e| failed(&e))?;
    url.query_pairs_mut().extend_pairs(query);
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(scheme == "https")
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(whole)
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .tls_config(tls)
        .build()
        .into();
    Ok((url, agent))
}

/// A failed admin request: no daemon listening, or another failure.
fn unreached(config: &Config, e: ureq::Error) -> AdminError {
    let target = config
        .http
        .listen
        .map_or_else(String::new, |t| t.to_string());
    let said = format!("daemon at {target}: {e}");
    let refused = match &e {
        ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    };
    match refused {
        true => AdminError::NoDaemon(said),
        false => AdminError::Failed(said),
    }
}

/// A GET to the running daemon with the admin token whose answer is read as it comes (no
/// size limit, no overall timeout: a backup of any size): `read` gets its status and body.
fn admin_stream<T>(
    config: &Config,
    path: &str,
    read: impl FnOnce(u16, &mut dyn std::io::Read) -> Result<T, AdminError>,
) -> Result<T, AdminError> {
    let (url, agent) = admin_agent(config, path, &[], None)?;
    let request = ureq::http::Request::builder()
        .method("GET")
        .uri(url.as_str())
        .header(
            "Authorization",
            format!("Bearer {}", config.http.admin_token),
        )
        .body(Vec::new())
        .map_err(|e| AdminError::Failed(e.to_string()))?;
    let mut response = agent.run(request).map_err(|e| unreached(config, e))?;
    let status = response.status().as_u16();
    no_token(config, status)?;
    read(status, &mut response.body_mut().as_reader())
}

fn load_or_exit(path: Option<&std::path::Path>, command: &str) -> Result<Config, ExitCode> {
    let path = config_path(path.map(PathBuf::from));
    Config::load(path.as_deref()).map_err(|e| {
        eprintln!("imipd {command}: {e}");
        ExitCode::FAILURE
    })
}

fn migrate(path: Option<PathBuf>) -> ExitCode {
    let config = match load_or_exit(path.as_deref(), "migrate") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let place = imipd::gateway::store_place(&config);
    let done = match &config.store.url {
        Some(url) => imipd::store::PgStore::migrate(url).map(|m| match m {
            imipd::store::Migration::Created => "schema created".to_string(),
            imipd::store::Migration::Current => "schema up to date".to_string(),
            imipd::store::Migration::Upgraded(from) => format!("schema upgraded from imipd-{from}"),
        }),
        // sled upgrades its format when it opens.
        None => {
            imipd::store::SledStore::open_with(&config.server.data_dir, config.store.cache_size)
                .map(|_| "store up to date".to_string())
        }
    };
    match done {
        Ok(what) => {
            println!("{place}: {what}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imipd migrate: {place}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--pace`: megabytes a second, as fast as `Pace` can keep to or slower.
fn pace_of(text: &str) -> Result<imipd::store::Pace, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|megabytes| imipd::store::Pace::per_second(megabytes * 1e6))
        .ok_or_else(|| {
            format!(
                "{text:?} is no pace: give megabytes a second, at least {}",
                imipd::store::Pace::SLOWEST / 1e6
            )
        })
}

fn compact(path: Option<PathBuf>, pace: imipd::store::Pace) -> ExitCode {
    let config = match load_or_exit(path.as_deref(), "compact") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let place = imipd::gateway::store_place(&config);
    if config.store.url.is_some() {
        eprintln!("imipd compact: {place}: the store is PostgreSQL, whose VACUUM gives space back");
        return ExitCode::FAILURE;
    }
    let megabytes = |bytes: u64| bytes as f64 / 1e6;
    let started = std::time::Instant::now();
    let done = imipd::store::SledStore::compact(
        &config.server.data_dir,
        config.store.cache_size,
        pace,
        |copied| {
            eprintln!(
                "copied {:.1} MB ({} keys)",
                megabytes(copied.bytes),
                copied.keys
            )
        },
    );
    match done {
        Ok(done) => {
            println!(
                "{place}: {:.1} MB before, {:.1} MB after ({} keys, {:.1} MB of keys and values) in {:.0} s",
                megabytes(done.before),
                megabytes(done.after),
                done.keys,
                megabytes(done.bytes),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imipd compact: {place}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn explain(path: Option<PathBuf>, message: &std::path::Path, to: &[String]) -> ExitCode {
    let config = match load_or_exit(path.as_deref(), "explain") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let body = match std::fs::read(message) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("imipd explain: {}: {e}", message.display());
            return ExitCode::FAILURE;
        }
    };
    let query: Vec<(&str, &str)> = to.iter().map(|t| ("to", t.as_str())).collect();
    let json = match admin_request(&config, "POST", "/explain", &query, &body) {
        Ok((200, json)) => json,
        Ok((status, text)) => {
            eprintln!("imipd explain: {status}: {}", text.trim());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("imipd explain: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(recipients) = serde_json::from_str::<Vec<imipd::inbound::apply::Explanation>>(&json)
    else {
        eprintln!("imipd explain: unexpected answer: {json}");
        return ExitCode::FAILURE;
    };
    let or = |list: &[String], none: &str| {
        if list.is_empty() {
            none.to_string()
        } else {
            list.join(", ")
        }
    };
    for recipient in recipients {
        println!("{}: {}", recipient.recipient, recipient.reply);
        println!(
            "  sender (From; Sender is not believed): {}",
            recipient.author.as_deref().unwrap_or("none")
        );
        for part in recipient.parts {
            println!("  part {}: {} {}", part.index, part.method, part.uid);
            println!("    decision: {}", part.verdict);
            println!(
                "    matches:  {}",
                part.matches.as_deref().unwrap_or("no stored copy")
            );
            println!("    change:   {}", part.change);
            println!("    sends:    {}", or(&part.sends, "nothing"));
        }
    }
    ExitCode::SUCCESS
}

/// The load generator's arguments.
#[derive(clap::Args)]
struct BenchArgs {
    /// `lmtp://HOST:PORT` or `smtp://HOST:PORT`; repeat for several hosts (the connections
    /// are spread over them).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Every message updates one of only N objects shared by all connections.
    #[arg(long)]
    objects: Option<usize>,
    /// Messages in the run.
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Messages a second over the whole run (spread over the connections); without it, as
    /// fast as the server answers.
    #[arg(long)]
    rate: Option<f64>,
    /// Local accounts user1@DOMAIN to userN@DOMAIN.
    #[arg(long, default_value_t = 100)]
    accounts: usize,
    /// The accounts' domain.
    #[arg(long, default_value = "example.com")]
    domain: String,
    /// Writes `UID KIND ACCOUNT REPLY` per message to this file.
    #[arg(long)]
    log: Option<PathBuf>,
}

fn bench(args: BenchArgs) -> ExitCode {
    use imipd::loadgen;
    use std::io::IsTerminal;
    let targets = args.targets.iter().map(|t| t.parse::<loadgen::Target>());
    let targets = match targets.collect::<Result<Vec<_>, _>>() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("imipd bench: {e}");
            return ExitCode::from(2);
        }
    };
    let options = loadgen::Options {
        targets,
        objects: args.objects,
        messages: args.messages,
        connections: args.connections,
        rate: args.rate,
        accounts: args.accounts,
        domain: args.domain,
        log: args.log,
        progress: std::io::stderr().is_terminal(),
    };
    match runtime().block_on(loadgen::run(options)) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            // Refusals are figures, not failures; only a run where nothing got through fails.
            if report.messages_per_sec > 0.0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("imipd bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs `work` on the store itself when no daemon holds it: the daemon's HTTP API was not
/// reachable.
fn offline<T>(
    config: &Config,
    work: impl AsyncFnOnce(&imipd::gateway::Gateway) -> Result<T, String>,
) -> Result<T, String> {
    let store = imipd::gateway::open_store(config).map_err(|e| {
        format!(
            "no daemon answered over HTTP, and the store in {} cannot be opened ({e}); if a daemon \
             runs with http.listen off, turn it on or stop the daemon",
            imipd::gateway::store_place(config)
        )
    })?;
    runtime().block_on(async {
        let gateway = imipd::gateway::Gateway::new(config.clone(), store);
        let result = work(&gateway).await;
        gateway.flush().await.map_err(|e| e.to_string())?;
        result
    })
}

fn export(path: Option<PathBuf>, dir: &std::path::Path) -> ExitCode {
    let config = match load_or_exit(path.as_deref(), "export") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let written = match export_online(&config, dir) {
        Err(AdminError::NoDaemon(_)) => offline(&config, async |gateway| {
            let snapshot = imipd::backup::take(gateway)
                .await
                .map_err(|e| e.to_string())?;
            imipd::backup::write_dir(&snapshot, dir).map_err(|e| e.to_string())
        }),
        other => other.map_err(|e| e.to_string()),
    };
    match written {
        Ok(written) => {
            println!(
                "{}: {} objects, {} queued messages, {} further calendars (besides each account's default one)",
                dir.display(),
                written.objects,
                written.queued,
                written.further_calendars
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imipd export: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Streams the running daemon's snapshot into the folder, a record at a time: a snapshot of
/// any size, never whole in memory here.
fn export_online(
    config: &Config,
    dir: &std::path::Path,
) -> Result<imipd::backup::Written, AdminError> {
    use std::io::BufRead;
    let failed = |e: &dyn std::fmt::Display| AdminError::Failed(e.to_string());
    admin_stream(config, "/backup", |status, body| {
        if status != 200 {
            let mut said = String::new();
            std::io::Read::read_to_string(&mut std::io::Read::take(body, 64 * 1024), &mut said)
                .map_err(|e| failed(&e))?;
            return Err(AdminError::Failed(format!("{status}: {}", said.trim())));
        }
        let mut folder = imipd::backup::FolderWriter::create(dir).map_err(|e| failed(&e))?;
        for line in std::io::BufReader::new(body).lines() {
            let line = line.map_err(|e| failed(&e))?;
            if line.trim().is_empty() {
                continue;
            }
            let record = serde_json::from_str(&line)
                .map_err(|e| AdminError::Failed(format!("unexpected answer: {e}")))?;
            folder.add(record).map_err(|e| failed(&e))?;
        }
        folder.finish().map_err(|e| failed(&e))
    })
}

fn import(path: Option<PathBuf>, dir: &std::path::Path) -> ExitCode {
    let config = match load_or_exit(path.as_deref(), "import") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let snapshot = match imipd::backup::read_dir(dir) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            eprintln!("imipd import: {e}");
            return ExitCode::FAILURE;
        }
    };
    let restored = match import_online(&config, &snapshot) {
        Err(AdminError::NoDaemon(_)) => offline(&config, async |gateway| {
            let restored = imipd::backup::restore(gateway, &snapshot)
                .await
                .map_err(|e| e.to_string())?;
            let accounts = snapshot.objects.iter().map(|o| o.account.as_str());
            let refreshing = imipd::http::dav::Refreshing::default();
            // What is not filed now is filed by the first query: the import stands either way.
            if let Err(e) =
                imipd::http::dav::file_at_once(gateway.store.as_ref(), accounts, &refreshing)
            {
                eprintln!(
                    "imipd import: warning: the objects are left to the first query to file: {e}"
                );
            }
            Ok(restored)
        }),
        other => other.map_err(|e| e.to_string()),
    };
    match restored {
        Ok(r) => {
            println!(
                "{}: {} objects written, {} kept (the same or newer here), {} messages queued, {} already queued, {} calendars made or completed",
                dir.display(),
                r.written,
                r.kept,
                r.queued,
                r.already_queued,
                r.calendars
            );
            for account in &r.unknown_accounts {
                eprintln!(
                    "imipd import: warning: {account} is no account here: its objects were \
                     written, and nobody reaches them until [accounts.\"{account}\"] is added"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imipd import: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends a backup to the running daemon in pieces under its body limit.
fn import_online(
    config: &Config,
    snapshot: &imipd::backup::Snapshot,
) -> Result<imipd::backup::Restored, AdminError> {
    use imipd::backup::{Restored, Snapshot};
    let failed = |e: &dyn std::fmt::Display| AdminError::Failed(e.to_string());
    let room = config.limits.max_object_size;
    // The calendars first, so that the objects' pieces find them.
    let calendars = pieces(&snapshot.calendars, room)
        .into_iter()
        .map(|calendars| Snapshot {
            format: snapshot.format,
            calendars,
            ..Default::default()
        });
    let objects = pieces(&snapshot.objects, room)
        .into_iter()
        .map(|objects| Snapshot {
            format: snapshot.format,
            objects,
            ..Default::default()
        });
    let queue = pieces(&snapshot.queue, room)
        .into_iter()
        .map(|queue| Snapshot {
            format: snapshot.format,
            queue,
            ..Default::default()
        });
    let mut total = Restored::default();
    for piece in calendars.chain(objects).chain(queue) {
        let body = serde_json::to_vec(&piece).map_err(|e| failed(&e))?;
        let answer = match admin_request(config, "POST", "/backup", &[], &body)? {
            (200, json) => serde_json::from_str::<Restored>(&json).map_err(|e| failed(&e))?,
            (status, text) => return Err(AdminError::Failed(format!("{status}: {}", text.trim()))),
        };
        total.written += answer.written;
        total.kept += answer.kept;
        total.queued += answer.queued;
        total.already_queued += answer.already_queued;
        total.calendars += answer.calendars;
        for account in answer.unknown_accounts {
            if !total.unknown_accounts.contains(&account) {
                total.unknown_accounts.push(account);
            }
        }
    }
    Ok(total)
}

/// Items in groups of at most `room` bytes of JSON each (an item larger alone is a group).
fn pieces<T: serde::Serialize + Clone>(items: &[T], room: usize) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    let mut size = 0;
    for item in items {
        let weight = serde_json::to_string(item).map(|j| j.len()).unwrap_or(0);
        match groups.last_mut() {
            Some(group) if size + weight <= room => group.push(item.clone()),
            _ => {
                groups.push(vec![item.clone()]);
                size = 0;
            }
        }
        size += weight;
    }
    groups
}

fn queue(path: Option<PathBuf>, action: &QueueAction) -> ExitCode {
    let config = match load_or_exit(path.as_deref(), "queue") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (method, route) = match action {
        QueueAction::List => ("GET", "/queue".to_string()),
        QueueAction::Show { id } => ("GET", format!("/queue/{id}")),
        QueueAction::Retry { id } => ("POST", format!("/queue/{id}/retry")),
        QueueAction::Drop { id } => ("DELETE", format!("/queue/{id}")),
    };
    let (status, body) = match admin_request(&config, method, &route, &[], b"") {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("imipd queue: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !(200..300).contains(&status) {
        eprintln!("imipd queue: {status}: {}", body.trim());
        return ExitCode::FAILURE;
    }
    match action {
        QueueAction::List => {
            let Ok(entries) = serde_json::from_str::<Vec<imipd::http::QueueEntry>>(&body) else {
                eprintln!("imipd queue: unexpected answer: {body}");
                return ExitCode::FAILURE;
            };
            for e in &entries {
                println!(
                    "{} {} {} to {} attempts={} next={} last_error={}",
                    e.id,
                    e.method,
                    e.uid,
                    e.to.join(","),
                    e.attempts,
                    when(e.next_attempt),
                    e.last_error.as_deref().unwrap_or("none")
                );
            }
            println!("{} queued", entries.len());
        }
        QueueAction::Show { .. } => match serde_json::from_str::<imipd::http::QueueEntry>(&body) {
            Ok(entry) => print!("{}", shown(&entry)),
            Err(_) => println!("{}", body.trim()),
        },
        _ if !body.trim().is_empty() => println!("{}", body.trim()),
        _ => {}
    }
    ExitCode::SUCCESS
}

/// An instant of the queue as people read it: now, or a UTC time.
fn when(at: i64) -> String {
    match at {
        0 => "now".into(),
        at => imipd::trace::instant(at),
    }
}

/// One queued message for people: a field a line, then its iTIP object.
fn shown(e: &imipd::http::QueueEntry) -> String {
    let rows = [
        ("id", e.id.clone()),
        ("account", e.account.clone()),
        ("method", e.method.clone()),
        ("uid", e.uid.clone()),
        ("from", e.from.clone()),
        ("to", e.to.join(", ")),
        ("queued", imipd::trace::instant(e.queued_at)),
        ("attempts", e.attempts.to_string()),
        ("next attempt", when(e.next_attempt)),
        (
            "transport",
            e.via.clone().unwrap_or_else(|| "as configured".into()),
        ),
        (
            "last error",
            e.last_error.clone().unwrap_or_else(|| "none".into()),
        ),
    ];
    let mut out: String = rows
        .iter()
        .map(|(name, value)| format!("{name:<13}{value}\n"))
        .collect();
    if let Some(calendar) = &e.calendar {
        out.push('\n');
        out.push_str(&calendar.replace("\r\n", "\n"));
    }
    out
}
