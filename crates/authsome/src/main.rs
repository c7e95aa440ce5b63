//! `authsome`: the one binary. `serve` runs the control plane, the customer API and health in
//! one process; `init` prepares a deployment; `migrate`, `config`, `version` and `healthcheck`
//! are the operator's tools. Everything here is wiring: configuration, start-up checks,
//! signals. The behaviour lives in the library crates.

mod audit_cli;
mod config;
mod startup;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the server allocates many small, short-lived buffers per request (headers, ids,
/// JSON); glibc's malloc spent a tenth of the gateway's time on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "authsome",
    version,
    about = "Multi-tenant identity and credential control plane"
)]
struct Cli {
    /// TOML configuration file (also AUTHSOME_CONFIG). Environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: control plane, customer API and health in one process.
    Serve {
        /// Run as the instance of one dedicated application: serve only its customer API
        /// (`/v1/<appId>/…`) and health, behind the gateway that forwards to it.
        #[arg(long, value_name = "APP_ID")]
        app: Option<String>,
    },
    /// Create the data dir, the master key, the root workspace and its break-glass owner, once.
    Init {
        /// Print exactly one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration, secrets redacted.
    Config {
        /// Print the reference of every setting (Markdown) instead.
        #[arg(long)]
        reference: bool,
    },
    /// Print the version.
    Version,
    /// Audit-log tools that need no server.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Exit 0 when the local server answers /health (for container health checks).
    Healthcheck {
        /// Base URL to probe (default: http://<AUTHSOME_LISTEN>).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify an exported log offline: the hash chain, the Merkle root against a signed
    /// checkpoint, and consistency with earlier checkpoints. Names the first entry that fails.
    Verify {
        /// The JSON Lines export (`GET /control/v1/workspaces/{wsId}/audit/export`).
        #[arg(long, value_name = "FILE")]
        export: PathBuf,
        /// A signed checkpoint (`GET …/audit/checkpoints/latest`).
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// An earlier signed checkpoint to check consistency with (repeatable).
        #[arg(long, value_name = "FILE")]
        earlier: Vec<PathBuf>,
        /// Verifier keys, one per line (`GET …/audit/keys`).
        #[arg(long = "key", value_name = "FILE")]
        keys: PathBuf,
        /// For a log pruned by retention: the pruned prefix (`GET …/audit/prefix`).
        #[arg(long, value_name = "FILE")]
        prefix: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Everything this process creates (the data directory, the embedded databases with their
    // WAL and shared-memory files, application databases, the master key) is for its own user
    // only, whenever it is created.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; no other thread runs yet.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    // Offline verification needs no configuration: a customer runs it on their own machine.
    if let Command::Audit {
        command:
            AuditCommand::Verify {
                export,
                checkpoint,
                earlier,
                keys,
                prefix,
            },
    } = cli.command
    {
        return match audit_cli::verify(audit_cli::VerifyArgs {
            export,
            checkpoint,
            earlier,
            keys,
            prefix,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("{e:#}")),
        };
    }
    let env = |k: &str| std::env::var(k).ok();
    let raw = match config::gather(cli.config.as_deref(), &env) {
        Ok(raw) => raw,
        Err(e) => return fail(&e.to_string()),
    };
    if let Command::Config { reference: true } = cli.command {
        print!("{}", config::reference_markdown());
        return ExitCode::SUCCESS;
    }
    if let Command::Config { .. } = cli.command {
        for (var, value, source) in raw.describe() {
            println!("{var}={value}  # {source}");
        }
        return match raw.parse() {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(&e.to_string()),
        };
    }
    if let Command::Version = cli.command {
        println!("authsome {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let config = match raw.parse() {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    // One thread needs no work-stealing scheduler: every task runs where it was woken.
    let mut builder = match config.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { app } => startup::serve(config, app).await,
            Command::Init { json } => startup::init(config, json).await,
            Command::Migrate => startup::migrate(config).await,
            Command::Healthcheck { url } => startup::healthcheck(config, url).await,
            Command::Config { .. } | Command::Version | Command::Audit { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
