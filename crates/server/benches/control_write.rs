//! What auditing adds to a control-plane write as its caller sees it, on SQLite and on Postgres.
//!
//! `cargo bench -p authsome-server --bench control_write`
//!
//! Two servers run in this process, each the real router on 127.0.0.1 with its own database and
//! its root workspace bootstrapped: one as deployed, with the audit log (every write commits its
//! event to the audit outbox in its own transaction, and the log's writer appends it to the
//! hash chain and the Merkle tree), and one whose control plane is the unaudited baseline
//! (`ControlPlane::unaudited_baseline`, a benchmark-only cargo feature), so the same writes
//! store no event at all. A client
//! on this thread, over one kept-alive connection to each, sends
//! `PATCH /control/v1/workspaces/{wsId}` (a new name, as the workspace's management key) in
//! rounds of a block of writes to each server, either first. Reported, per write: the time
//! until the audited writes were answered, and until the log held their entries (all the work
//! auditing adds), against the unaudited server's answers (the median round's overhead and the
//! interquartile range of the rounds); and the CPU the servers used (this process less the
//! client's thread; on Postgres also every `postgres` process, so run it on a quiet server).
//! Target: under 10%.
//!
//! Two measurements of that kind. In the first (150 rounds of 100 writes to each server), an
//! audited block is answered before the log's writer appends its entries (it waits a quarter of
//! a second for more), so the answered figure leaves the writer's work out; the logged and CPU
//! figures hold it. The second, "sustained" (12 rounds of 2,000 writes), has blocks long enough
//! that the writer appends while the writes go on, on the same CPUs (and on SQLite, the same
//! write connection), as it does under steady traffic: there even the answered figure holds
//! most of the writer's work.
//!
//! `cargo bench -p authsome-control --bench audit` measures the same write one layer down
//! (the `ControlPlane` call and the bare storage write), where no HTTP, authentication or
//! JSON surrounds it, and the audit's appends per second.
//!
//! Postgres comes from `AUTHSOME_TEST_POSTGRES_URL` (throwaway databases are created); it is
//! skipped with a message when unreachable. On Postgres a third line splits the CPU: this
//! process's share (the servers' Rust) against Postgres's.
//!
//! Knobs: `CONTROL_WRITE_ONLY=sqlite` (or `postgres`) measures one backend only;
//! `CONTROL_WRITE_PROFILE=plain` (or `audited`) instead runs three passes of 24,000 writes to
//! that one server alone, for a profiler (`perf record`) to watch, and prints each pass's time
//! and CPU per write, then the context switches per write of each kind of thread.
//! `CONTROL_WRITE_KIND` picks the writes, sent in turn: `rename` (the workspace, the default),
//! `application` (rename an application), `keys` (create a secret key for it, roll it, revoke its
//! successor), or `mix` (all five).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authsome_control::{BootstrapResult, ControlPlane, ControlSettings};
use authsome_domain::id::WorkspaceId;
use authsome_server::events::EventBus;
use authsome_server::{App, AppState, Settings};
use authsome_storage::app::AppDatabaseConfig;
use authsome_storage::{PostgresStore, SqliteStore, Store};
use authsome_testkit::cpu::{self, Usage};
use authsome_testkit::rounds::Rounds;
use tokio::runtime::Runtime;

/// The allocator of the `authsome` binary, so the servers allocate as it does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rounds, each a block of writes to each server. Many, because one round's ratio swings by
/// tens of percent on a shared virtual machine.
const ROUNDS: usize = 150;
/// Writes per block.
const BLOCK: usize = 100;
/// Rounds of the sustained measurement, and its writes per block: a block long enough (half a
/// second and more) that the log's writer appends, every quarter of a second, while the writes
/// go on, as it does under steady traffic.
const SUSTAINED_ROUNDS: usize = 12;
const SUSTAINED_BLOCK: usize = 2_000;
/// Passes of `SUSTAINED_ROUNDS * SUSTAINED_BLOCK` writes in the profile mode.
const PROFILE_PASSES: usize = 3;

/// One control-plane write, each with its own audit event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `PATCH /control/v1/workspaces/{wsId}` with a new name: the cheapest audited write.
    RenameWorkspace,
    /// `PATCH /control/v1/applications/{appId}` with a new name.
    RenameApplication,
    /// `POST /control/v1/applications/{appId}/keys`: a secret key.
    CreateKey,
    /// `POST /control/v1/applications/{appId}/keys/{keyId}/roll`: the key created just before,
    /// replaced by a new one (the old works on through its grace period).
    RollKey,
    /// `DELETE /control/v1/applications/{appId}/keys/{keyId}`: the key created (or rolled to)
    /// just before.
    RevokeKey,
}

/// Which writes the client sends, in turn (`CONTROL_WRITE_KIND`): `rename` (the default),
/// `application`, `keys` or `mix` (all five).
struct Kind {
    label: &'static str,
    turns: &'static [Op],
}

impl Kind {
    fn from_env() -> Self {
        use Op::*;
        let (label, turns): (_, &[Op]) = match std::env::var("CONTROL_WRITE_KIND").as_deref() {
            Err(_) | Ok("rename") => ("PATCH workspace (HTTP)", &[RenameWorkspace]),
            Ok("application") => ("PATCH application (HTTP)", &[RenameApplication]),
            Ok("keys") => (
                "create/roll/revoke key (HTTP)",
                &[CreateKey, RollKey, RevokeKey],
            ),
            Ok("mix") => (
                "mixed writes (HTTP)",
                &[
                    RenameWorkspace,
                    RenameApplication,
                    CreateKey,
                    RollKey,
                    RevokeKey,
                ],
            ),
            Ok(other) => {
                panic!("CONTROL_WRITE_KIND must be rename, application, keys or mix, not {other:?}")
            }
        };
        Self { label, turns }
    }
}

/// One server and what the client needs to write to it.
struct Server {
    state: AppState,
    workspace: WorkspaceId,
    key: String,
    /// An application of the workspace (the mix renames it and keys it).
    application: String,
    turns: &'static [Op],
    /// Writes sent so far (whose turn it is).
    sent: usize,
    /// The key created (or rolled to) last, which the next key write rolls or revokes.
    created_key: Option<String>,
    client: Client,
    /// Keeps the database (a temporary directory, a throwaway Postgres database).
    _guard: Box<dyn std::any::Any>,
}

impl Server {
    /// Serves a freshly migrated `store`; `audited: false` swaps the control plane for the
    /// unaudited baseline.
    fn start(
        runtime: &Runtime,
        store: Arc<dyn Store>,
        apps: AppDatabaseConfig,
        audited: bool,
        turns: &'static [Op],
        guard: Box<dyn std::any::Any>,
    ) -> Self {
        let (state, workspace, key, addr) = runtime.block_on(async {
            store.migrate().await.expect("migrate");
            let BootstrapResult::Created {
                workspace_id,
                management_key,
                ..
            } = ControlPlane::new(store.clone(), ControlSettings::default())
                .bootstrap("root@bench.local", None)
                .await
                .expect("bootstrap")
            else {
                panic!("a fresh database was already bootstrapped");
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("address");
            let mut settings = Settings::new(store.clone(), apps, format!("http://{addr}"));
            settings.open_applications = 64;
            let mut app = App::build(settings).await.expect("the server builds");
            if !audited {
                let shared = Arc::get_mut(&mut app.state).expect("the state is not shared yet");
                let control = std::mem::replace(
                    &mut shared.control,
                    ControlPlane::new(store.clone(), ControlSettings::default()),
                );
                shared.control = control
                    .with_events(Arc::new(EventBus::new(4096)))
                    .unaudited_baseline();
            }
            app.start();
            let state = app.state.clone();
            let router = authsome_server::router(state.clone());
            tokio::spawn(authsome_server::serve(
                listener,
                state.clone(),
                router,
                std::future::pending(),
            ));
            (state, workspace_id, management_key, addr)
        });
        let mut client = Client::connect(addr);
        let path = format!("/control/v1/workspaces/{workspace}/applications");
        let body = r#"{"name":"Bench","environment":"development"}"#;
        let status = client.send("POST", &path, &key, Some(body));
        assert_eq!(status, 201, "POST {path} answered {status}");
        let application = client.field("id");
        Self {
            state,
            workspace,
            key,
            application,
            turns,
            sent: 0,
            created_key: None,
            client,
            _guard: guard,
        }
    }

    /// The next write in turn (`name` for a rename or a key); panics unless the server
    /// answered with success.
    fn write(&mut self, name: &str) {
        let turn = self.turns[self.sent % self.turns.len()];
        self.sent += 1;
        let (method, path, body, expect) = match turn {
            Op::RenameWorkspace => (
                "PATCH",
                format!("/control/v1/workspaces/{}", self.workspace),
                Some(format!(r#"{{"name":"{name}"}}"#)),
                200,
            ),
            Op::RenameApplication => (
                "PATCH",
                format!("/control/v1/applications/{}", self.application),
                Some(format!(r#"{{"name":"{name}"}}"#)),
                200,
            ),
            Op::CreateKey => (
                "POST",
                format!("/control/v1/applications/{}/keys", self.application),
                Some(format!(r#"{{"type":"secret","name":"{name}"}}"#)),
                201,
            ),
            Op::RollKey => {
                let key = self
                    .created_key
                    .take()
                    .expect("the turn before created a key");
                (
                    "POST",
                    format!(
                        "/control/v1/applications/{}/keys/{key}/roll",
                        self.application
                    ),
                    None,
                    201,
                )
            }
            Op::RevokeKey => {
                let key = self
                    .created_key
                    .take()
                    .expect("the turn before created a key");
                (
                    "DELETE",
                    format!("/control/v1/applications/{}/keys/{key}", self.application),
                    None,
                    200,
                )
            }
        };
        let status = self.client.send(method, &path, &self.key, body.as_deref());
        assert_eq!(status, expect, "{method} {path} answered {status}");
        if method == "POST" {
            self.created_key = Some(self.client.field("id"));
        }
    }

    /// Entries in the workspace's audit log.
    fn entries(&self, runtime: &Runtime) -> u64 {
        runtime
            .block_on(self.state.control.store().audit_head(&self.workspace))
            .expect("audit head")
            .map_or(0, |h| h.size)
    }
}

/// A minimal HTTP/1.1 client over one kept-alive connection, so the client's own work stays
/// small next to the servers'.
struct Client {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
    /// Where the last response's body is in `buf`.
    body: std::ops::Range<usize>,
}

impl Client {
    fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Self {
            stream,
            host: addr.to_string(),
            buf: Vec::with_capacity(8192),
            body: 0..0,
        }
    }

    /// A string field of the last response's JSON body.
    fn field(&self, name: &str) -> String {
        let body: serde_json::Value =
            serde_json::from_slice(&self.buf[self.body.clone()]).expect("a JSON body");
        body[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name:?} in {body}"))
            .to_owned()
    }

    /// Sends one request (with a JSON body, if any) and reads the whole response; its status.
    /// The response's body stays readable with [`Client::field`].
    fn send(&mut self, method: &str, path: &str, token: &str, body: Option<&str>) -> u16 {
        let body = body.unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             User-Agent: authsome-bench/1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.stream
            .write_all(request.as_bytes())
            .expect("send request");
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) =
                response.parse(&self.buf).expect("a valid response head")
            {
                let status = response.code.expect("a status");
                let length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .expect("a Content-Length");
                while self.buf.len() < head + length {
                    let n = self.stream.read(&mut chunk).expect("read response");
                    assert!(n > 0, "the server closed the connection");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                self.body = head..head + length;
                return status;
            }
            let n = self.stream.read(&mut chunk).expect("read response");
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// CPU the servers used since `before`: this process's (and Postgres's) less the client's
/// thread.
fn servers_cpu(postgres: bool, before: &(Usage, Duration)) -> Duration {
    Usage::now(postgres)
        .since(&before.0)
        .saturating_sub(cpu::thread().saturating_sub(before.1))
}

/// CPU this process used since `before`, less the client's thread (since `client_before`).
fn own_cpu(before: Duration, client_before: Duration) -> Duration {
    cpu::process()
        .saturating_sub(before)
        .saturating_sub(cpu::thread().saturating_sub(client_before))
}

fn run(runtime: &Runtime, backend: &str, mut plain: Server, mut audited: Server) {
    if let Ok(which) = std::env::var("CONTROL_WRITE_PROFILE") {
        let server = match which.as_str() {
            "plain" => &mut plain,
            "audited" => &mut audited,
            other => panic!("CONTROL_WRITE_PROFILE must be plain or audited, not {other:?}"),
        };
        profile(runtime, backend, server, &which);
        return;
    }
    // Connections, caches and prepared statements warm on both before anything is timed.
    for i in 0..BLOCK {
        plain.write(&format!("Warm {i}"));
        audited.write(&format!("Warm {i}"));
    }
    runtime.block_on(audited.state.audit.flush());
    let plain_entries = plain.entries(runtime);
    let label = format!("{backend:<9} {}", Kind::from_env().label);
    let postgres = backend == "postgres";
    for (rounds, block, label) in [
        (ROUNDS, BLOCK, label.clone()),
        (
            SUSTAINED_ROUNDS,
            SUSTAINED_BLOCK,
            format!("{label}, sustained"),
        ),
    ] {
        let (measured, process) =
            measure(runtime, backend, &mut plain, &mut audited, rounds, block);
        measured.report(&label, postgres);
        if postgres {
            let per = |d: Duration| d.as_secs_f64() * 1e6 / (rounds * block) as f64;
            println!(
                "{label}  of which this process's (the rest Postgres's): plain {:>6.1} µs | \
                 audited {:>6.1} µs",
                per(process[0]),
                per(process[1])
            );
        }
    }
    // The baseline wrote no audit entries: what it measured is the write without its audit.
    assert_eq!(plain.entries(runtime), plain_entries);
}

/// Sustained writes to one server only, for a profiler to watch (`CONTROL_WRITE_PROFILE`):
/// per write, the time and the CPU of this process (less the client) and of Postgres.
fn profile(runtime: &Runtime, backend: &str, server: &mut Server, which: &str) {
    let postgres = backend == "postgres";
    for i in 0..BLOCK {
        server.write(&format!("Warm {i}"));
    }
    runtime.block_on(server.state.audit.flush());
    let switches_before = thread_switches();
    let writes = SUSTAINED_ROUNDS * SUSTAINED_BLOCK;
    // Several passes, to show what a growing database does to the figures.
    for pass in 0..PROFILE_PASSES {
        let before = (Usage::now(postgres), cpu::thread());
        let own_before = cpu::process();
        let started = Instant::now();
        for i in 0..writes {
            server.write(&format!("Profile {pass}.{i}"));
        }
        runtime.block_on(server.state.audit.flush());
        let elapsed = started.elapsed();
        let all = servers_cpu(postgres, &before);
        let process = own_cpu(own_before, before.1);
        let per = |d: Duration| d.as_secs_f64() * 1e6 / writes as f64;
        let split = if postgres {
            format!(
                " (this process {:.1}, Postgres {:.1})",
                per(process),
                per(all.saturating_sub(process))
            )
        } else {
            String::new()
        };
        println!(
            "{backend} {which} pass {pass}: {writes} writes, {:.1} µs each; CPU {:.1} µs{split}",
            per(elapsed),
            per(all),
        );
    }
    // Thread hand-offs cost CPU that no user-space profile shows: the context switches of this
    // process's threads per write, by thread name (voluntary: it waited; involuntary: it was
    // preempted).
    let writes = (PROFILE_PASSES * writes) as f64;
    for (name, (voluntary, involuntary)) in thread_switches() {
        let (v0, i0) = switches_before.get(&name).copied().unwrap_or((0, 0));
        println!(
            "{backend} {which} context switches per write, {name} threads: {:.2} voluntary, \
             {:.2} involuntary",
            voluntary.saturating_sub(v0) as f64 / writes,
            involuntary.saturating_sub(i0) as f64 / writes,
        );
    }
}

/// Context switches (voluntary, involuntary) of this process's threads so far, summed by
/// thread name, from /proc (empty elsewhere).
fn thread_switches() -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let count = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let entry: &mut (u64, u64) = by_name.entry(name.trim().to_owned()).or_default();
        entry.0 += count("voluntary_ctxt_switches:");
        entry.1 += count("nonvoluntary_ctxt_switches:");
    }
    by_name
}

/// `rounds` rounds of a block of `block` writes to each server. Each audited block is timed
/// until its last write was answered, then until the log held all its entries (a flush, so
/// that none of its work falls into the next block).
fn measure(
    runtime: &Runtime,
    backend: &str,
    plain: &mut Server,
    audited: &mut Server,
    rounds: usize,
    block: usize,
) -> (Rounds, [Duration; 2]) {
    let postgres = backend == "postgres";
    let mut measured = Rounds::new(block);
    // This process's share of the CPU (the rest is Postgres's), plain and audited.
    let mut process = [Duration::ZERO; 2];
    for round in 0..rounds {
        // Either block may go first (in a fixed pseudo-random order), so that work one block
        // sets off and the next one meets (checkpoints, the machine's drift) falls on both kinds
        // alike.
        let audited_first = authsome_testkit::rounds::audited_first(round);
        for is_audited in [audited_first, !audited_first] {
            let entries = if is_audited {
                audited.entries(runtime)
            } else {
                0
            };
            let before = (Usage::now(postgres), cpu::thread());
            let own_before = cpu::process();
            let started = Instant::now();
            if !is_audited {
                for i in 0..block {
                    plain.write(&format!("Plain {block}.{round}.{i}"));
                }
                measured.plain(started.elapsed(), servers_cpu(postgres, &before));
                process[0] += own_cpu(own_before, before.1);
                continue;
            }
            for i in 0..block {
                audited.write(&format!("Audited {block}.{round}.{i}"));
            }
            let answered = started.elapsed();
            runtime.block_on(audited.state.audit.flush());
            measured.audited(answered, started.elapsed(), servers_cpu(postgres, &before));
            process[1] += own_cpu(own_before, before.1);
            assert_eq!(audited.entries(runtime), entries + block as u64);
        }
    }
    (measured, process)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let turns = Kind::from_env().turns;
    let sqlite = |audited: bool| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = runtime
            .block_on(SqliteStore::open(&dir.path().join("cp.db")))
            .expect("open");
        let apps = AppDatabaseConfig::Sqlite {
            dir: dir.path().join("apps"),
        };
        Server::start(
            &runtime,
            Arc::new(store),
            apps,
            audited,
            turns,
            Box::new(dir),
        )
    };
    // `CONTROL_WRITE_ONLY=sqlite` or `=postgres` measures one backend.
    let only = std::env::var("CONTROL_WRITE_ONLY").unwrap_or_default();
    if only != "postgres" {
        run(&runtime, "sqlite", sqlite(false), sqlite(true));
    }
    if only == "sqlite" {
        return;
    }

    let postgres = |audited: bool| {
        let db = runtime.block_on(authsome_testkit::TestDatabase::create())?;
        let store = runtime
            .block_on(PostgresStore::connect(&db.url))
            .expect("connect");
        let apps = AppDatabaseConfig::Postgres {
            server_url: db.url.clone(),
        };
        Some(Server::start(
            &runtime,
            Arc::new(store),
            apps,
            audited,
            turns,
            Box::new(db),
        ))
    };
    match (postgres(false), postgres(true)) {
        (Some(plain), Some(audited)) => run(&runtime, "postgres", plain, audited),
        _ => println!("postgres  skipped: not reachable"),
    }
}
