//! The built `authsome` binary, run as an operator would: `init`, `config`, `migrate`, `version`,
//! and `serve` until SIGTERM, including the start-up errors that must name their setting.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn authsome(data_dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authsome"));
    cmd.env_clear()
        .env("AUTHSOME_DATA_DIR", data_dir)
        .env("AUTHSOME_LOG", "warn")
        .args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

fn run(data_dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    authsome(data_dir, envs, args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn init_prints_once_and_then_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), &[], &["init", "--json"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let out: Value = serde_json::from_str(stdout(&first).trim()).expect("exactly one JSON object");
    assert!(out["workspaceId"].as_str().unwrap().starts_with("ws_"));
    assert_eq!(out["ownerEmail"], "owner@authsome.local");
    assert_eq!(out["ownerPassword"].as_str().unwrap().len(), 32);
    assert!(out["managementKey"]
        .as_str()
        .unwrap()
        .starts_with("wk_live_"));
    assert!(dir.path().join("master.key").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let key_before = std::fs::read(dir.path().join("master.key")).unwrap();

    let second = run(dir.path(), &[], &["init", "--json"]);
    assert!(second.status.success());
    let again: Value = serde_json::from_str(stdout(&second).trim()).unwrap();
    assert_eq!(
        again,
        serde_json::json!({"workspaceId": out["workspaceId"], "ownerEmail": "owner@authsome.local"})
    );
    let text = run(dir.path(), &[], &["init"]);
    assert!(text.status.success());
    assert!(stdout(&text).contains("nothing changed"));
    assert_eq!(
        std::fs::read(dir.path().join("master.key")).unwrap(),
        key_before
    );
    // Secrets never reach the log.
    let logs = format!("{}{}{}", stderr(&first), stderr(&second), stderr(&text));
    assert!(!logs.contains(out["ownerPassword"].as_str().unwrap()));
    assert!(!logs.contains(out["managementKey"].as_str().unwrap()));
}

#[test]
fn init_takes_the_bootstrap_password_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "a chosen owner password\n").unwrap();
    let o = run(
        dir.path(),
        &[
            ("AUTHSOME_BOOTSTRAP_PASSWORD_FILE", secret.to_str().unwrap()),
            ("AUTHSOME_BOOTSTRAP_EMAIL", "ops@example.com"),
        ],
        &["init", "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(out.get("ownerPassword").is_none(), "the operator chose it");
    assert_eq!(out["ownerEmail"], "ops@example.com");
}

#[test]
fn config_redacts_and_bad_settings_name_their_variable() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &[
            (
                "AUTHSOME_DATABASE_URL",
                "postgres://app:s3cret@db.internal:5432/authsome",
            ),
            (
                "AUTHSOME_MASTER_KEY",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ),
        ],
        &["config"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(
            "AUTHSOME_DATABASE_URL=postgres://***@db.internal:5432/authsome  # environment"
        ),
        "{text}"
    );
    assert!(text.contains("AUTHSOME_MASTER_KEY=***"));
    assert!(!text.contains("s3cret") && !text.contains("MDEyMzQ1"));
    assert!(text.contains("AUTHSOME_LISTEN=127.0.0.1:8080  # default"));

    for (var, value) in [
        ("AUTHSOME_LISTEN", "not-an-address"),
        ("AUTHSOME_DATABASE_URL", "mysql://db/x"),
        ("AUTHSOME_MASTER_KEY", "too-short"),
        ("AUTHSOME_LOG_FORMAT", "yaml"),
    ] {
        let o = run(dir.path(), &[(var, value)], &["serve"]);
        assert!(!o.status.success());
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
        assert!(err.starts_with(&format!("error: invalid {var}: ")), "{err}");
    }
    let reference = run(dir.path(), &[], &["config", "--reference"]);
    assert!(stdout(&reference).contains("| `AUTHSOME_MASTER_KEY` | unset | yes |"));
    let version = run(dir.path(), &[], &["version"]);
    assert_eq!(
        stdout(&version).trim(),
        format!("authsome {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn startup_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    // A wrong master key cannot decrypt what the first one wrote.
    assert!(run(dir.path(), &[], &["init"]).status.success());
    let wrong = run(
        dir.path(),
        &[(
            "AUTHSOME_MASTER_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )],
        &["serve"],
    );
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("AUTHSOME_MASTER_KEY does not match"),
        "{}",
        stderr(&wrong)
    );
    // A data dir that cannot be created.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let o = run(&blocker.join("sub"), &[], &["serve"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("AUTHSOME_DATA_DIR"), "{}", stderr(&o));
    // Configured services that do not answer.
    let closed = closed_port();
    let o = run(
        dir.path(),
        &[("AUTHSOME_REDIS_URL", &format!("redis://127.0.0.1:{closed}"))],
        &["serve"],
    );
    assert!(
        stderr(&o).starts_with("error: AUTHSOME_REDIS_URL: cannot reach"),
        "{}",
        stderr(&o)
    );
    let o = run(
        dir.path(),
        &[(
            "AUTHSOME_DATABASE_URL",
            &format!("postgres://postgres@127.0.0.1:{closed}/x"),
        )],
        &["serve"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("error: AUTHSOME_DATABASE_URL: cannot open the database"),
        "{}",
        stderr(&o)
    );
    // Postgres without a shared master key: no silent per-replica key.
    let empty = tempfile::tempdir().unwrap();
    let o = run(
        empty.path(),
        &[(
            "AUTHSOME_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )],
        &["serve"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("AUTHSOME_MASTER_KEY is not set"),
        "{}",
        stderr(&o)
    );
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn serve_is_ready_then_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = authsome(dir.path(), &[("AUTHSOME_LISTEN", &listen)], &["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("http://{listen}/ready")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = run(
        dir.path(),
        &[("AUTHSOME_LISTEN", &listen)],
        &["healthcheck"],
    );
    assert!(health.status.success(), "{}", stderr(&health));
    // Embedded mode made its own master key on first start.
    assert!(dir.path().join("master.key").exists());
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let closed = run(
        dir.path(),
        &[("AUTHSOME_LISTEN", &listen)],
        &["healthcheck"],
    );
    assert!(!closed.status.success());
}

#[tokio::test]
async fn replicas_migrate_one_postgres_database_at_once() {
    let Some(db) = authsome_testkit::TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let envs = [
        ("AUTHSOME_DATABASE_URL", db.url.as_str()),
        ("AUTHSOME_MASTER_KEY", key),
    ];
    let children: Vec<_> = (0..3)
        .map(|_| {
            authsome(dir.path(), &envs, &["migrate"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "migrations applied");
    }
    let init = run(dir.path(), &envs, &["init", "--json"]);
    assert!(init.status.success(), "{}", stderr(&init));
    let again = run(dir.path(), &envs, &["init", "--json"]);
    let again: Value = serde_json::from_str(stdout(&again).trim()).unwrap();
    assert!(again.get("managementKey").is_none());
}
