//! Key verification throughput, single-threaded (so the figure is per core).
//!
//! `cargo bench -p authsome-control --bench key_verification`
//!
//! 1. the pure hot path: parse + CRC32 checksum + SHA-256 + cache lookup;
//! 2. the full `ControlPlane::verify_app_key` on a warm cache (also the application lookup,
//!    the usability checks and the `lastUsedAt` bookkeeping), on a current-thread runtime.
//!
//! Target: at least 200,000 verifications per second per core.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use authsome_control::{ControlPlane, ControlSettings, NewAppKey, NewApplication};
use authsome_domain::keys::{parse_key, KeyKind};
use authsome_domain::tenancy::Environment;
use authsome_storage::{SqliteStore, SystemRepository};

const ITERATIONS: u32 = 1_000_000;

fn report(name: &str, iterations: u32, elapsed: std::time::Duration) {
    let per_second = f64::from(iterations) / elapsed.as_secs_f64();
    let nanos = elapsed.as_nanos() as f64 / f64::from(iterations);
    println!("{name:<44} {per_second:>12.0} /s   {nanos:>8.0} ns/op");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The store's pool is dropped at the end, inside the runtime's context (declared first, so
    // dropped last).
    let _entered = runtime.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let (control, app_id, key) = runtime.block_on(async {
        let store = SqliteStore::open(&dir.path().join("bench.db"))
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        let control = ControlPlane::new(Arc::new(store), ControlSettings::default());
        let authsome_control::BootstrapResult::Created {
            workspace_id,
            management_key,
            ..
        } = control
            .bootstrap("bench@example.com", None)
            .await
            .expect("bootstrap")
        else {
            panic!("fresh database");
        };
        let actor = control.authenticate(&management_key).await.expect("actor");
        let app = control
            .create_application(
                &actor,
                &workspace_id,
                NewApplication {
                    name: "bench".into(),
                    slug: None,
                    environment: Environment::Production,
                    tenancy: None,
                    region: None,
                    config: None,
                    upstreams: None,
                },
            )
            .await
            .expect("application");
        let key = control
            .create_app_key(
                &actor,
                &app.id,
                NewAppKey {
                    kind: KeyKind::Secret,
                    name: None,
                    scopes: None,
                },
            )
            .await
            .expect("key");
        (control, app.id.to_string(), key.plaintext)
    });

    // Warm the cache once.
    runtime
        .block_on(control.verify_app_key(&app_id, &key))
        .expect("verifies");
    let cache = control.key_cache();

    let started = Instant::now();
    for _ in 0..ITERATIONS {
        let parsed = parse_key(black_box(&key)).expect("valid");
        let hit = cache.key(&parsed.hash());
        black_box(hit);
    }
    report(
        "parse + checksum + sha256 + cache lookup",
        ITERATIONS,
        started.elapsed(),
    );

    let started = Instant::now();
    for _ in 0..ITERATIONS {
        let mut bad = key.clone().into_bytes();
        bad[12] ^= 1;
        let bad = String::from_utf8(bad).unwrap_or_default();
        black_box(parse_key(black_box(&bad)).is_err());
    }
    report(
        "reject a typo (checksum, no lookup)",
        ITERATIONS,
        started.elapsed(),
    );

    let full = ITERATIONS / 4;
    let started = runtime.block_on(async {
        let started = Instant::now();
        for _ in 0..full {
            black_box(
                control
                    .verify_app_key(black_box(&app_id), black_box(&key))
                    .await
                    .ok(),
            );
        }
        started
    });
    report(
        "ControlPlane::verify_app_key (warm cache)",
        full,
        started.elapsed(),
    );
}
