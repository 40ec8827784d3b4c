//! The imipd command line.

use clap::{Parser, Subcommand};
use imipd::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "imipd",
    version,
    about = "Calendar scheduling gateway for mail systems (iMIP)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the daemon: LMTP/SMTP intake, HTTP API, outbound queue.
    Serve {
        /// The TOML configuration file (defaults apply to every key it leaves out).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Pipe hook for MTAs: hands the message on standard input to the running daemon.
    /// Exits 0 (delivered), 67 (unknown user), 65 (refused), 75 (try later).
    Deliver {
        /// The configuration file of the running daemon (for its LMTP address).
        #[arg(long)]
        config: Option<PathBuf>,
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
        /// The configuration file of the running daemon (HTTP address and admin token).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The message (an .eml file).
        message: PathBuf,
        /// Recipient (repeat for several).
        #[arg(long = "to", required = true)]
        to: Vec<String>,
    },
    /// Validates a configuration file without starting anything.
    CheckConfig {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Reads a password on standard input and prints its argon2 hash for `password_hash`.
    HashPassword,
    /// Runs scenario files against the scheduling engine, in-process.
    Conformance {
        /// Rewrite each file with the actual results as expectations (for authoring; read
        /// the result before keeping it).
        #[arg(long)]
        bless: bool,
        /// Scenario files (the language of conformance/FORMAT.md).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Deliver { config, from, to } => deliver(config, &from, &to),
        Command::CheckConfig { config } => match Config::load(Some(&config)) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::FAILURE
            }
        },
        Command::HashPassword => hash_password(),
        Command::Explain {
            config,
            message,
            to,
        } => explain(config, &message, &to),
        Command::Conformance {
            files,
            bless: false,
        } => conformance(&files),
        Command::Conformance { files, bless: true } => bless(&files),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "imipd: {}: {e}",
                path.map(|p| p.display().to_string())
                    .unwrap_or_else(|| "configuration".into())
            );
            return ExitCode::from(78);
        }
    };
    init_logging(&config);
    match runtime().block_on(imipd::daemon::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot run");
            eprintln!("imipd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn deliver(path: Option<PathBuf>, from: &str, to: &[String]) -> ExitCode {
    use imipd::inbound::pipe;
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imipd deliver: {e}");
            return ExitCode::from(pipe::exit::TEMPFAIL);
        }
    };
    let Some(target) = config.listeners().ok().and_then(|l| l.lmtp) else {
        eprintln!("imipd deliver: lmtp.listen is off; the pipe hook delivers through it");
        return ExitCode::from(pipe::exit::TEMPFAIL);
    };
    let mut message = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut message) {
        eprintln!("imipd deliver: reading the message: {e}");
        return ExitCode::from(pipe::exit::TEMPFAIL);
    }
    match runtime().block_on(pipe::submit(target, from, to, &message)) {
        Ok(outcomes) => {
            for o in &outcomes {
                eprintln!("{}: {}", o.recipient, o.reply);
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
    let mut password = String::new();
    if std::io::stdin().read_line(&mut password).is_err()
        || password.trim_end_matches(['\r', '\n']).is_empty()
    {
        eprintln!("imipd hash-password: give the password on standard input");
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

fn explain(path: Option<PathBuf>, message: &std::path::Path, to: &[String]) -> ExitCode {
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imipd explain: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(target) = config.listeners().ok().and_then(|l| l.http) else {
        eprintln!("imipd explain: http.listen is off; explain asks the daemon over HTTP");
        return ExitCode::FAILURE;
    };
    let body = match std::fs::read(message) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("imipd explain: {}: {e}", message.display());
            return ExitCode::FAILURE;
        }
    };
    let encode = |value: &str| -> String {
        value
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    let query: Vec<String> = to.iter().map(|t| format!("to={}", encode(t))).collect();
    let request = format!(
        "POST /explain?{} HTTP/1.1\r\nHost: imipd\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        query.join("&"),
        config.http.admin_token,
        body.len()
    );
    let response = (|| -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(target)?;
        stream.write_all(request.as_bytes())?;
        stream.write_all(&body)?;
        let mut out = String::new();
        stream.read_to_string(&mut out)?;
        Ok(out)
    })();
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imipd explain: daemon at {target} unreachable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (head, json) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.starts_with("HTTP/1.1 200") {
        eprintln!(
            "imipd explain: {}: {}",
            head.lines().next().unwrap_or(""),
            json.trim()
        );
        return ExitCode::FAILURE;
    }
    let Ok(recipients) = serde_json::from_str::<Vec<imipd::inbound::Explanation>>(json) else {
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
            "  sender (From, then Sender): {}",
            or(&recipient.senders, "none")
        );
        for part in recipient.parts {
            println!("  {} {}", part.method, part.uid);
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
