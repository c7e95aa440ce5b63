//! Test support shared by the integration tests of every crate: a throwaway Postgres database per
//! test, created with a random name and dropped when the test ends (even when it fails).
//!
//! Postgres is found at `AUTHSOME_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Under `CI=true` a missing server fails the
//! test; elsewhere the Postgres half of a suite is skipped with a message.
//!
//! [`smtp`]: a real SMTP server (aiosmtpd) that keeps what it receives.
//!
//! For benchmarks: [`cpu`], the CPU time of this process, a thread and the Postgres server;
//! [`rounds`], the summary of rounds that alternate a baseline and the measured work.

use sqlx::{Connection, Executor, PgConnection};

pub mod cpu;
pub mod moto;
pub mod rounds;
pub mod smtp;
pub mod stripe;

pub fn admin_url() -> String {
    std::env::var("AUTHSOME_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A service a test needs is missing: under `CI=true` that fails the test; elsewhere the test
/// is skipped with a message.
fn unavailable<T>(what: &str) -> Option<T> {
    if ci() {
        panic!("CI=true and {what} is unavailable");
    }
    eprintln!("skipping: {what} is unavailable");
    None
}

/// Starts the server `command` makes for a free port, waiting until it listens on 127.0.0.1:
/// its URL (`http://127.0.0.1:<port>`) and process, or `None` (outside CI) when it cannot start.
pub(crate) fn serve_on_a_port(
    name: &str,
    command: impl FnOnce(u16) -> std::process::Command,
) -> Option<(String, std::process::Child)> {
    use std::time::{Duration, Instant};
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("its address").port()
    };
    let spawned = command(port)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return unavailable(&format!("{name}: {e}")),
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return unavailable(&format!("{name} exited ({status})"));
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((format!("http://127.0.0.1:{port}"), child))
}

/// The NATS server (with JetStream) the tests use, at `AUTHSOME_TEST_NATS_URL` (default
/// `nats://127.0.0.1:4222`), or `None` (outside CI) when nothing listens there. Each test names
/// its own stream and subjects ([`unique`]).
pub fn nats_url() -> Option<String> {
    let url = std::env::var("AUTHSOME_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let address = url
        .trim_start_matches("nats://")
        .trim_end_matches('/')
        .to_owned();
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
        });
    if reachable {
        Some(url)
    } else {
        unavailable(&format!("NATS at {url}"))
    }
}

/// A name no other test uses (for streams, subjects and key prefixes).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A Postgres database that exists for the lifetime of this value.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// Creates a fresh database, or `None` (outside CI) when Postgres is not reachable.
    pub async fn create() -> Option<Self> {
        let admin = admin_url();
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) if !ci() => {
                eprintln!("skipping the Postgres half of this test: {admin}: {e}");
                return None;
            }
            Err(e) => panic!("CI=true and Postgres is unreachable at {admin}: {e}"),
        };
        let name = format!("authsome_test_{}", uuid::Uuid::now_v7().simple());
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("AUTHSOME_TEST_POSTGRES_URL must end in /<database>"),
        };
        Some(Self { name, url })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let url = self.url.clone();
        // Drop runs inside a test's runtime: do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                // Applications' own databases (`authsome_app_<id>`) go with the control plane's.
                let mut app_databases = Vec::new();
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM applications")
                        .fetch_all(&mut conn)
                        .await
                        .unwrap_or_default();
                    app_databases = ids
                        .iter()
                        .filter_map(|id| id.strip_prefix("app_"))
                        .map(|body| format!("authsome_app_{body}"))
                        .collect();
                    let _ = conn.close().await;
                }
                if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
                    // Schema isolation keeps every application in `<name>_apps`.
                    let _ = conn
                        .execute(
                            format!("DROP DATABASE IF EXISTS {name}_apps WITH (FORCE)").as_str(),
                        )
                        .await;
                    for db in &app_databases {
                        let _ = conn
                            .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
                            .await;
                        // The same name is the role that owns the schema in schema mode.
                        let _ = conn
                            .execute(format!("DROP ROLE IF EXISTS {db}").as_str())
                            .await;
                    }
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}
