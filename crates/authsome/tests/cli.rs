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

/// A port that nothing listens on, for a process this test starts later (or never).
///
/// Taken below the kernel's ephemeral range: a port from `bind(0)`, released at once, is handed
/// out again to the next `bind(0)` or outgoing connection of a test running alongside, and a
/// gateway whose upstream port another test's server took forwards to that server (whose 404
/// once stood in for the 503 of "no instance yet"). Below the range only these calls hand ports
/// out, each one a different port in this binary.
fn closed_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const SPAN: u32 = 8192;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let base = ephemeral_low.saturating_sub(SPAN).max(1024);
    // Another run of this binary may overlap (a developer's and CI's): start where the pid says.
    let start = std::process::id().wrapping_mul(97);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "no free port below the ephemeral range");
        let port = u16::try_from(base + start.wrapping_add(n) % SPAN).expect("a port number");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[tokio::test]
async fn serve_is_ready_then_stops_cleanly_on_sigterm() {
    serve_ready_then_sigterm(None).await;
    // One worker thread: the single-threaded runtime.
    serve_ready_then_sigterm(Some("1")).await;
}

async fn serve_ready_then_sigterm(worker_threads: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let listen = format!("127.0.0.1:{port}");
    let mut env = vec![("AUTHSOME_LISTEN", listen.as_str())];
    if let Some(n) = worker_threads {
        env.push(("AUTHSOME_WORKER_THREADS", n));
    }
    let mut child = authsome(dir.path(), &env, &["serve"])
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

#[test]
fn self_hosting_guide_documents_every_setting() {
    let dir = tempfile::tempdir().unwrap();
    let reference = stdout(&run(dir.path(), &[], &["config", "--reference"]));
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/guides/self-hosting.md"
    ))
    .unwrap();
    let section = guide
        .split("<!-- BEGIN CONFIG REFERENCE -->\n")
        .nth(1)
        .and_then(|rest| rest.split("<!-- END CONFIG REFERENCE -->").next())
        .expect("the guide has the reference markers");
    assert_eq!(
        section, reference,
        "docs/guides/self-hosting.md is out of date: paste `authsome config --reference` between its markers"
    );
}

/// The image's ENV, ENTRYPOINT, CMD and HEALTHCHECK, read from the Dockerfile.
struct Image {
    env: Vec<(String, String)>,
    command: Vec<String>,
    healthcheck: Vec<String>,
}

fn json_array(line: &str) -> Vec<String> {
    let start = line.find('[').expect("exec form");
    serde_json::from_str(&line[start..]).expect("a JSON array")
}

fn image() -> Image {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    // The runtime stage is the last one.
    let runtime = joined.rsplit("\nFROM ").next().unwrap();
    let mut image = Image {
        env: Vec::new(),
        command: Vec::new(),
        healthcheck: Vec::new(),
    };
    let mut entrypoint = Vec::new();
    let mut cmd = Vec::new();
    for line in runtime.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV key=value");
                image.env.push((k.to_owned(), v.to_owned()));
            }
        } else if line.starts_with("ENTRYPOINT ") {
            entrypoint = json_array(line);
        } else if line.starts_with("CMD ") {
            cmd = json_array(line);
        } else if line.starts_with("HEALTHCHECK ") {
            image.healthcheck = json_array(&line[line.find(" CMD ").expect("HEALTHCHECK CMD")..]);
        }
    }
    image.command = entrypoint.into_iter().chain(cmd).collect();
    image
}

/// Waits (up to 20 s) until the server at `base` answers `/ready` with 200.
async fn wait_ready(client: &reqwest::Client, base: &str) {
    let started = Instant::now();
    while client
        .get(format!("{base}/ready"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The binary under test: the release build when CI sets `AUTHSOME_TEST_BIN`, else this build.
fn binary() -> String {
    std::env::var("AUTHSOME_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_authsome").to_owned())
}

#[tokio::test]
async fn runs_as_the_container_entrypoint() {
    let image = image();
    assert_eq!(image.command, ["authsome", "serve"]);
    assert_eq!(image.healthcheck, ["authsome", "healthcheck"]);
    let data = tempfile::tempdir().unwrap();
    let port = closed_port();
    // The image's variables, with the data volume and the port moved to free places.
    let mut env: Vec<(String, String)> = image.env.clone();
    for (k, v) in env.iter_mut() {
        match k.as_str() {
            "AUTHSOME_DATA_DIR" => *v = data.path().display().to_string(),
            "AUTHSOME_LISTEN" => {
                assert!(
                    v.starts_with("0.0.0.0:"),
                    "the image listens on every interface"
                );
                *v = format!("0.0.0.0:{port}");
            }
            _ => {}
        }
    }
    let command = |args: &[String]| {
        let mut cmd = Command::new(binary());
        cmd.env_clear().args(&args[1..]);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd
    };
    let mut server = command(&image.command)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/ready"))
            .send()
            .await
        {
            if r.status() == 200 {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = command(&image.healthcheck).output().unwrap();
    assert!(
        health.status.success(),
        "HEALTHCHECK failed: {}",
        stderr(&health)
    );
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let status = server.wait().unwrap();
    assert!(status.success());
    let mut logs = String::new();
    std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut logs).unwrap();
    let first = logs.lines().next().unwrap_or_default();
    assert!(
        first.starts_with('{'),
        "AUTHSOME_LOG_FORMAT=json logs JSON lines: {first}"
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_flushes_counters() {
    let dir = tempfile::tempdir().unwrap();
    let init = run(dir.path(), &[], &["init", "--json"]);
    let init: Value = serde_json::from_str(stdout(&init).trim()).unwrap();
    let key = init["managementKey"].as_str().unwrap().to_owned();
    let ws = init["workspaceId"].as_str().unwrap().to_owned();
    let port = closed_port();
    let listen = format!("127.0.0.1:{port}");
    let base = format!("http://{listen}");
    let start = || {
        authsome(dir.path(), &[("AUTHSOME_LISTEN", &listen)], &["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let client = reqwest::Client::new();
    let wait_ready = || wait_ready(&client, &base);
    let mut server = start();
    wait_ready().await;
    let app: Value = client
        .post(format!("{base}/control/v1/workspaces/{ws}/applications"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"name": "Drain", "environment": "development"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app = app["id"].as_str().unwrap().to_owned();
    let created: Value = client
        .post(format!("{base}/control/v1/applications/{app}/keys"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"type": "publishable"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pk = created["secret"].as_str().unwrap().to_owned();

    // Slow requests (argon2id sign-ups) in flight when SIGTERM arrives.
    let in_flight: Vec<_> = (0..6)
        .map(|i| {
            let client = client.clone();
            let url = format!("{base}/v1/{app}/auth/signup");
            let pk = pk.clone();
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("X-Publishable-Key", pk)
                    .json(&serde_json::json!({"email": format!("drain{i}@example.com"), "password": "long-password"}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    for request in in_flight {
        assert_eq!(request.await.unwrap().expect("completed, not cut off"), 201);
    }
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");

    // After a restart, nothing batched was lost.
    let mut server = start();
    wait_ready().await;
    let keys: Value = client
        .get(format!("{base}/control/v1/applications/{app}/keys"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(keys["data"][0]["lastUsedAt"].as_str().is_some(), "{keys}");
    let usage: Value = client
        .get(format!("{base}/control/v1/applications/{app}/usage"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["monthlyActiveUsers"], 6, "{usage}");
    assert_eq!(
        usage["requests"], 6,
        "request counts survive the restart: {usage}"
    );

    // The audit entries queued at SIGTERM were written too, and the log verifies offline with
    // `authsome audit verify` from its export, a signed checkpoint and the verifier keys.
    let get_text = |path: String| {
        let client = client.clone();
        let key = key.clone();
        let base = base.clone();
        async move {
            let r = client
                .get(format!("{base}{path}"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let audit = format!("/control/v1/workspaces/{ws}/audit");
    let checkpoint = get_text(format!("{audit}/checkpoints/latest")).await;
    let export = get_text(format!("{audit}/export")).await;
    let verifier_keys = get_text(format!("{audit}/keys")).await;
    assert_eq!(
        export.matches("\"action\":\"user.signed_up\"").count(),
        6,
        "{export}"
    );
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.display().to_string()
    };
    let (e, c, k) = (
        write("export.jsonl", &export),
        write("checkpoint.txt", &checkpoint),
        write("keys.txt", &verifier_keys),
    );
    let verify = |export: &str| {
        run(
            dir.path(),
            &[],
            &[
                "audit",
                "verify",
                "--export",
                export,
                "--checkpoint",
                &c,
                "--key",
                &k,
            ],
        )
    };
    let ok = verify(&e);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let lines = export.lines().count();
    assert!(
        stdout(&ok).contains(&format!("ok: {lines} entries of {ws}")),
        "{}",
        stdout(&ok)
    );
    let mut tampered: Vec<&str> = export.lines().collect();
    let changed = tampered[2].replacen("\"outcome\":\"success\"", "\"outcome\":\"failure\"", 1);
    tampered[2] = &changed;
    let bad = verify(&write("tampered.jsonl", &(tampered.join("\n") + "\n")));
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("(entry 2, evt_"), "{}", stderr(&bad));
    let missing = run(
        dir.path(),
        &[],
        &[
            "audit",
            "verify",
            "--export",
            "/nonexistent",
            "--checkpoint",
            &c,
            "--key",
            &k,
        ],
    );
    assert_eq!(
        stderr(&missing).trim(),
        "error: cannot read the export /nonexistent: No such file or directory (os error 2)"
    );
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    server.wait().unwrap();
}

/// Issue 4's replicas test, with real processes: two `authsome serve` on one Postgres and one
/// Redis act as one service.
#[tokio::test]
async fn two_serve_processes_share_sessions_revocations_and_limits() {
    let Some(db) = authsome_testkit::TestDatabase::create().await else {
        return;
    };
    let redis = std::env::var("AUTHSOME_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("authsome-cli-{}-{}:", std::process::id(), closed_port());
    let dir = tempfile::tempdir().unwrap();
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let (p1, p2) = (closed_port(), closed_port());
    let (l1, l2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    let common = [
        ("AUTHSOME_DATABASE_URL", db.url.as_str()),
        ("AUTHSOME_MASTER_KEY", key),
        ("AUTHSOME_REDIS_URL", redis.as_str()),
        ("AUTHSOME_REDIS_PREFIX", prefix.as_str()),
        // One public URL for both, as behind a load balancer.
        ("AUTHSOME_PUBLIC_URL", "http://auth.example.test"),
    ];
    let init = run(dir.path(), &common, &["init", "--json"]);
    if !init.status.success() && stderr(&init).contains("AUTHSOME_REDIS_URL") {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true and Redis is unreachable: {}",
            stderr(&init)
        );
        return;
    }
    assert!(init.status.success(), "{}", stderr(&init));
    let init: Value = serde_json::from_str(stdout(&init).trim()).unwrap();
    let mk = init["managementKey"].as_str().unwrap().to_owned();
    let ws = init["workspaceId"].as_str().unwrap().to_owned();
    let start = |listen: &str| {
        let mut envs = common.to_vec();
        envs.push(("AUTHSOME_LISTEN", listen));
        authsome(dir.path(), &envs, &["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (mut first, mut second) = (start(&l1), start(&l2));
    let client = reqwest::Client::new();
    let (b1, b2) = (format!("http://{l1}"), format!("http://{l2}"));
    for base in [&b1, &b2] {
        wait_for(
            &client,
            &format!("{base}/ready"),
            200,
            "a replica never became ready",
        )
        .await;
    }
    let post = |base: &str, path: &str, bearer: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(bearer)
            .json(&body)
            .send()
    };
    // A free-plan workspace's application: 10 requests per second per key.
    let app: Value = post(
        &b1,
        &format!("/control/v1/workspaces/{ws}/applications"),
        &mk,
        serde_json::json!({"name": "Replicated", "environment": "development"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let app = app["id"].as_str().unwrap().to_owned();
    let sk: Value = post(
        &b1,
        &format!("/control/v1/applications/{app}/keys"),
        &mk,
        serde_json::json!({"type": "secret"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let sk = sk["secret"].as_str().unwrap().to_owned();

    // Sign in on the first, refresh on the second.
    let signup = post(
        &b1,
        &format!("/v1/{app}/auth/signup"),
        &sk,
        serde_json::json!({"email": "twice@example.com", "password": "two-replicas-1"}),
    )
    .await
    .unwrap();
    assert_eq!(signup.status(), 201);
    let signin: Value = post(
        &b1,
        &format!("/v1/{app}/auth/signin"),
        &sk,
        serde_json::json!({"email": "twice@example.com", "password": "two-replicas-1"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let session = signin["session"]["id"].as_str().unwrap().to_owned();
    let refresh_token = signin["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let refreshed = post(
        &b2,
        &format!("/v1/{app}/auth/refresh"),
        &sk,
        serde_json::json!({"refreshToken": refresh_token}),
    )
    .await
    .unwrap();
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await.unwrap();
    let access = refreshed["session"]["token"].as_str().unwrap().to_owned();
    let me = |base: String| {
        let (client, access, app) = (client.clone(), access.clone(), app.clone());
        async move {
            client
                .get(format!("{base}/v1/{app}/me"))
                .bearer_auth(access)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(me(b2.clone()).await, 200);
    // Revoked on the first, refused on the second at once.
    let revoked = client
        .delete(format!("{b1}/v1/{app}/sessions/{session}"))
        .bearer_auth(&sk)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    assert_eq!(me(b2.clone()).await, 401);

    // Sign-in failures add up across replicas: five wrong passwords spread over both lock the
    // account on both (a correct password then gains nothing).
    for i in 0..5 {
        let base = if i % 2 == 0 { &b1 } else { &b2 };
        let r = post(
            base,
            &format!("/v1/{app}/auth/signin"),
            &sk,
            serde_json::json!({"email": "twice@example.com", "password": "wrong-password-x"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 401);
    }
    for base in [&b1, &b2] {
        let r = post(
            base,
            &format!("/v1/{app}/auth/signin"),
            &sk,
            serde_json::json!({"email": "twice@example.com", "password": "two-replicas-1"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 429);
        assert!(r.headers().get("retry-after").is_some());
    }

    // One rate limit for both: 5 per second for this workspace, so a quick burst of 30 split
    // between the replicas sees at most ~5 (plus what refills meanwhile) succeed.
    let limited = client
        .patch(format!("{b1}/control/v1/admin/workspaces/{ws}"))
        .bearer_auth(&mk)
        .json(&serde_json::json!({"plan": "enterprise", "limits": {"requestsPerSecondPerKey": 5}}))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 200);
    // Both replicas see the new limit as soon as the invalidation reaches them (within the
    // cache's second at most): watched with a key of its own, whose budget is its own.
    let watcher: Value = post(
        &b1,
        &format!("/control/v1/applications/{app}/keys"),
        &mk,
        serde_json::json!({"type": "publishable"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let watcher = watcher["secret"].as_str().unwrap().to_owned();
    for base in [&b1, &b2] {
        let started = Instant::now();
        loop {
            let r = client
                .get(format!("{base}/v1/{app}"))
                .bearer_auth(&watcher)
                .send()
                .await
                .unwrap();
            if r.headers()
                .get("x-ratelimit-limit")
                .is_some_and(|l| l == "5")
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the new limit never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let started = Instant::now();
    let mut allowed = 0;
    for i in 0..30 {
        let base = if i % 2 == 0 { &b1 } else { &b2 };
        let r = client
            .get(format!("{base}/v1/{app}"))
            .bearer_auth(&sk)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            allowed += 1;
        } else {
            assert_eq!(r.status(), 429);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        f64::from(allowed) <= 5.0 + (elapsed + 0.1) * 5.0,
        "{allowed} allowed in {elapsed:.2}s: the limit is shared"
    );
    assert!(allowed < 30, "the limit applied at all");

    for child in [&mut first, &mut second] {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
    }
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

/// Waits until `GET url` answers `status`.
async fn wait_for(client: &reqwest::Client, url: &str, status: u16, what: &str) {
    let started = Instant::now();
    while client
        .get(url)
        .send()
        .await
        .map(|r| r.status() != status)
        .unwrap_or(true)
    {
        assert!(started.elapsed() < Duration::from_secs(30), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_dedicated_application_runs_as_serve_app_processes_behind_the_gateway() {
    dedicated_instance_processes(None).await;
}

/// As above, with Redis and a Redis user per dedicated application: the gateway creates the
/// instance's user, and the instance, which connects as it, works with only its own keys.
#[tokio::test]
async fn a_dedicated_instance_connects_to_redis_as_its_own_application_user() {
    let url = std::env::var("AUTHSOME_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut admin = match client.get_multiplexed_async_connection().await {
        Ok(c) => c,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and Redis is unreachable at {url}: {e}")
        }
        Err(_) => return,
    };
    let prefix = format!("authsome-cli-acl-{}-{}:", std::process::id(), closed_port());
    let app = dedicated_instance_processes(Some((&url, &prefix))).await;
    let user = format!("{}{app}", prefix.replace(':', "-"));
    let rules: Vec<redis::Value> = redis::cmd("ACL")
        .arg("GETUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .unwrap();
    let described = format!("{rules:?}");
    assert!(
        described.contains(&format!("~{prefix}app:{app}:*")),
        "{described}"
    );
    // The instance's state is under its application's prefix, and nothing else was written.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("{prefix}app:{app}:"))),
        "{keys:?}"
    );
    let _: i64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut admin)
        .await
        .unwrap();
}

/// A gateway process and `serve --app` instance processes of one dedicated application,
/// optionally on Redis (url, prefix) with per-application users. Returns the application id.
async fn dedicated_instance_processes(redis: Option<(&str, &str)>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (gateway_port, instance_port) = (closed_port(), closed_port());
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    let upstream = format!("http://127.0.0.1:{instance_port}");
    let mut common = vec![
        ("AUTHSOME_PUBLIC_URL", gateway.as_str()),
        ("AUTHSOME_UPSTREAM_HEALTH_INTERVAL_MS", "100"),
        // The instance listens on loopback, which an upstream may reach only when listed.
        ("AUTHSOME_UPSTREAM_ALLOW", "127.0.0.1/32"),
    ];
    if let Some((url, prefix)) = redis {
        common.extend([
            ("AUTHSOME_REDIS_URL", url),
            ("AUTHSOME_REDIS_PREFIX", prefix),
            ("AUTHSOME_REDIS_APP_USERS", "true"),
        ]);
    }
    let init = run(dir.path(), &common, &["init", "--json"]);
    assert!(init.status.success(), "{}", stderr(&init));
    let init: Value = serde_json::from_str(stdout(&init).trim()).unwrap();
    let mk = init["managementKey"].as_str().unwrap().to_owned();
    let ws = init["workspaceId"].as_str().unwrap().to_owned();
    let start = |listen: String, args: &[&str]| {
        let mut envs = common.clone();
        envs.push(("AUTHSOME_LISTEN", listen.as_str()));
        authsome(dir.path(), &envs, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut gateway_process = start(format!("127.0.0.1:{gateway_port}"), &["serve"]);
    let client = reqwest::Client::new();
    wait_for(
        &client,
        &format!("{gateway}/ready"),
        200,
        "gateway never ready",
    )
    .await;
    let post = |path: &str, bearer: &str, body: Value| {
        client
            .post(format!("{gateway}{path}"))
            .bearer_auth(bearer)
            .json(&body)
            .send()
    };
    let app: Value = post(
        &format!("/control/v1/workspaces/{ws}/applications"),
        &mk,
        serde_json::json!({"name": "Own instance", "environment": "development",
                           "tenancy": "dedicated", "upstreams": [upstream]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let app = app["id"].as_str().expect("application created").to_owned();
    let pk: Value = post(
        &format!("/control/v1/applications/{app}/keys"),
        &mk,
        serde_json::json!({"type": "publishable"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let pk = pk["secret"].as_str().unwrap().to_owned();

    // `--app` must name an application that exists.
    for (bad, says) in [
        ("nope", "not an application id"),
        ("app_01jd4v0z3c8x2m5q7w9e1r6t0y", "not found"),
    ] {
        let o = run(
            dir.path(),
            &[("AUTHSOME_LISTEN", &format!("127.0.0.1:{}", closed_port()))],
            &["serve", "--app", bad],
        );
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("--app") && stderr(&o).contains(says),
            "{}",
            stderr(&o)
        );
    }

    let jwks = format!("{gateway}/v1/{app}/.well-known/jwks.json");
    // No instance yet: 503.
    let r = client.get(&jwks).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let mut instance = start(
        format!("127.0.0.1:{instance_port}"),
        &["serve", "--app", &app],
    );
    wait_for(&client, &jwks, 200, "the instance never came into rotation").await;
    let signup = post(
        &format!("/v1/{app}/auth/signup"),
        &pk,
        serde_json::json!({"email": "own@example.com", "password": "dedicated-1234"}),
    )
    .await
    .unwrap();
    assert_eq!(signup.status(), 201);
    assert_eq!(signup.headers()["x-authsome-app-id"], app.as_str());
    // The instance serves nothing else.
    let r = client
        .get(format!("{upstream}/control/v1/workspaces"))
        .bearer_auth(&mk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The instance dies: 503; it comes back: served again.
    instance.kill().unwrap();
    instance.wait().unwrap();
    let r = client.get(&jwks).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable");
    let mut instance = start(
        format!("127.0.0.1:{instance_port}"),
        &["serve", "--app", &app],
    );
    wait_for(&client, &jwks, 200, "the instance never came back").await;
    let signin = post(
        &format!("/v1/{app}/auth/signin"),
        &pk,
        serde_json::json!({"email": "own@example.com", "password": "dedicated-1234"}),
    )
    .await
    .unwrap();
    assert_eq!(signin.status(), 200);
    for child in [&mut instance, &mut gateway_process] {
        let _ = child.kill();
        let _ = child.wait();
    }
    app
}

/// Every directory and file under `dir` (itself included), with its permission bits.
#[cfg(unix)]
fn modes_under(dir: &Path) -> Vec<(std::path::PathBuf, u32, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        found.push((path, meta.permissions().mode() & 0o777, meta.is_dir()));
    }
    found
}

/// Another local user can read nothing of a deployment: the data directory is 0700 and every
/// file in it 0600, the databases' WAL and shared-memory files and the application databases
/// created while serving included.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_everything_in_it_are_private() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let init = run(&dir, &[], &["init", "--json"]);
    assert!(init.status.success(), "{}", stderr(&init));
    let init: Value = serde_json::from_str(stdout(&init).trim()).unwrap();
    let (mk, ws) = (
        init["managementKey"].as_str().unwrap(),
        init["workspaceId"].as_str().unwrap(),
    );
    let listen = format!("127.0.0.1:{}", closed_port());
    let mut child = authsome(&dir, &[("AUTHSOME_LISTEN", &listen)], &["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    wait_for(
        &client,
        &format!("http://{listen}/ready"),
        200,
        "never ready",
    )
    .await;
    let created = client
        .post(format!(
            "http://{listen}/control/v1/workspaces/{ws}/applications"
        ))
        .bearer_auth(mk)
        .json(&serde_json::json!({"name": "Private", "environment": "development"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // While it serves: the WAL and shared-memory files exist too.
    let modes = modes_under(&dir);
    let _ = child.kill();
    let _ = child.wait();
    let names: Vec<String> = modes
        .iter()
        .map(|(p, _, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "master.key",
        "authsome.db",
        "authsome.db-wal",
        "authsome.db-shm",
        "apps",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(
        modes
            .iter()
            .any(|(p, _, is_dir)| !is_dir && p.starts_with(dir.join("apps"))),
        "an application database in {modes:?}"
    );
    for (path, mode, is_dir) in &modes {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }

    // An existing directory open to others is named in a warning at start-up.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let again = run(&dir, &[], &["init"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("open to other users"),
        "{}",
        stderr(&again)
    );
}

/// Render's env vars as an in-test fake holds them (its real REST shape); while `hang` is set
/// a write never answers, as a provider that stalls mid-rotation.
#[derive(Default)]
struct StallingRender {
    vars: std::collections::BTreeMap<String, String>,
    writes: Vec<String>,
    hang: bool,
}

async fn stalling_render() -> (String, std::sync::Arc<std::sync::Mutex<StallingRender>>) {
    use axum::extract::{Path, State};
    use axum::routing::{get, put};
    type Shared = std::sync::Arc<std::sync::Mutex<StallingRender>>;
    let state: Shared = Default::default();
    let app = axum::Router::new()
        .route(
            "/services/srv-1/env-vars/{key}",
            put(
                |State(s): State<Shared>,
                 Path(key): Path<String>,
                 axum::Json(body): axum::Json<Value>| async move {
                    let value = body["value"].as_str().unwrap_or_default().to_owned();
                    let hang = {
                        let mut s = s.lock().unwrap();
                        s.writes.push(value.clone());
                        s.hang
                    };
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    s.lock().unwrap().vars.insert(key.clone(), value.clone());
                    axum::Json(serde_json::json!({"key": key, "value": value}))
                },
            ),
        )
        .route(
            "/services/srv-1/env-vars",
            get(|State(s): State<Shared>| async move {
                let list: Vec<Value> = s
                    .lock()
                    .unwrap()
                    .vars
                    .iter()
                    .map(
                        |(k, v)| serde_json::json!({"envVar": {"key": k, "value": v}, "cursor": k}),
                    )
                    .collect();
                axum::Json(Value::Array(list))
            }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

#[tokio::test]
async fn a_rotation_cut_off_by_a_killed_process_finishes_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let init = run(dir.path(), &[], &["init", "--json"]);
    let init: Value = serde_json::from_str(stdout(&init).trim()).unwrap();
    let key = init["managementKey"].as_str().unwrap().to_owned();
    let ws = init["workspaceId"].as_str().unwrap().to_owned();
    let (render_url, render) = stalling_render().await;
    let port = closed_port();
    let listen = format!("127.0.0.1:{port}");
    let base = format!("http://{listen}");
    let endpoints = format!("render={render_url}");
    let start = || {
        authsome(
            dir.path(),
            &[
                ("AUTHSOME_LISTEN", &listen),
                ("AUTHSOME_TARGET_ENDPOINTS", &endpoints),
                ("AUTHSOME_OUTBOUND_ALLOW", "127.0.0.1"),
            ],
            &["serve"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
    };
    let client = reqwest::Client::new();
    let wait_ready = || wait_ready(&client, &base);
    let call = |method: reqwest::Method, path: String, body: Value| {
        let request = client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&key);
        async move {
            let r = request.json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let mut server = start();
    wait_ready().await;
    use reqwest::Method;
    let (status, vault) = call(
        Method::POST,
        format!("/control/v1/workspaces/{ws}/vaults"),
        serde_json::json!({"name": "prod"}),
    )
    .await;
    assert_eq!(status, 201, "{vault}");
    let vault = vault["id"].as_str().unwrap().to_owned();
    for (path, body) in [
        (
            format!("/control/v1/workspaces/{ws}/providers/render"),
            serde_json::json!({"mode": "hosted", "config": {"vaultId": vault, "secret": "RENDER_TOKEN"},
                               "credential": "rnd_token"}),
        ),
        (
            format!("/control/v1/vaults/{vault}/secrets/API_TOKEN"),
            serde_json::json!({"value": "the-first-token"}),
        ),
        (
            format!("/control/v1/vaults/{vault}/secrets/API_TOKEN/rotation"),
            serde_json::json!({"generator": {"length": 32, "alphabet": "hex", "prefix": "tok_"},
                               "targets": [{"provider": "render",
                                            "config": {"serviceId": "srv-1", "key": "API_TOKEN"}}]}),
        ),
    ] {
        let (status, body) = call(Method::PUT, path, body).await;
        assert!(status == 200 || status == 201, "{body}");
    }
    render.lock().unwrap().hang = true;
    let (status, rotation) = call(
        Method::POST,
        format!("/control/v1/vaults/{vault}/secrets/API_TOKEN/rotations"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 202, "{rotation}");
    let id = rotation["id"].as_str().unwrap().to_owned();
    // The maintenance loop runs it: stored, then the push stalls at Render. Killed there.
    let started = Instant::now();
    while render.lock().unwrap().writes.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the push never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Command::new("kill")
        .args(["-KILL", &server.id().to_string()])
        .status()
        .unwrap();
    server.wait().unwrap();
    render.lock().unwrap().hang = false;

    // Restarted: once the dead worker's lease (a minute) ran out, the run resumes and ends.
    let mut server = start();
    wait_ready().await;
    let started = Instant::now();
    let done = loop {
        let (_, r) = call(
            Method::GET,
            format!("/control/v1/rotations/{id}"),
            Value::Null,
        )
        .await;
        if r["status"] == "succeeded" || r["status"] == "failed" {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "never finished: {r}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, value) = call(
        Method::GET,
        format!("/control/v1/vaults/{vault}/secrets/API_TOKEN/value"),
        Value::Null,
    )
    .await;
    assert_eq!(value["version"], 2, "stored once: {value}");
    let value = value["value"].as_str().unwrap().to_owned();
    let render = render.lock().unwrap();
    assert_eq!(render.vars.get("API_TOKEN"), Some(&value));
    assert!(
        render.writes.iter().all(|w| *w == value),
        "only that version was ever pushed"
    );
    drop(render);
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    server.wait().unwrap();
}
