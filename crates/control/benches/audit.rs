//! Audit log throughput and the cost of auditing a write, on SQLite and on Postgres.
//!
//! `cargo bench -p authsome-control --bench audit`
//!
//! 1. Appends: events queued for one workspace, written by the audit writer with the hash
//!    chain, the canonical encoding, the Merkle leaf and the compact range maintained, timed
//!    until all are stored. Target: at least 10,000 entries per second.
//! 2. Overhead on a control-plane write, in rounds of a block of plain writes and a block of
//!    audited ones, either first (the median round and the interquartile range of the rounds
//!    are reported),
//!    timed until the audited writes returned (their latency; the log's writer, lingering,
//!    appends their entries only after that) and until the log held their entries (all the
//!    work auditing adds; sustained writes pay more still, see `control_write`'s sustained
//!    measurement):
//!    a. the bare storage write (`update_workspace`), plain vs with its outbox row and the
//!    writer's append;
//!    b. the control-plane operation (`ControlPlane::update_workspace`: access check, then the
//!    audited write), against the same storage statements without the audit.
//!    Target: under 10%.
//!    Besides the times, the CPU used per write over all blocks (this process, which holds
//!    SQLite; on Postgres also every `postgres` process, from /proc, so run it on a quiet
//!    server): steadier than wall time on a shared machine, and it counts the writer's work
//!    however that overlaps the writes.
//!
//! Postgres comes from `AUTHSOME_TEST_POSTGRES_URL` (a throwaway database is created); it is
//! skipped with a message when unreachable.
//!
//! For counting instructions under callgrind (`scripts/bench-audit-instructions.sh`), three
//! knobs: `AUDIT_BENCH_ROUNDS` (default 150); `AUDIT_BENCH_ONLY=plain|audited|answered`, which
//! runs only that kind of block of the control-plane operation (no appends, no storage write;
//! `answered`: audited blocks not waited for, so only the write's own path is counted while the
//! writer lingers, which it then must for longer than the run); and
//! `AUDIT_BENCH_LINGER_MS`, the writer's wait for more events (under callgrind a block takes
//! fifty times longer, so the product's 250 ms would split it into several batches).

use std::sync::Arc;
use std::time::{Duration, Instant};

use authsome_control::audit::{AuditLog, AuditSettings};
use authsome_control::{ControlPlane, ControlSettings, WorkspacePatch};
use authsome_domain::event::{DomainEvent, EventSink, StoredIn};
use authsome_domain::id::{AccountId, MemberId, WorkspaceId};
use authsome_domain::master_key::MasterKey;
use authsome_domain::tenancy::{
    Actor, KycStatus, Member, MemberStatus, PaymentStatus, Plan, Role, Workspace, WorkspaceLimits,
    WorkspaceStatus,
};
use authsome_storage::outbox::{Outbox, OutboxRow};
use authsome_storage::{PostgresStore, SqliteStore, Store, SystemRepository};
use authsome_testkit::cpu::{self, Usage};
use authsome_testkit::rounds::Rounds;

/// The allocator of the `authsome` binary, so the measured work allocates as the server does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const APPENDS: usize = 50_000;
/// Rounds of the overhead measurement, each a block of plain writes then a block of audited ones.
/// Many, because one round's ratio swings by tens of percent on a shared virtual machine; the
/// median of 150 moves by a few points from run to run.
const ROUNDS: usize = 150;
/// Writes per block.
const BLOCK: usize = 100;

/// Stops the benchmark over a knob it cannot read.
fn refuse(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}

/// What the environment asks of this run (see the module's documentation).
#[derive(Clone, Copy)]
struct Knobs {
    rounds: usize,
    /// Only the control-plane operation's blocks of this kind (`true`: audited).
    only: Option<bool>,
    /// Audited blocks are not waited for until the log holds their entries.
    unlogged: bool,
    linger: Option<Duration>,
}

impl Knobs {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str| {
            var(name).map(|v| {
                v.parse::<u64>().unwrap_or_else(|_| {
                    refuse(&format!("{name} must be a whole number, not {v:?}"))
                })
            })
        };
        let only = var("AUDIT_BENCH_ONLY");
        Self {
            rounds: number("AUDIT_BENCH_ROUNDS").map_or(ROUNDS, |n| n as usize),
            only: only.as_deref().map(|v| match v {
                "plain" => false,
                "audited" | "answered" => true,
                other => refuse(&format!(
                    "AUDIT_BENCH_ONLY must be plain, audited or answered, not {other:?}"
                )),
            }),
            unlogged: only.as_deref() == Some("answered"),
            linger: number("AUDIT_BENCH_LINGER_MS").map(Duration::from_millis),
        }
    }

    /// The kinds of block of a round (`true`: audited), in order (see
    /// `authsome_testkit::rounds::audited_first`).
    fn blocks(&self, round: usize) -> Vec<bool> {
        if let Some(only) = self.only {
            return vec![only];
        }
        let audited_first = authsome_testkit::rounds::audited_first(round);
        vec![audited_first, !audited_first]
    }
}

fn workspace() -> (Workspace, Member) {
    let now = authsome_domain::now();
    let id = WorkspaceId::new();
    let ws = Workspace {
        id: id.clone(),
        name: "Bench".into(),
        slug: format!("bench-{}", &id.to_string()[3..13]),
        plan: Plan::Pro,
        status: WorkspaceStatus::Active,
        kyc_status: KycStatus::Completed,
        payment_status: PaymentStatus::Current,
        metadata: serde_json::json!({}),
        limits: WorkspaceLimits::default(),
        root: false,
        created_at: now,
        updated_at: now,
    };
    let owner = Member {
        id: MemberId::new(),
        workspace_id: id,
        account_id: AccountId::new(),
        email: String::new(),
        name: None,
        role: Role::Owner,
        status: MemberStatus::Active,
        created_at: now,
        updated_at: now,
    };
    (ws, owner)
}

async fn entries(store: &Arc<dyn Store>, ws: &WorkspaceId) -> u64 {
    store
        .audit_head(ws)
        .await
        .ok()
        .flatten()
        .map_or(0, |h| h.size)
}

async fn run(backend: &str, store: Arc<dyn Store>, knobs: Knobs) {
    let mut settings = AuditSettings::for_public_url("http://bench.local");
    if let Some(linger) = knobs.linger {
        settings.linger = linger;
        settings.linger_stored = linger;
    }
    let audit = AuditLog::new(store.clone(), Arc::new(MasterKey::generate()), settings);
    audit.spawn_writer();
    if knobs.only.is_none() {
        appends(backend, &store, &audit).await;
    }
    overhead(backend, &store, &audit, knobs).await;
}

/// 1. Appends.
async fn appends(backend: &str, store: &Arc<dyn Store>, audit: &Arc<AuditLog>) {
    let (ws, _) = workspace();
    let used = cpu::process();
    let started = Instant::now();
    for i in 0..APPENDS {
        audit.record(
            DomainEvent::new("workspace.updated")
                .workspace(&ws.id)
                .target(format!("bench-{i}"))
                .change("name", "Bench"),
        );
    }
    audit.flush().await;
    let elapsed = started.elapsed();
    let cpu = cpu::process().saturating_sub(used);
    assert_eq!(entries(store, &ws.id).await, APPENDS as u64);
    println!(
        "{backend:<9} audit appends (chain + Merkle tree) {:>9.0} entries/s, {:.1} µs CPU per \
         entry in this process{}",
        APPENDS as f64 / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / APPENDS as f64,
        if backend == "postgres" {
            " (the server's not counted)"
        } else {
            ""
        }
    );
}

/// 2. Overhead on a write.
async fn overhead(backend: &str, store: &Arc<dyn Store>, audit: &Arc<AuditLog>, knobs: Knobs) {
    let (ws, owner) = workspace();
    store
        .create_account(
            &authsome_domain::tenancy::Account {
                id: owner.account_id.clone(),
                email: format!("{}@bench.local", owner.id),
                name: None,
                created_at: ws.created_at,
            },
            None,
        )
        .await
        .expect("account");
    store
        .create_workspace(&ws, &owner, &Outbox::empty())
        .await
        .expect("workspace");
    // Plain and audited blocks alternate, so the machine's drift (other load, frequency, a
    // neighbour on the host) falls on both alike. Either may start a round, in a fixed
    // pseudo-random order, so that work one block sets off and the next one meets (the SQLite
    // store checkpoints every two hundred writes) falls on both kinds too. Each audited block
    // is timed until the log holds its entries.
    let postgres = backend == "postgres";
    let mut storage = Rounds::new(BLOCK);
    let mut plain = ws.clone();
    // a. The bare storage write.
    let storage_rounds = if knobs.only.is_some() {
        0
    } else {
        knobs.rounds
    };
    for round in 0..storage_rounds {
        for audited in knobs.blocks(round) {
            let used = Usage::now(postgres);
            let before = entries(store, &ws.id).await;
            let started = Instant::now();
            if !audited {
                for i in 0..BLOCK {
                    plain.name = format!("Plain {round}.{i}");
                    store
                        .update_workspace(&plain, &Outbox::empty())
                        .await
                        .expect("write");
                }
                storage.plain(started.elapsed(), Usage::now(postgres).since(&used));
                continue;
            }
            for i in 0..BLOCK {
                plain.name = format!("Audited {round}.{i}");
                let event = DomainEvent::new("workspace.updated")
                    .workspace(&ws.id)
                    .target(&ws.id)
                    .change("name", plain.name.clone());
                let outbox = Outbox::new(vec![OutboxRow::of(&event)]);
                store
                    .update_workspace(&plain, &outbox)
                    .await
                    .expect("write");
                assert!(outbox.stored());
                audit.record_stored(event, StoredIn::ControlPlane);
            }
            let answered = started.elapsed();
            audit.flush().await;
            storage.audited(
                answered,
                started.elapsed(),
                Usage::now(postgres).since(&used),
            );
            assert_eq!(entries(store, &ws.id).await, before + BLOCK as u64);
        }
    }
    if storage_rounds > 0 {
        storage.report(&format!("{backend:<9} storage write           "), postgres);
    }

    // b. The whole control-plane operation.
    let control = ControlPlane::new(store.clone(), ControlSettings::default())
        .with_events(Arc::new(Recorder(audit.clone())));
    // As in every deployment, the root workspace exists (`authsome init`), so the access check
    // finds the root's id cached rather than asking the database each time.
    control
        .bootstrap(
            "root@bench.local",
            Some("bench-root-password-0123456789".into()),
        )
        .await
        .expect("bootstrap");
    let actor = Actor::Account(owner.account_id.clone());
    let mut operation = Rounds::new(BLOCK);
    for round in 0..knobs.rounds {
        for audited in knobs.blocks(round) {
            let used = Usage::now(postgres);
            let before = entries(store, &ws.id).await;
            let started = Instant::now();
            if !audited {
                for i in 0..BLOCK {
                    // What the operation does, without its audit: the access check and the
                    // write.
                    let (mut current, _) = store
                        .workspace_access(&actor, &ws.id)
                        .await
                        .expect("access")
                        .expect("member");
                    current.name = format!("Plain op {round}.{i}");
                    current.updated_at = authsome_domain::now();
                    store
                        .update_workspace(&current, &Outbox::empty())
                        .await
                        .expect("write");
                }
                operation.plain(started.elapsed(), Usage::now(postgres).since(&used));
                continue;
            }
            for i in 0..BLOCK {
                control
                    .update_workspace(
                        &actor,
                        &ws.id,
                        WorkspacePatch {
                            name: Some(format!("Audited op {round}.{i}")),
                            slug: None,
                            metadata: None,
                        },
                    )
                    .await
                    .expect("update");
            }
            let answered = started.elapsed();
            if knobs.unlogged {
                let used = Usage::now(postgres).since(&used);
                operation.audited(answered, answered, used);
                continue;
            }
            audit.flush().await;
            operation.audited(
                answered,
                started.elapsed(),
                Usage::now(postgres).since(&used),
            );
            assert_eq!(entries(store, &ws.id).await, before + BLOCK as u64);
        }
    }
    match knobs.only {
        None => operation.report(&format!("{backend:<9} control-plane operation "), postgres),
        Some(audited) => operation.report_one(
            &format!(
                "{backend:<9} control-plane operation{}",
                if knobs.unlogged { " (answered)" } else { " " }
            ),
            audited,
        ),
    }
}

/// The server's event sink, reduced to what the audit needs.
struct Recorder(Arc<AuditLog>);

impl EventSink for Recorder {
    fn emit(&self, event: DomainEvent) {
        self.0.record(event);
    }

    fn emit_stored(&self, event: DomainEvent, stored_in: StoredIn) {
        self.0.record_stored(event, stored_in);
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = SqliteStore::open(&dir.path().join("bench.db"))
            .await
            .expect("open");
        sqlite.migrate().await.expect("migrate");
        let knobs = Knobs::from_env();
        run("sqlite", Arc::new(sqlite), knobs).await;
        match authsome_testkit::TestDatabase::create().await {
            Some(db) => {
                let pg = PostgresStore::connect(&db.url).await.expect("connect");
                pg.migrate().await.expect("migrate");
                run("postgres", Arc::new(pg), knobs).await;
            }
            None => println!("postgres  skipped: not reachable"),
        }
    });
}
