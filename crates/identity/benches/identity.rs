//! Identity engine benchmarks (numbers for the issue note, not pass/fail tests).
//!
//! `cargo bench -p authsome-identity --bench identity` (Postgres figures too when
//! `AUTHSOME_TEST_POSTGRES_URL`, default local, is reachable).
//!
//! 1. sign-in throughput over raw argon2id verifications/s, same parameters, same concurrency;
//! 2. refresh-token exchanges per second on one core (SQLite, Postgres): one chain at a time
//!    (the latency of one exchange), and 32 sessions refreshing at once on one runtime thread,
//!    as a server sees them. Each figure is given per second of wall time and per CPU-second
//!    used by this process (all its threads, SQLite's included: what one fully used core
//!    does), and on Postgres per CPU-second of the local Postgres server too. For a strict
//!    one-core figure run the bench under `taskset -c 0` (SQLite's connection threads then
//!    share that core; Postgres runs elsewhere).
//!    `cargo bench -p authsome-identity --bench identity -- refresh` runs only this part.
//! 3. access-token verification against the JWKS per second on one core;
//! 4. resident memory with 1,000 applications provisioned and 100 of them active.

use std::sync::Arc;
use std::time::{Duration, Instant};

use authsome_domain::id::ApplicationId;
use authsome_domain::master_key::MasterKey;
use authsome_domain::password::{self, PasswordPolicy};
use authsome_identity::{ClientInfo, Identity, SignIn, SignUp};
use authsome_storage::app::{AppDatabaseConfig, AppDatabases};

const PASSWORD: &str = "a benchmark password";

fn identity(config: AppDatabaseConfig, max_open: usize) -> Identity {
    Identity::new(
        AppDatabases::new(config, max_open),
        MasterKey::generate(),
        "http://bench".into(),
    )
}

async fn app_with_user(identity: &Identity, email: &str) -> (ApplicationId, String) {
    let app = ApplicationId::new();
    identity.provision(&app).await.expect("provision");
    let token = signed_up(identity, &app, email).await;
    (app, token)
}

/// Signs up `email` in `app`; returns the session's refresh token.
async fn signed_up(identity: &Identity, app: &ApplicationId, email: &str) -> String {
    let (_, session) = identity
        .sign_up(
            app,
            SignUp {
                email: email.into(),
                password: PASSWORD.into(),
                name: None,
            },
            &ClientInfo::default(),
        )
        .await
        .expect("sign up");
    session.refresh_token
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// `sessions` users of `app`, each with a fresh refresh token.
async fn sessions(identity: &Identity, app: &ApplicationId, sessions: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(sessions);
    for i in 0..sessions {
        tokens.push(signed_up(identity, app, &format!("concurrent-{i}@example.com")).await);
    }
    tokens
}

/// CPU time (user + system, all threads) this process and the local Postgres server have used,
/// in seconds, from `/proc` (clock ticks of 10 ms: plenty over a five-second run).
fn cpu_seconds() -> (f64, f64) {
    fn of(stat: &str) -> Option<f64> {
        // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| of(&s))
        .unwrap_or(f64::NAN);
    let mut postgres = 0.0;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let path = entry.path();
            let is_postgres = std::fs::read_to_string(path.join("comm"))
                .map(|c| c.trim() == "postgres")
                .unwrap_or(false);
            if is_postgres {
                if let Some(t) = std::fs::read_to_string(path.join("stat"))
                    .ok()
                    .and_then(|s| of(&s))
                {
                    postgres += t;
                }
            }
        }
    }
    (own, postgres)
}

/// Exchanges per second of wall time, and per CPU-second of this process (the server's side:
/// what one fully used core would do) and of the Postgres server.
struct RefreshRate {
    wall: f64,
    per_cpu: f64,
    per_postgres_cpu: f64,
}

impl std::fmt::Display for RefreshRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}/s wall, {:.0} per CPU-second of the server",
            self.wall, self.per_cpu
        )?;
        if self.per_postgres_cpu.is_finite() {
            write!(
                f,
                ", {:.0} per CPU-second of Postgres",
                self.per_postgres_cpu
            )?;
        }
        Ok(())
    }
}

/// Every session (one, or many at once) refreshing in its own loop for `seconds`.
async fn refresh_rate(
    identity: &Identity,
    app: &ApplicationId,
    tokens: Vec<String>,
    seconds: u64,
) -> RefreshRate {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let (cpu_before, pg_before) = cpu_seconds();
    let loops = tokens.into_iter().map(|mut token| async move {
        let mut n = 0u64;
        while Instant::now() < deadline {
            token = identity
                .refresh(app, &token)
                .await
                .expect("refresh")
                .refresh_token;
            n += 1;
        }
        n
    });
    let total: u64 = futures_util::future::join_all(loops)
        .await
        .into_iter()
        .sum();
    let elapsed = started.elapsed();
    let (cpu_after, pg_after) = cpu_seconds();
    let pg = pg_after - pg_before;
    RefreshRate {
        wall: rate(total, elapsed),
        per_cpu: total as f64 / (cpu_after - cpu_before),
        per_postgres_cpu: if pg > 0.05 {
            total as f64 / pg
        } else {
            f64::NAN
        },
    }
}

/// Refresh exchanges only (`-- refresh`).
fn refresh_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(refresh_figures(dir.path()));
}

/// Refresh exchanges, sequential and 32 at once, SQLite and Postgres, on the calling
/// (one-thread) runtime.
async fn refresh_figures(dir: &std::path::Path) {
    {
        let sqlite = identity(
            AppDatabaseConfig::Sqlite {
                dir: dir.join("refresh"),
            },
            16,
        );
        let db = authsome_testkit::TestDatabase::create().await;
        let pg = db.as_ref().map(|db| {
            identity(
                AppDatabaseConfig::Postgres {
                    server_url: db.url.clone(),
                },
                16,
            )
        });
        for (name, identity) in [("SQLite", Some(&sqlite)), ("Postgres", pg.as_ref())] {
            let Some(identity) = identity else { continue };
            let (app, token) = app_with_user(identity, "r@example.com").await;
            println!(
                "refresh exchanges ({name}, one at a time): {}",
                refresh_rate(identity, &app, vec![token], 5).await
            );
            let tokens = sessions(identity, &app, 32).await;
            println!(
                "refresh exchanges ({name}, 32 sessions at once, one runtime thread): {}",
                refresh_rate(identity, &app, tokens, 5).await
            );
            identity.destroy(&app).await.ok();
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "memory") {
        return memory();
    }
    if std::env::args().any(|a| a == "refresh") {
        return refresh_only();
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let dir = tempfile::tempdir().expect("tempdir");

    // 1. Sign-in vs raw argon2id, both with `workers` concurrent callers.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    let signin_rate = multi.block_on(async {
        let identity = Arc::new(identity(
            AppDatabaseConfig::Sqlite {
                dir: dir.path().join("signin"),
            },
            16,
        ));
        let (app, _) = app_with_user(&identity, "bench@example.com").await;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let identity = identity.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        identity
                            .sign_in(
                                &app,
                                SignIn {
                                    email: "bench@example.com".into(),
                                    password: PASSWORD.into(),
                                },
                                &ClientInfo::default(),
                            )
                            .await
                            .expect("sign in");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("task");
        }
        rate(total, started.elapsed())
    });
    let hash = PasswordPolicy::default().hash(PASSWORD);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(5);
    let raw: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let hash = hash.clone();
                s.spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        assert!(password::verify_password(PASSWORD, &hash));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let raw_rate = rate(raw, started.elapsed());
    println!(
        "sign-in: {signin_rate:.1}/s, raw argon2id verify: {raw_rate:.1}/s ({workers} workers) -> ratio {:.3}",
        signin_rate / raw_rate
    );

    // 2 and 3 on one core.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    single.block_on(async {
        refresh_figures(dir.path()).await;
        let identity = identity(
            AppDatabaseConfig::Sqlite {
                dir: dir.path().join("verify"),
            },
            16,
        );
        let (app, _) = app_with_user(&identity, "r@example.com").await;
        let (_, session) = identity
            .sign_in(
                &app,
                SignIn {
                    email: "r@example.com".into(),
                    password: PASSWORD.into(),
                },
                &ClientInfo::default(),
            )
            .await
            .expect("sign in");
        let keys = identity.key_set(&app).await.expect("keys");
        let issuer = identity.issuer(&app);
        let now = authsome_domain::now().timestamp();
        let n = 200_000u64;
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(
                keys.verify(
                    std::hint::black_box(&session.token),
                    now,
                    &issuer,
                    app.as_str(),
                )
                .expect("valid"),
            );
        }
        println!(
            "access-token verification against the JWKS keys (1 core): {:.0}/s",
            rate(n, started.elapsed())
        );
        let n = 20_000u64;
        let started = Instant::now();
        for _ in 0..n {
            identity
                .authenticate(&app, session.token.as_str().into())
                .await
                .expect("valid");
        }
        println!(
            "access token + live session + user check (SQLite, 1 core): {:.0}/s",
            rate(n, started.elapsed())
        );
    });

    // 4. Memory, in a fresh process so nothing above inflates it.
    let me = std::env::current_exe().expect("exe");
    let status = std::process::Command::new(me).arg("memory").status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("memory benchmark failed");
    }
}

fn memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    multi.block_on(async {
        let before = rss_mib();
        let identity = identity(AppDatabaseConfig::Sqlite { dir: dir.path().join("many") }, 512);
        let mut apps = Vec::new();
        let started = Instant::now();
        for i in 0..1000 {
            let app = ApplicationId::new();
            identity.provision(&app).await.expect("provision");
            if i < 100 {
                apps.push(app);
            }
        }
        let provisioned_in = started.elapsed();
        identity.databases().close_idle(Duration::ZERO).await;
        for (i, app) in apps.iter().enumerate() {
            identity
                .sign_up(app, SignUp { email: format!("u{i}@example.com"), password: PASSWORD.into(), name: None }, &ClientInfo::default())
                .await
                .expect("sign up");
        }
        // What the maintenance loop does every few seconds.
        identity.maintain().await;
        println!(
            "1,000 applications provisioned in {:.1} s; with 100 active: RSS {:.0} MiB (process total, {:.0} MiB before), {} open pools",
            provisioned_in.as_secs_f64(),
            rss_mib(),
            before,
            identity.databases().open_pools()
        );
    });
}
