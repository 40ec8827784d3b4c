//! The imipd command line.

use clap::{Parser, Subcommand};
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
    /// Runs scenario files against the scheduling engine, in-process.
    Conformance {
        /// Rewrite each file with the actual results as expectations (for authoring; read
        /// the result before keeping it).
        #[arg(long)]
        bless: bool,
        /// Scenario files (the language of conformance/FORMAT.md).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Conformance {
            files,
            bless: false,
        } => conformance(&files),
        Command::Conformance { files, bless: true } => bless(&files),
    }
}

fn conformance(files: &[std::path::PathBuf]) -> ExitCode {
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

fn bless(files: &[std::path::PathBuf]) -> ExitCode {
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
