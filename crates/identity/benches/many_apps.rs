//! Resident memory with many applications serving (a figure for the issue note, not a
//! pass/fail test): `cargo bench -p authsome-identity --bench many_apps`.
//!
//! Provisions `AUTHSOME_BENCH_APPS` applications (default 10,000), then has each serve a
//! request within the run (a sign-up: the pool opened, a password hashed on the shared pool,
//! a user and a session written with their audit rows, tokens signed with the application's
//! key, now cached), as a deployment whose applications all serve within the same hour would. Prints peak and final resident memory of the process and the number of
//! open pools, on SQLite and (when Postgres is reachable) on Postgres schema mode with
//! `AUTHSOME_BENCH_PG_APPS` applications (default 2,000: each costs a role and a schema).
//! Each backend runs in a fresh process, so neither inflates the other's figures.

use std::time::Instant;

use authsome_domain::id::ApplicationId;
use authsome_domain::master_key::MasterKey;
use authsome_identity::{ClientInfo, Identity, SignUp};
use authsome_storage::app::{AppDatabaseConfig, AppDatabases};

/// The pools a server keeps open at most (`Settings::new`'s default).
const OPEN_APPLICATIONS: usize = authsome_storage::app::DEFAULT_OPEN_APPLICATIONS;

fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(label: &str, config: AppDatabaseConfig, n: usize) {
    let before = status_mib("VmRSS:");
    let identity = Identity::new(
        AppDatabases::new(config, OPEN_APPLICATIONS),
        MasterKey::generate(),
        "http://bench".into(),
    );
    let started = Instant::now();
    let mut apps = Vec::with_capacity(n);
    for _ in 0..n {
        let app = ApplicationId::new();
        identity.provision(&app).await.expect("provision");
        apps.push(app);
    }
    let provisioned = started.elapsed();
    let after_provisioning = status_mib("VmRSS:");
    let started = Instant::now();
    for (i, app) in apps.iter().enumerate() {
        identity
            .sign_up(
                app,
                SignUp {
                    email: format!("user{i}@example.com"),
                    password: "a benchmark password".into(),
                    name: None,
                },
                &ClientInfo::default(),
            )
            .await
            .expect("sign-up");
        if i % 1000 == 999 {
            // What the maintenance loop does every few seconds.
            identity.maintain().await;
        }
    }
    let served = started.elapsed();
    identity.maintain().await;
    println!(
        "{label}: {n} applications provisioned in {:.0} s, each then served a request in {:.0} s; \
         RSS {:.0} MiB before, {:.0} MiB after provisioning, {:.0} MiB after serving, \
         peak {:.0} MiB; {} pools open (at most {})",
        provisioned.as_secs_f64(),
        served.as_secs_f64(),
        before,
        after_provisioning,
        status_mib("VmRSS:"),
        status_mib("VmHWM:"),
        identity.databases().open_pools(),
        identity.databases().max_open(),
    );
}

fn main() {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    match std::env::args().nth(1).as_deref() {
        Some("sqlite") => {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = AppDatabaseConfig::Sqlite {
                dir: dir.path().join("apps"),
            };
            runtime().block_on(run("SQLite", config, count("AUTHSOME_BENCH_APPS", 10_000)));
        }
        Some("postgres-schema") => runtime().block_on(async {
            let Some(db) = authsome_testkit::TestDatabase::create().await else {
                println!("Postgres schema mode: skipped (Postgres unreachable)");
                return;
            };
            let config = AppDatabaseConfig::PostgresSchema {
                server_url: db.url.clone(),
            };
            run(
                "Postgres schema mode",
                config,
                count("AUTHSOME_BENCH_PG_APPS", 2_000),
            )
            .await;
            drop(db);
        }),
        _ => {
            let me = std::env::current_exe().expect("exe");
            for backend in ["sqlite", "postgres-schema"] {
                let ok = std::process::Command::new(&me)
                    .arg(backend)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    eprintln!("{backend}: the benchmark failed");
                }
            }
        }
    }
}
