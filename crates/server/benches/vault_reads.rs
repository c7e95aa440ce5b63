//! The credential vault's figures (issue 37), on SQLite and on Postgres:
//!
//! 1. Secret reads over HTTP by a machine principal with PoP auth (`Authorization: PoP <JWS>`,
//!    a fresh proof per read: signature, window, body digest, one-time `jti`), sequential over
//!    one kept-alive connection: reads per second of wall time, and per second of the server's
//!    CPU (this process less the client's thread; on Postgres also every `postgres` process,
//!    so run it on a quiet server). Target: at least 5,000 reads/s per core.
//! 2. The encryption's own share of a read: opening the workspace KEK under the master key, then
//!    unwrapping the data key and decrypting the value (µs per read; target under 5 µs); and
//!    the same with the KEK already open, as the server's KEK cache serves it.
//! 3. Background rewrap after a KEK rotation of `VAULT_REWRAP_VERSIONS` (default 100,000)
//!    secret versions: time, and the process's resident memory before and after (bounded: the
//!    work goes in batches, not proportional to the count).
//!
//! `cargo bench -p authsome-server --bench vault_reads`
//! (`VAULT_READS=20000`, `VAULT_ONLY=sqlite|postgres`, `VAULT_REWRAP_VERSIONS=100000`).

use std::sync::Arc;
use std::time::Instant;

use authsome_control::{PutSecret, VaultActor};
use authsome_domain::id::{VaultId, WorkspaceId};
use authsome_domain::master_key::MasterKey;

use authsome_storage::app::AppDatabaseConfig;
use authsome_storage::{PostgresStore, SqliteStore, Store};
use authsome_testkit::cpu::{self, Usage};
use authsome_vault::{Envelope, Kek, SecretContext};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use ed25519_dalek::Signer;
use serde_json::{json, Value};
use sha2::Digest;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
        / 1024.0
}

mod support;

use support::Server;

async fn start(store: Arc<dyn Store>, apps: AppDatabaseConfig) -> Server {
    support::start(store, apps, |_| {}).await
}

async fn call(
    client: &reqwest::Client,
    s: &Server,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let r = client
        .request(method, format!("{}{path}", s.base))
        .bearer_auth(&s.management_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

fn proof(key: &ed25519_dalek::SigningKey, kid: &str, url: &str, jti: usize) -> String {
    let claims = json!({
        "htm": "GET",
        "htu": url,
        "iat": chrono::Utc::now().timestamp(),
        "jti": format!("bench-{jti}"),
        "body_sha256": hex::encode(sha2::Sha256::digest(b"")),
    });
    let input = format!(
        "{}.{}",
        B64URL.encode(json!({"alg": "EdDSA", "kid": kid}).to_string()),
        B64URL.encode(claims.to_string())
    );
    format!(
        "{input}.{}",
        B64URL.encode(key.sign(input.as_bytes()).to_bytes())
    )
}

async fn reads(label: &str, s: &Server, postgres: bool, count: usize) {
    let client = reqwest::Client::new();
    let ws = &s.workspace;
    let vault = call(
        &client,
        s,
        reqwest::Method::POST,
        &format!("/control/v1/workspaces/{ws}/vaults"),
        json!({"name": "bench"}),
    )
    .await;
    let vault = vault["id"].as_str().unwrap().to_owned();
    call(
        &client,
        s,
        reqwest::Method::PUT,
        &format!("/control/v1/vaults/{vault}/secrets/DATABASE_URL"),
        json!({"value": "postgres://user:password@db.internal:5432/app"}),
    )
    .await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "x": B64URL.encode(key.verifying_key().as_bytes())});
    let principal = call(
        &client,
        s,
        reqwest::Method::POST,
        &format!("/control/v1/workspaces/{ws}/principals"),
        json!({"name": "bench", "publicKey": jwk}),
    )
    .await;
    let prn = principal["id"].as_str().unwrap().to_owned();
    call(
        &client,
        s,
        reqwest::Method::POST,
        &format!("/control/v1/principals/{prn}/bindings"),
        json!({"vaultId": vault, "permissions": ["read"]}),
    )
    .await;
    let path = format!("/control/v1/vaults/{vault}/secrets/DATABASE_URL/value");
    let url = format!("{}{path}", s.base);
    // Warm: connections, caches, the statement cache.
    for i in 0..500 {
        let r = client
            .get(&url)
            .header(
                "Authorization",
                format!("PoP {}", proof(&key, &prn, &url, i)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let client_before = cpu::thread();
    let before = Usage::now(postgres);
    let started = Instant::now();
    for i in 0..count {
        let r = client
            .get(&url)
            .header(
                "Authorization",
                format!("PoP {}", proof(&key, &prn, &url, 1_000 + i)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let wall = started.elapsed();
    let server_cpu = Usage::now(postgres)
        .since(&before)
        .saturating_sub(cpu::thread() - client_before);
    println!(
        "{label}: {count} PoP reads in {:.2} s: {:.0} reads/s wall; server CPU {:.1} µs/read = {:.0} reads/s per core",
        wall.as_secs_f64(),
        count as f64 / wall.as_secs_f64(),
        server_cpu.as_secs_f64() * 1e6 / count as f64,
        count as f64 / server_cpu.as_secs_f64(),
    );
}

fn encryption_share() {
    let master = MasterKey::generate();
    let ws = WorkspaceId::new();
    let vault = VaultId::new();
    let kek = Kek::generate(&ws, 1);
    let sealed_kek = kek.seal(&master);
    let ctx = SecretContext {
        workspace: &ws,
        vault: &vault,
        name: "DATABASE_URL",
        version: 1,
    };
    let bytes = Envelope::seal(&kek, ctx, b"postgres://user:password@db.internal:5432/app")
        .unwrap()
        .to_bytes();
    let n = 200_000;
    let started = Instant::now();
    for _ in 0..n {
        let kek = Kek::open(&master, &ws, 1, &sealed_kek).unwrap();
        let value = Envelope::from_bytes(&bytes)
            .unwrap()
            .open(&kek, ctx)
            .unwrap();
        std::hint::black_box(value);
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("encryption per read (KEK open + data key unwrap + value decrypt): {per:.2} µs");
    // What a read costs once the workspace's KEK is in the server's cache.
    let started = Instant::now();
    for _ in 0..n {
        let value = Envelope::from_bytes(&bytes)
            .unwrap()
            .open(&kek, ctx)
            .unwrap();
        std::hint::black_box(value);
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("encryption per read, KEK cached (data key unwrap + value decrypt): {per:.2} µs");
}

/// Refreshes the planner's statistics every this many writes on Postgres, as autovacuum does in
/// any default deployment (a test server may run with autovacuum off; without statistics the
/// planner reads a whole workspace's versions to find one secret's).
const ANALYZE_EVERY: usize = 10_000;
/// Concurrent writers while seeding the versions.
const WRITERS: usize = 16;

async fn rewrap(label: &str, s: &Server, versions: usize, postgres: Option<&str>) {
    let analyzer = match postgres {
        Some(url) => Some(
            sqlx::PgPool::connect(url)
                .await
                .expect("connect for ANALYZE"),
        ),
        None => None,
    };
    let control = &s.app.state.control;
    let actor = control.authenticate(&s.management_key).await.unwrap();
    let ws = WorkspaceId::parse(&s.workspace).unwrap();
    let vault = control
        .create_vault(
            &actor,
            &ws,
            serde_json::from_value(json!({"name": "rewrap", "maxVersions": 1000})).unwrap(),
        )
        .await
        .unwrap();
    let writer = VaultActor::Team(actor.clone());
    let started = Instant::now();
    let per_secret = 100;
    let secrets = versions.div_ceil(per_secret);
    let written = std::sync::atomic::AtomicUsize::new(0);
    // Writers on disjoint secrets, so their commits share the disk's flushes.
    use futures_util::StreamExt;
    futures_util::stream::iter(0..WRITERS)
        .for_each_concurrent(WRITERS, |w| {
            let (writer, vault, analyzer, written) = (&writer, &vault, &analyzer, &written);
            async move {
                for secret in (w..secrets).step_by(WRITERS) {
                    let count = per_secret.min(versions - secret * per_secret);
                    for v in 0..count {
                        let n = written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Some(pool) = analyzer.as_ref().filter(|_| n % ANALYZE_EVERY == 0) {
                            sqlx::query("ANALYZE").execute(pool).await.expect("ANALYZE");
                        }
                        let input: PutSecret =
                            serde_json::from_value(json!({"value": format!("value-{v}")})).unwrap();
                        control
                            .put_secret(writer, &vault.id, &format!("S{secret}"), input, None)
                            .await
                            .unwrap();
                    }
                }
            }
        })
        .await;
    println!(
        "{label}: wrote {versions} versions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(pool) = &analyzer {
        sqlx::query("ANALYZE").execute(pool).await.expect("ANALYZE");
    }
    let rss_before = resident_mib();
    control.rotate_keyring(&actor, &ws).await.unwrap();
    let started = Instant::now();
    // Until every version is rewrapped (the maintenance loop works beside this one; each
    // replacement checks the row, so the two never undo each other).
    let done = loop {
        if control.vault_key_work().await.unwrap() > 0 {
            continue;
        }
        let status = control.keyring(&actor, &ws).await.unwrap();
        if status.rewrap.done == status.rewrap.total {
            break status.rewrap.done;
        }
    };
    let took = started.elapsed();
    println!(
        "{label}: rewrapped {done} versions in {:.1} s ({:.0}/s); resident memory {:.0} MiB before, {:.0} MiB after",
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64(),
        rss_before,
        resident_mib(),
    );
}

fn main() {
    let only = std::env::var("VAULT_ONLY").ok();
    let count = env_number("VAULT_READS", 20_000);
    let versions = env_number("VAULT_REWRAP_VERSIONS", 100_000);
    encryption_share();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if only.as_deref() != Some("postgres") {
        let dir = tempfile::tempdir().unwrap();
        let server = runtime.block_on(async {
            let store: Arc<dyn Store> =
                Arc::new(SqliteStore::open(&dir.path().join("cp.db")).await.unwrap());
            start(
                store,
                AppDatabaseConfig::Sqlite {
                    dir: dir.path().join("apps"),
                },
            )
            .await
        });
        // The client on this thread, the server on the runtime's workers.
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        client.block_on(reads("sqlite", &server, false, count));
        runtime.block_on(rewrap("sqlite", &server, versions, None));
    }
    if only.as_deref() != Some("sqlite") {
        let db = runtime.block_on(authsome_testkit::TestDatabase::create());
        let Some(db) = db else {
            println!("postgres: skipped (AUTHSOME_TEST_POSTGRES_URL unreachable)");
            return;
        };
        let server = runtime.block_on(async {
            let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
            start(
                store,
                AppDatabaseConfig::Postgres {
                    server_url: db.url.clone(),
                },
            )
            .await
        });
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        client.block_on(reads("postgres", &server, true, count));
        runtime.block_on(rewrap("postgres", &server, versions, Some(&db.url)));
    }
}
