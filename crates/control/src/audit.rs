//! The audit log service: turns domain events into entries of each workspace's tamper-evident
//! log (format and cryptography in `authsome-audit`), signs checkpoints, and answers the audit
//! API with the workspace's owner / admin / auditor permission.
//!
//! Writing: [`AuditLog::record`] queues an event; one writer task per process batches the queue,
//! groups it by workspace, builds the entries (chain hash, Merkle leaf, compact range) and
//! appends them with an optimistic check on the log's size, so replicas sharing one database
//! never fork a log. Customer-API events name an application; the writer finds its workspace.
//! Events that belong to no workspace (a sign-in attempt for an unknown email) go to the root
//! workspace's log, the platform operators'.
//!
//! Values that identify but must not be readable are stored as `hmac-sha256:<hex>` under a key
//! of the workspace's own, sealed under the master key (as Vault's audit devices do); the audit
//! API computes the same HMAC of a value an auditor is looking for.
//!
//! **Boundary:** it reads and writes only the audit tables (and looks up an application's
//! workspace); it never changes what the events describe.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit_fold::Folds;
use authsome_audit::entry::Outcome as EntryOutcome;
use authsome_audit::merkle::{self, CompactRange, Hash};
use authsome_audit::note::{Checkpoint, NoteSigner, NoteVerifier};
use authsome_audit::{chain_hash, Entry, EntryActor};
use authsome_domain::event::{DomainEvent, EventActor, Outcome, StoredIn};
use authsome_domain::id::{ApplicationId, WorkspaceId};
use authsome_domain::master_key::MasterKey;
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::{Actor, Permission};
use authsome_storage::outbox::OutboxRow;
use authsome_storage::{
    AuditFilter, AuditHead, AuditRow, AuditSigningKey, StorageError, Store, StoredCheckpoint,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};

use crate::{ControlError, Result};

/// Events taken from the queue per write.
const BATCH: usize = 2_000;

/// Rows read per query when exporting or verifying.
pub const EXPORT_CHUNK: u32 = 1_000;
/// Largest tree a proof is computed over in one request.
const MAX_PROOF_TREE: u64 = 5_000_000;

#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// `host[/path]` of the deployment: the checkpoint key is named `<host>/audit` and a
    /// workspace's log has the origin `<host>/audit/<workspace id>`.
    pub host: String,
    /// How often logs that grew get a new signed checkpoint.
    pub checkpoint_every: Duration,
    /// How long the writer waits for more entries before appending a small batch that holds
    /// an event kept nowhere else (a denial, a failed sign-in): a crash meanwhile would lose
    /// it. Default 20 ms.
    pub linger: Duration,
    /// The same wait for a batch whose events are all in an outbox already (every write's),
    /// which a crash cannot lose. Longer (default 250 ms), so that under a steady stream of
    /// writes the log takes one append transaction (on Postgres, one commit's flush) per this
    /// interval rather than one per `linger`, and those commits seldom hold up the writes'
    /// own. Entries still show at once where it matters: this process's audit reads flush the
    /// queue first.
    pub linger_stored: Duration,
    /// Identical refusals (failed sign-ins, denied requests) within this window are one entry
    /// now and one exact count when it closes (see `audit_fold`); zero writes each one.
    pub fold_window: Duration,
    /// What fold windows are timed by: the system's clock, or a test's.
    pub clock: authsome_domain::clock::Clock,
}

impl AuditSettings {
    /// From the public URL (`https://auth.example.com` → `auth.example.com`).
    pub fn for_public_url(public_url: &str) -> Self {
        let host = public_url
            .split_once("://")
            .map_or(public_url, |(_, rest)| rest)
            .trim_end_matches('/')
            .replace(|c: char| c.is_whitespace() || c == '+', "");
        Self {
            host: if host.is_empty() {
                "authsome".into()
            } else {
                host
            },
            checkpoint_every: Duration::from_secs(30),
            linger: Duration::from_millis(20),
            linger_stored: Duration::from_millis(250),
            fold_window: Duration::from_secs(60),
            clock: authsome_domain::clock::Clock::system(),
        }
    }
}

enum Msg {
    Event(Box<Queued>),
    /// Answered once everything queued before it is written; with a workspace, once every
    /// outbox row of that workspace committed anywhere is in its log too.
    Flush(oneshot::Sender<()>, Option<WorkspaceId>),
}

/// Whose outbox rows a recovery takes.
enum Scope<'a> {
    /// The control plane's, and those of the applications this process has open.
    Open,
    /// The control plane's, and those of every application of these workspaces.
    Workspaces(&'a [WorkspaceId]),
}

/// An event waiting for the writer, and the outbox it is also stored in (if it is a write's).
struct Queued {
    event: DomainEvent,
    stored_in: Option<StoredIn>,
}

/// How long an outbox row may wait before the writer assumes the process that stored it will
/// not hand it over (it crashed between commit and hand-over) and takes it from the table.
const OUTBOX_GRACE: chrono::Duration = chrono::Duration::seconds(10);

/// The applications' outboxes, which live in their own databases (the identity engine's).
#[async_trait::async_trait]
pub trait AppOutbox: Send + Sync {
    /// Deletes rows the audit log now holds.
    async fn delete(&self, app: &ApplicationId, ids: &[String]) -> std::result::Result<(), String>;
    /// Rows older than `before` in the outboxes of the applications this process has open.
    async fn stale(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(ApplicationId, Vec<OutboxRow>)>;
    /// Rows older than `before` in the outboxes of `apps`, opened for it.
    async fn pending(
        &self,
        apps: &[ApplicationId],
        before: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(ApplicationId, Vec<OutboxRow>)>;
}

struct ActiveSigner {
    signer: NoteSigner,
    key_id: String,
}

/// The log of one workspace as the writer last saw it.
struct CachedHead {
    size: u64,
    head: Hash,
    range: CompactRange,
    hmac_key: Arc<[u8; 32]>,
}

pub struct AuditLog {
    store: Arc<dyn Store>,
    master: Arc<MasterKey>,
    settings: AuditSettings,
    queue: mpsc::UnboundedSender<Msg>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Msg>>>,
    signer: tokio::sync::Mutex<Option<Arc<ActiveSigner>>>,
    hmac_keys: Mutex<HashMap<WorkspaceId, Arc<[u8; 32]>>>,
    last_prune: Mutex<Option<std::time::Instant>>,
    app_outbox: std::sync::OnceLock<Arc<dyn AppOutbox>>,
    /// Ends the writer's linger early: a flush is waiting.
    /// Wakes the writer to look at its queue: a flush was asked, or an event kept nowhere
    /// else arrived while it waited the longer linger.
    flush_asked: tokio::sync::Notify,
    /// The writer waits `linger_stored` (only outbox-backed events queued so far).
    lingering_long: std::sync::atomic::AtomicBool,
    /// Repeated refusals counted instead of written one by one.
    folds: Mutex<Folds>,
}

/// Distinct kinds of refusal counted at once; beyond it the oldest window closes early.
const FOLD_CAPACITY: usize = 10_000;

/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// One entry as the audit API shows it.
#[derive(Debug, Clone)]
pub struct AuditEntryView {
    pub index: u64,
    pub id: String,
    /// The canonical line (the Merkle leaf).
    pub line: String,
}

#[derive(Debug, Clone)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    pub root_hash: Hash,
    pub proof: Vec<Hash>,
}

#[derive(Debug, Clone)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub from_root: Hash,
    pub to_root: Hash,
    pub proof: Vec<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVerification {
    pub entries: u64,
    pub checkpoints: u64,
    pub root_hash: Hash,
}

/// Why a stored log does not verify, naming the first entry that fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFailure {
    pub index: Option<u64>,
    pub id: Option<String>,
    pub reason: String,
}

fn storage(e: StorageError) -> ControlError {
    e.into()
}

fn hmac_context(ws: &WorkspaceId) -> Vec<u8> {
    format!("authsome:audit-hmac-key:v1:{ws}").into_bytes()
}

fn seed_context(id: &str) -> Vec<u8> {
    format!("authsome:audit-signing-key:v1:{id}").into_bytes()
}

fn rfc3339_ms(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn hash_of(bytes: &[u8], what: &'static str) -> Result<Hash> {
    Hash::try_from(bytes).map_err(|_| ControlError::Storage(StorageError::Corrupt(what)))
}

impl AuditLog {
    /// The log; call [`AuditLog::spawn_writer`] once inside a runtime to start writing.
    pub fn new(
        store: Arc<dyn Store>,
        master: Arc<MasterKey>,
        settings: AuditSettings,
    ) -> Arc<Self> {
        let (queue, receiver) = mpsc::unbounded_channel();
        let folds = Folds::new(settings.fold_window, FOLD_CAPACITY, settings.clock.clone());
        Arc::new(Self {
            folds: Mutex::new(folds),
            store,
            master,
            settings,
            queue,
            receiver: Mutex::new(Some(receiver)),
            signer: tokio::sync::Mutex::new(None),
            hmac_keys: Mutex::new(HashMap::new()),
            last_prune: Mutex::new(None),
            app_outbox: std::sync::OnceLock::new(),
            flush_asked: tokio::sync::Notify::new(),
            lingering_long: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Starts the writer task (once; later calls do nothing). It also signs checkpoints.
    pub fn spawn_writer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let Some(receiver) = self.receiver.lock().ok().and_then(|mut r| r.take()) else {
            return tokio::spawn(async {});
        };
        let log = self.clone();
        tokio::spawn(async move { log.run(receiver).await })
    }

    /// Where the writer deletes applications' outbox rows once it holds them.
    pub fn set_app_outbox(&self, outbox: Arc<dyn AppOutbox>) {
        let _ = self.app_outbox.set(outbox);
    }

    /// Queues an event that is not a write (a denial, a failed sign-in) for its log; a refusal
    /// identical to one already written in the fold window is only counted (see `audit_fold`).
    pub fn record(&self, event: DomainEvent) {
        let mut released = Vec::new();
        let offer = match self.folds.lock() {
            Ok(mut folds) => folds.offer(event, &mut released),
            Err(poisoned) => poisoned.into_inner().offer(event, &mut released),
        };
        for summary in released {
            self.enqueue(summary, None);
        }
        if let Some(event) = offer {
            self.enqueue(event, None);
        }
    }

    /// Queues the counts of fold windows that have closed (every open one with `all`, when the
    /// process stops): called by the maintenance loop.
    pub fn release_folds(&self, all: bool) {
        let summaries = match self.folds.lock() {
            Ok(mut folds) => folds.release(all),
            Err(poisoned) => poisoned.into_inner().release(all),
        };
        for summary in summaries {
            self.enqueue(summary, None);
        }
    }

    /// Queues a write's event already committed to `stored_in`'s outbox; the writer deletes
    /// that row when it appends the entry.
    pub fn record_stored(&self, event: DomainEvent, stored_in: StoredIn) {
        self.enqueue(event, Some(stored_in));
    }

    fn enqueue(&self, event: DomainEvent, stored_in: Option<StoredIn>) {
        let unstored = stored_in.is_none();
        if self
            .queue
            .send(Msg::Event(Box::new(Queued { event, stored_in })))
            .is_err()
        {
            tracing::error!("audit writer stopped; an audit event was not queued");
            return;
        }
        // An event held only in memory cuts the writer's long wait short (once per batch).
        if unstored && self.lingering_long.swap(false, Ordering::SeqCst) {
            self.flush_asked.notify_one();
        }
    }

    /// Waits until every event queued before this call is stored.
    pub async fn flush(&self) {
        self.flush_for(None).await;
    }

    /// Before a read of `ws`'s log: what this process queued is written, and every outbox row
    /// of the workspace that any process committed and has not handed over (a crash, or another
    /// replica between commit and hand-over) is taken now, so that the log never shows less
    /// than was acknowledged.
    async fn catch_up(&self, ws: &WorkspaceId) {
        self.flush_for(Some(ws.clone())).await;
    }

    async fn flush_for(&self, ws: Option<WorkspaceId>) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Msg::Flush(done, ws)).is_ok() {
            self.flush_asked.notify_one();
            let _ = wait.await;
        }
    }

    async fn run(self: Arc<Self>, mut receiver: mpsc::UnboundedReceiver<Msg>) {
        let mut heads: HashMap<WorkspaceId, CachedHead> = HashMap::new();
        let mut workspaces: HashMap<ApplicationId, WorkspaceId> = HashMap::new();
        let mut tick = tokio::time::interval(self.settings.checkpoint_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                m = receiver.recv() => match m {
                    Some(m) => m,
                    None => return,
                },
                _ = tick.tick() => {
                    let before = authsome_domain::now() - OUTBOX_GRACE;
                    if let Err(e) = self.recover(Scope::Open, before, &mut heads, &mut workspaces).await {
                        tracing::warn!(error = %e, "audit outbox recovery failed; will retry");
                    }
                    if let Err(e) = self.checkpoint_all().await {
                        tracing::warn!(error = %e, "audit checkpoints failed; will retry");
                    }
                    continue;
                }
            };
            let mut events = Vec::new();
            let mut flushes = Vec::new();
            let mut catch_up: Vec<WorkspaceId> = Vec::new();
            // Entries trickling in one by one (sequential writes) are worth a wait: one append
            // transaction for many entries instead of one each. The writer sleeps through the
            // wait rather than waking for each queued entry (a thread wake-up per audited write
            // costs more than the entry itself); a flush ends it early, and an event kept
            // nowhere else shortens it to `linger`. A backlog that fills a batch at once is
            // written without waiting.
            let started = tokio::time::Instant::now();
            let (short, long) = (
                self.settings.linger,
                self.settings.linger_stored.max(self.settings.linger),
            );
            let mut linger_until = started + long;
            let mut next = Some(first);
            loop {
                while let Some(m) = next.take() {
                    match m {
                        Msg::Event(q) => {
                            if q.stored_in.is_none() {
                                linger_until = linger_until.min(started + short);
                            }
                            events.push(*q)
                        }
                        Msg::Flush(f, ws) => {
                            flushes.push(f);
                            catch_up.extend(ws);
                        }
                    }
                    if events.len() >= BATCH {
                        break;
                    }
                    next = receiver.try_recv().ok();
                }
                if events.len() >= BATCH
                    || !flushes.is_empty()
                    || tokio::time::Instant::now() >= linger_until
                {
                    break;
                }
                self.lingering_long
                    .store(linger_until > started + short, Ordering::SeqCst);
                // An event queued before the flag was up is seen here; one queued after it
                // finds the flag and wakes the wait below.
                if let Ok(m) = receiver.try_recv() {
                    self.lingering_long.store(false, Ordering::SeqCst);
                    next = Some(m);
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(linger_until) => {}
                    _ = self.flush_asked.notified() => {}
                }
                self.lingering_long.store(false, Ordering::SeqCst);
                next = receiver.try_recv().ok();
            }
            let mut backoff = Duration::from_millis(50);
            while let Err(e) = self.write(&events, &mut heads, &mut workspaces).await {
                // Nothing is dropped: the batch is retried until the database takes it, less
                // the entries another replica's outbox recovery appended meanwhile.
                tracing::error!(error = %e, events = events.len(), "audit append failed; retrying");
                heads.clear();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                let ids: Vec<String> = events.iter().map(|q| q.event.id.to_string()).collect();
                if let Ok(held) = self.store.existing_audit_ids(&ids).await {
                    events.retain(|q| !held.contains(&q.event.id.to_string()));
                }
            }
            if !catch_up.is_empty() {
                // Everything committed until now: a row younger than any grace may be a
                // replica's hand-over in flight, which then finds it held.
                let scope = Scope::Workspaces(&catch_up);
                let now = authsome_domain::now();
                if let Err(e) = self.recover(scope, now, &mut heads, &mut workspaces).await {
                    tracing::warn!(error = %e, "audit outbox catch-up failed");
                    heads.clear();
                }
            }
            for f in flushes {
                let _ = f.send(());
            }
        }
    }

    /// Takes outbox rows committed before `before` whose hand-over never came (their process
    /// stopped between commit and hand-over, or has not got to it yet), skipping those the log
    /// already holds: each lands exactly once.
    async fn recover(
        &self,
        scope: Scope<'_>,
        before: chrono::DateTime<chrono::Utc>,
        heads: &mut HashMap<WorkspaceId, CachedHead>,
        workspaces: &mut HashMap<ApplicationId, WorkspaceId>,
    ) -> Result<()> {
        let mut sources: Vec<(StoredIn, Vec<OutboxRow>)> = Vec::new();
        let control = self.store.audit_outbox(before, u32::MAX).await?;
        if !control.is_empty() {
            sources.push((StoredIn::ControlPlane, control));
        }
        if let Some(apps) = self.app_outbox.get() {
            let found = match scope {
                Scope::Open => apps.stale(before).await,
                Scope::Workspaces(list) => {
                    let mut of = Vec::new();
                    for ws in list {
                        of.extend(self.store.application_ids_of(ws).await?);
                    }
                    apps.pending(&of, before).await
                }
            };
            for (app, rows) in found {
                sources.push((StoredIn::Application(app), rows));
            }
        }
        for (stored_in, rows) in sources {
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let held = self.store.existing_audit_ids(&ids).await?;
            if !held.is_empty() {
                self.delete_outbox(&stored_in, &held).await?;
            }
            let mut queued = Vec::new();
            for row in rows.into_iter().filter(|r| !held.contains(&r.id)) {
                match serde_json::from_str::<DomainEvent>(&row.body) {
                    Ok(event) => queued.push(Queued {
                        event,
                        stored_in: Some(stored_in.clone()),
                    }),
                    // Kept, not dropped: an operator must look at it.
                    Err(e) => {
                        tracing::error!(id = %row.id, error = %e, "unreadable audit outbox row")
                    }
                }
            }
            if !queued.is_empty() {
                tracing::warn!(
                    entries = queued.len(),
                    "audit entries recovered from an outbox"
                );
                self.write(&queued, heads, workspaces).await?;
            }
        }
        Ok(())
    }

    /// Recovers abandoned outbox rows now (the writer also does it every checkpoint interval).
    pub async fn recover_outboxes(&self) -> Result<()> {
        let before = authsome_domain::now() - OUTBOX_GRACE;
        self.recover(
            Scope::Open,
            before,
            &mut HashMap::new(),
            &mut HashMap::new(),
        )
        .await
    }

    /// At start-up, before the server is ready: every row committed to the control plane's
    /// outbox before `started` (by a process that stopped, or a replica yet to hand it over)
    /// goes into the log now, not at the writer's next sweep.
    pub async fn recover_at_start(&self, started: chrono::DateTime<chrono::Utc>) -> Result<()> {
        self.recover(
            Scope::Open,
            started,
            &mut HashMap::new(),
            &mut HashMap::new(),
        )
        .await
    }

    async fn delete_outbox(&self, stored_in: &StoredIn, ids: &[String]) -> Result<()> {
        match stored_in {
            StoredIn::ControlPlane => Ok(self.store.delete_audit_outbox(ids).await?),
            StoredIn::Application(app) => {
                if let Some(apps) = self.app_outbox.get() {
                    if let Err(e) = apps.delete(app, ids).await {
                        // The rows stay; recovery finds them already held and deletes them.
                        tracing::warn!(app = %app, error = %e, "cannot delete audit outbox rows yet");
                    }
                }
                Ok(())
            }
        }
    }

    async fn workspace_of(
        &self,
        event: &DomainEvent,
        workspaces: &mut HashMap<ApplicationId, WorkspaceId>,
    ) -> Result<Option<WorkspaceId>> {
        if let Some(ws) = &event.workspace_id {
            return Ok(Some(ws.clone()));
        }
        if let Some(app) = &event.application_id {
            if let Some(ws) = workspaces.get(app) {
                return Ok(Some(ws.clone()));
            }
            if let Some(found) = self.store.any_application(app).await? {
                workspaces.insert(app.clone(), found.workspace_id.clone());
                return Ok(Some(found.workspace_id));
            }
        }
        Ok(self.store.root_workspace_id().await?)
    }

    async fn write(
        &self,
        events: &[Queued],
        heads: &mut HashMap<WorkspaceId, CachedHead>,
        workspaces: &mut HashMap<ApplicationId, WorkspaceId>,
    ) -> Result<()> {
        let mut by_workspace: Vec<(WorkspaceId, Vec<&Queued>)> = Vec::new();
        // An event can come twice (its hand-over and a recovery of its outbox row): once in
        // the log.
        let mut seen = std::collections::HashSet::with_capacity(events.len());
        for queued in events.iter().filter(|q| seen.insert(q.event.id.as_str())) {
            let Some(ws) = self.workspace_of(&queued.event, workspaces).await? else {
                tracing::warn!(action = %queued.event.action, "audit event with no workspace and no root workspace; dropped");
                continue;
            };
            match by_workspace.iter_mut().find(|(w, _)| *w == ws) {
                Some((_, list)) => list.push(queued),
                None => by_workspace.push((ws, vec![queued])),
            }
        }
        let mut app_rows: Vec<(ApplicationId, Vec<String>)> = Vec::new();
        for (ws, list) in by_workspace {
            let outbox_ids: Vec<String> = list
                .iter()
                .filter(|q| q.stored_in == Some(StoredIn::ControlPlane))
                .map(|q| q.event.id.as_str().to_owned())
                .collect();
            let events: Vec<&DomainEvent> = list.iter().map(|q| &q.event).collect();
            loop {
                let head = match heads.remove(&ws) {
                    Some(h) => h,
                    None => self.load_head(&ws).await?,
                };
                let (rows, next) = self.build(
                    &ws,
                    head.size,
                    head.head,
                    head.range.clone(),
                    &head.hmac_key,
                    &events,
                )?;
                let appended = self
                    .store
                    .append_audit(
                        &ws,
                        head.size,
                        &rows,
                        &next.head,
                        &next.range.encode(),
                        &outbox_ids,
                    )
                    .await?;
                if appended {
                    heads.insert(
                        ws.clone(),
                        CachedHead {
                            hmac_key: head.hmac_key,
                            ..next
                        },
                    );
                    break;
                }
                // Another replica appended first: read its head and build again on top of it.
            }
            for q in &list {
                if let Some(StoredIn::Application(app)) = &q.stored_in {
                    let id = q.event.id.as_str().to_owned();
                    match app_rows.iter_mut().find(|(a, _)| a == app) {
                        Some((_, ids)) => ids.push(id),
                        None => app_rows.push((app.clone(), vec![id])),
                    }
                }
            }
        }
        for (app, ids) in app_rows {
            self.delete_outbox(&StoredIn::Application(app), &ids)
                .await?;
        }
        Ok(())
    }

    async fn load_head(&self, ws: &WorkspaceId) -> Result<CachedHead> {
        let head = match self.store.audit_head(ws).await? {
            Some(h) => h,
            None => {
                let mut key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                let sealed = B64.encode(self.master.seal(&hmac_context(ws), &key));
                self.store
                    .open_audit_log(
                        ws,
                        &CompactRange::new().encode(),
                        &sealed,
                        authsome_domain::now(),
                    )
                    .await?
            }
        };
        let hmac_key = self.hmac_key_of(&head)?;
        Ok(CachedHead {
            size: head.size,
            head: hash_of(&head.head_hash, "audit_logs.head_hash")?,
            range: CompactRange::decode(&head.compact_range).map_err(|_| {
                ControlError::Storage(StorageError::Corrupt("audit_logs.compact_range"))
            })?,
            hmac_key,
        })
    }

    fn hmac_key_of(&self, head: &AuditHead) -> Result<Arc<[u8; 32]>> {
        if let Some(k) = self
            .hmac_keys
            .lock()
            .ok()
            .and_then(|m| m.get(&head.workspace_id).cloned())
        {
            return Ok(k);
        }
        let corrupt = || ControlError::Storage(StorageError::Corrupt("audit_logs.hmac_key"));
        let sealed = B64.decode(&head.hmac_key).map_err(|_| corrupt())?;
        let key: [u8; 32] = self
            .master
            .open(&hmac_context(&head.workspace_id), &sealed)
            .map_err(|_| corrupt())?
            .try_into()
            .map_err(|_| corrupt())?;
        let key = Arc::new(key);
        if let Ok(mut m) = self.hmac_keys.lock() {
            m.insert(head.workspace_id.clone(), key.clone());
        }
        Ok(key)
    }

    fn build(
        &self,
        ws: &WorkspaceId,
        size: u64,
        mut prev: Hash,
        mut range: CompactRange,
        hmac_key: &[u8; 32],
        events: &[&DomainEvent],
    ) -> Result<(Vec<AuditRow>, CachedHead)> {
        let mut rows = Vec::with_capacity(events.len());
        for (offset, event) in events.iter().enumerate() {
            let index = size + offset as u64;
            let mut changes = event.changes.clone();
            for (field, value) in &event.identifying {
                changes.insert(field.clone(), hmac_value(hmac_key, value).into());
            }
            let (kind, actor_id) = match &event.actor {
                EventActor::Account(id) => ("account", Some(id.as_str().to_owned())),
                EventActor::Key(id) => ("key", Some(id.as_str().to_owned())),
                EventActor::User(id) => ("user", Some(id.as_str().to_owned())),
                EventActor::Principal(id) => ("principal", Some(id.as_str().to_owned())),
                EventActor::System => ("system", None),
                // In a request, but no credential was verified (a failed sign-in).
                EventActor::Unknown => ("anonymous", None),
            };
            let entry = Entry {
                index,
                id: event.id.as_str().to_owned(),
                at: rfc3339_ms(event.at),
                workspace_id: ws.as_str().to_owned(),
                application_id: event.application_id.as_ref().map(|a| a.as_str().to_owned()),
                actor: EntryActor {
                    kind: kind.into(),
                    id: actor_id.clone(),
                    ip: event.ip.clone(),
                    user_agent: event.user_agent.clone(),
                },
                action: event.action.clone(),
                target: event.target.clone(),
                outcome: match event.outcome {
                    Outcome::Success => EntryOutcome::Success,
                    Outcome::Failure => EntryOutcome::Failure,
                    Outcome::Denied => EntryOutcome::Denied,
                },
                request_id: event.request_id.clone(),
                changes,
                prev_hash: prev,
            };
            let line = entry.canonical();
            let leaf = merkle::leaf_hash(line.as_bytes());
            prev = chain_hash(line.as_bytes());
            range.push(leaf);
            rows.push(AuditRow {
                index,
                id: entry.id,
                at: event.at,
                action: entry.action,
                actor_id,
                application_id: entry.application_id,
                outcome: entry.outcome.as_str().to_owned(),
                leaf_hash: leaf.to_vec(),
                body: Some(line),
            });
        }
        Ok((
            rows,
            CachedHead {
                size: size + events.len() as u64,
                head: prev,
                range,
                hmac_key: Arc::new(*hmac_key),
            },
        ))
    }

    // -----------------------------------------------------------------------------------------
    // Checkpoints

    fn key_name(&self) -> String {
        format!("{}/audit", self.settings.host)
    }

    fn origin(&self, ws: &WorkspaceId) -> String {
        format!("{}/audit/{ws}", self.settings.host)
    }

    async fn active_signer(&self) -> Result<Arc<ActiveSigner>> {
        let mut slot = self.signer.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        for _ in 0..2 {
            let keys = self.store.audit_signing_keys().await?;
            if let Some(active) = keys.iter().rev().find(|k| k.retired_at.is_none()) {
                let signer = Arc::new(self.open_signer(active)?);
                *slot = Some(signer.clone());
                return Ok(signer);
            }
            let key = self.new_signing_key()?;
            self.store.add_first_audit_signing_key(&key).await?;
        }
        Err(ControlError::Storage(StorageError::Corrupt(
            "audit_signing_keys",
        )))
    }

    fn open_signer(&self, key: &AuditSigningKey) -> Result<ActiveSigner> {
        let corrupt =
            || ControlError::Storage(StorageError::Corrupt("audit_signing_keys.sealed_seed"));
        let sealed = B64.decode(&key.sealed_seed).map_err(|_| corrupt())?;
        let seed: [u8; 32] = self
            .master
            .open(&seed_context(&key.id), &sealed)
            .map_err(|_| corrupt())?
            .try_into()
            .map_err(|_| corrupt())?;
        let signer = NoteSigner::new(&key.name, &seed).map_err(|_| corrupt())?;
        Ok(ActiveSigner {
            signer,
            key_id: key.id.clone(),
        })
    }

    fn new_signing_key(&self) -> Result<AuditSigningKey> {
        let mut seed = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut seed);
        let name = self.key_name();
        let signer = NoteSigner::new(&name, &seed)
            .map_err(|e| ControlError::Conflict(format!("cannot name the audit key: {e}")))?;
        let id = format!("{name}+{:08x}", signer.id());
        Ok(AuditSigningKey {
            sealed_seed: B64.encode(self.master.seal(&seed_context(&id), &seed)),
            id,
            name,
            public_key: signer.verifier().public_key().to_vec(),
            created_at: authsome_domain::now(),
            retired_at: None,
        })
    }

    /// Replaces the checkpoint signing key; older checkpoints keep verifying with the retired
    /// key, which `/audit/keys` keeps listing.
    pub async fn rotate_signing_key(&self) -> Result<String> {
        let key = self.new_signing_key()?;
        self.store.rotate_audit_signing_key(&key).await?;
        *self.signer.lock().await = None;
        Ok(key.id)
    }

    /// [`AuditLog::prune`], at most once an hour (called from the maintenance loop).
    pub async fn prune_if_due(&self) -> Result<u64> {
        {
            let Ok(mut last) = self.last_prune.lock() else {
                return Ok(0);
            };
            if last.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
                return Ok(0);
            }
            *last = Some(std::time::Instant::now());
        }
        self.prune(authsome_domain::now()).await
    }

    /// Retention: removes the bodies of entries older than each workspace's plan keeps them
    /// (their hashes and every signed checkpoint stay). Returns the entries pruned.
    pub async fn prune(&self, now: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        let mut pruned = 0;
        for head in self.store.audit_heads().await? {
            let Some(ws) = self.store.any_workspace(&head.workspace_id).await? else {
                continue;
            };
            let first_kept = self
                .store
                .prune_audit(&head.workspace_id, now - ws.audit_retention())
                .await?;
            pruned += first_kept.saturating_sub(head.first_kept);
        }
        Ok(pruned)
    }

    /// Signs a checkpoint for every log that grew since its last one.
    pub async fn checkpoint_all(&self) -> Result<u64> {
        let mut signed = 0;
        for head in self.store.audit_logs_to_checkpoint().await? {
            self.checkpoint(&head).await?;
            signed += 1;
        }
        Ok(signed)
    }

    async fn checkpoint(&self, head: &AuditHead) -> Result<StoredCheckpoint> {
        let signer = self.active_signer().await?;
        let range = CompactRange::decode(&head.compact_range).map_err(|_| {
            ControlError::Storage(StorageError::Corrupt("audit_logs.compact_range"))
        })?;
        let at = authsome_domain::now();
        let checkpoint = Checkpoint {
            origin: self.origin(&head.workspace_id),
            size: range.size(),
            root: range.root(),
            extensions: vec![format!("time {}", at.timestamp_millis())],
        };
        let note = signer
            .signer
            .sign(&checkpoint.to_text())
            .map_err(|e| ControlError::Conflict(e.to_string()))?;
        let stored = StoredCheckpoint {
            size: checkpoint.size,
            root_hash: checkpoint.root.to_vec(),
            at,
            key_id: signer.key_id.clone(),
            note,
        };
        self.store
            .add_audit_checkpoint(&head.workspace_id, &stored)
            .await?;
        Ok(stored)
    }

    // -----------------------------------------------------------------------------------------
    // Reading (owner, admin and auditor)

    async fn authorize(&self, actor: &Actor, ws: &WorkspaceId) -> Result<()> {
        let (_, role) = self
            .store
            .workspace_access(actor, ws)
            .await?
            .ok_or(ControlError::NotFound("workspace"))?;
        if role.allows(Permission::AuditRead) {
            return Ok(());
        }
        let actor_event = match actor {
            Actor::Account(id) => EventActor::Account(id.clone()),
            Actor::ManagementKey { key_id, .. } => EventActor::Key(key_id.clone()),
        };
        self.record(
            DomainEvent::new("permission.denied")
                .workspace(ws)
                .actor(actor_event)
                .outcome(Outcome::Denied)
                .change("permission", "audit.read"),
        );
        Err(ControlError::Forbidden(format!(
            "the {} role may not read the audit log",
            role.as_str()
        )))
    }

    pub async fn list(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEntryView>> {
        self.authorize(actor, ws).await?;
        self.catch_up(ws).await;
        let rows = self
            .store
            .audit_entries(ws, filter, page.after.as_deref(), page.limit + 1)
            .await?;
        let views: Vec<AuditEntryView> = rows
            .into_iter()
            .filter_map(|r| {
                r.body.map(|line| AuditEntryView {
                    index: r.index,
                    id: r.id,
                    line,
                })
            })
            .collect();
        Ok(Page::from_rows(views, page.limit, |v| &v.id))
    }

    /// Checks access and returns a reader of the whole log, oldest first, in chunks.
    pub async fn export(&self, actor: &Actor, ws: &WorkspaceId) -> Result<AuditReader> {
        self.authorize(actor, ws).await?;
        self.catch_up(ws).await;
        let head = self.store.audit_head(ws).await?;
        Ok(AuditReader {
            store: self.store.clone(),
            workspace: ws.clone(),
            next: head.as_ref().map_or(0, |h| h.first_kept),
            end: head.map_or(0, |h| h.size),
        })
    }

    /// The latest signed checkpoint, first signing one if the log grew since.
    pub async fn latest_checkpoint(&self, actor: &Actor, ws: &WorkspaceId) -> Result<String> {
        self.authorize(actor, ws).await?;
        self.catch_up(ws).await;
        let head = self.current_head(ws).await?;
        if head.size > head.checkpoint_size || head.size == 0 {
            if let Some(existing) = self.store.audit_checkpoint(ws, head.size).await? {
                return Ok(existing.note);
            }
            return Ok(self.checkpoint(&head).await?.note);
        }
        match self.store.latest_audit_checkpoint(ws).await? {
            Some(c) => Ok(c.note),
            None => Ok(self.checkpoint(&head).await?.note),
        }
    }

    async fn current_head(&self, ws: &WorkspaceId) -> Result<AuditHead> {
        if let Some(h) = self.store.audit_head(ws).await? {
            return Ok(h);
        }
        self.load_head(ws).await?;
        self.store
            .audit_head(ws)
            .await?
            .ok_or(ControlError::NotFound("audit log"))
    }

    /// Every checkpoint verifier key, active and retired, in the Go `note` format.
    pub async fn verifier_keys(&self, actor: &Actor, ws: &WorkspaceId) -> Result<Vec<String>> {
        self.authorize(actor, ws).await?;
        self.active_signer().await?;
        self.all_verifier_keys().await
    }

    async fn all_verifier_keys(&self) -> Result<Vec<String>> {
        let keys = self.store.audit_signing_keys().await?;
        keys.iter()
            .map(|k| {
                let public: [u8; 32] = k.public_key.as_slice().try_into().map_err(|_| {
                    ControlError::Storage(StorageError::Corrupt("audit_signing_keys.public_key"))
                })?;
                let id = authsome_audit::note::key_id(&k.name, &public);
                let mut bytes = vec![0x01];
                bytes.extend_from_slice(&public);
                let vkey = format!("{}+{id:08x}+{}", k.name, B64.encode(bytes));
                NoteVerifier::parse(&vkey).map_err(|_| {
                    ControlError::Storage(StorageError::Corrupt("audit_signing_keys"))
                })?;
                Ok(vkey)
            })
            .collect()
    }

    async fn leaves(&self, ws: &WorkspaceId, size: u64) -> Result<Vec<Hash>> {
        let head = self.current_head(ws).await?;
        if size > head.size {
            return Err(ControlError::Invalid(
                authsome_domain::ValidationError::new("treeSize", "is larger than the log"),
            ));
        }
        if size > MAX_PROOF_TREE {
            return Err(ControlError::Invalid(
                authsome_domain::ValidationError::new(
                    "treeSize",
                    "is too large for one proof request",
                ),
            ));
        }
        self.store
            .audit_leaf_hashes(ws, 0, size)
            .await?
            .iter()
            .map(|h| hash_of(h, "audit_entries.leaf_hash"))
            .collect()
    }

    pub async fn inclusion_proof(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof> {
        self.authorize(actor, ws).await?;
        self.catch_up(ws).await;
        if index >= tree_size {
            return Err(ControlError::Invalid(
                authsome_domain::ValidationError::new("index", "must be below treeSize"),
            ));
        }
        let leaves = self.leaves(ws, tree_size).await?;
        let proof = merkle::inclusion_proof(&leaves, index).map_err(|_| {
            ControlError::Invalid(authsome_domain::ValidationError::new(
                "index",
                "must be below treeSize",
            ))
        })?;
        Ok(InclusionProof {
            index,
            tree_size,
            leaf_hash: leaves[index as usize],
            root_hash: merkle::root(&leaves),
            proof,
        })
    }

    pub async fn consistency_proof(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof> {
        self.authorize(actor, ws).await?;
        self.catch_up(ws).await;
        if from > to {
            return Err(ControlError::Invalid(
                authsome_domain::ValidationError::new("from", "must not be larger than to"),
            ));
        }
        let leaves = self.leaves(ws, to).await?;
        let proof = merkle::consistency_proof(&leaves, from).map_err(|_| {
            ControlError::Invalid(authsome_domain::ValidationError::new(
                "from",
                "must not be larger than to",
            ))
        })?;
        Ok(ConsistencyProof {
            from,
            to,
            from_root: merkle::root(&leaves[..from as usize]),
            to_root: merkle::root(&leaves),
            proof,
        })
    }

    /// The compact range of the entries retention pruned (empty when none were): with it, an
    /// export that starts at the first kept entry still leads to the signed roots.
    pub async fn prefix(&self, actor: &Actor, ws: &WorkspaceId) -> Result<CompactRange> {
        self.authorize(actor, ws).await?;
        let head = self.current_head(ws).await?;
        let mut range = CompactRange::new();
        for leaf in self.store.audit_leaf_hashes(ws, 0, head.first_kept).await? {
            range.push(hash_of(&leaf, "audit_entries.leaf_hash")?);
        }
        Ok(range)
    }

    /// The keyed HMAC the log stores for `value` in this workspace, so an auditor can search
    /// for an email without the log holding it.
    pub async fn hash_value(&self, actor: &Actor, ws: &WorkspaceId, value: &str) -> Result<String> {
        self.authorize(actor, ws).await?;
        let head = self.current_head(ws).await?;
        let key = self.hmac_key_of(&head)?;
        Ok(hmac_value(&key, value))
    }

    /// Re-checks the stored log: each body against its stored leaf hash, the chain, the head
    /// and every stored checkpoint's root. Names the first entry that fails.
    pub async fn verify_stored(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
    ) -> Result<std::result::Result<StoredVerification, StoredFailure>> {
        self.authorize(actor, ws).await?;
        self.catch_up(ws).await;
        let head = self.current_head(ws).await?;
        let checkpoints = self.store.audit_checkpoints(ws).await?;
        let sizes: std::collections::HashSet<u64> = checkpoints.iter().map(|c| c.size).collect();
        let mut range = CompactRange::new();
        let mut prev = authsome_audit::GENESIS;
        let mut roots: HashMap<u64, Hash> = HashMap::new();
        roots.insert(0, range.root());
        let fail = |index: Option<u64>, id: Option<String>, reason: String| {
            Ok(Err(StoredFailure { index, id, reason }))
        };
        let mut reader = AuditReader {
            store: self.store.clone(),
            workspace: ws.clone(),
            next: 0,
            end: head.size,
        };
        while let Some(rows) = reader.next_chunk().await? {
            for row in rows {
                let (index, id) = (Some(row.index), Some(row.id.clone()));
                if row.index != range.size() {
                    return fail(index, id, format!("entry {} is missing", range.size()));
                }
                let stored_leaf = hash_of(&row.leaf_hash, "audit_entries.leaf_hash")?;
                match &row.body {
                    Some(line) => {
                        if merkle::leaf_hash(line.as_bytes()) != stored_leaf {
                            return fail(
                                index,
                                id,
                                "altered: its body does not match its leaf hash".into(),
                            );
                        }
                        let entry = match Entry::parse(line) {
                            Ok(e) => e,
                            Err(e) => {
                                return fail(index, id, format!("not a canonical entry: {e}"))
                            }
                        };
                        if entry.index != row.index || entry.id != row.id {
                            return fail(index, id, "its body names another entry".into());
                        }
                        if row.index == head.first_kept && head.first_kept > 0 {
                            // The first kept entry of a pruned log anchors the chain.
                            prev = entry.prev_hash;
                        }
                        if entry.prev_hash != prev {
                            return fail(
                                index,
                                id,
                                "altered: its prevHash does not chain to the entry before".into(),
                            );
                        }
                        prev = chain_hash(line.as_bytes());
                    }
                    None if row.index < head.first_kept => {}
                    None => return fail(index, id, "its body is missing".into()),
                }
                range.push(stored_leaf);
                if sizes.contains(&range.size()) {
                    roots.insert(range.size(), range.root());
                }
            }
        }
        if range.size() != head.size {
            return fail(
                None,
                None,
                format!(
                    "the head says {} entries and {} are stored",
                    head.size,
                    range.size()
                ),
            );
        }
        if head.size > 0 && hash_of(&head.head_hash, "audit_logs.head_hash")? != prev {
            return fail(
                Some(head.size - 1),
                None,
                "the last entry does not match the log's head".into(),
            );
        }
        for cp in &checkpoints {
            match roots.get(&cp.size) {
                Some(root) if root.as_slice() == cp.root_hash.as_slice() => {}
                _ => {
                    return fail(
                        None,
                        None,
                        format!(
                            "the entries before index {} do not match the checkpoint signed at that size",
                            cp.size
                        ),
                    )
                }
            }
        }
        Ok(Ok(StoredVerification {
            entries: head.size,
            checkpoints: checkpoints.len() as u64,
            root_hash: range.root(),
        }))
    }
}

fn hmac_value(key: &[u8; 32], value: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return "hmac-sha256:".into();
    };
    mac.update(value.as_bytes());
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

/// Reads a log oldest first, one chunk at a time (bounded memory for any size).
pub struct AuditReader {
    store: Arc<dyn Store>,
    workspace: WorkspaceId,
    next: u64,
    end: u64,
}

impl AuditReader {
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<AuditRow>>> {
        if self.next >= self.end {
            return Ok(None);
        }
        let limit = EXPORT_CHUNK.min(u32::try_from(self.end - self.next).unwrap_or(EXPORT_CHUNK));
        let rows = self
            .store
            .audit_range(&self.workspace, self.next, limit)
            .await
            .map_err(storage)?;
        let Some(last) = rows.last() else {
            return Ok(None);
        };
        self.next = last.index + 1;
        Ok(Some(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authsome_storage::{SqliteStore, SystemRepository};

    async fn log(settings: AuditSettings) -> (tempfile::TempDir, Arc<dyn Store>, Arc<AuditLog>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = SqliteStore::open(&dir.path().join("audit.db"))
            .await
            .expect("open");
        sqlite.migrate().await.expect("migrate");
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let audit = AuditLog::new(store.clone(), Arc::new(MasterKey::generate()), settings);
        audit.spawn_writer();
        (dir, store, audit)
    }

    async fn size(store: &Arc<dyn Store>, ws: &WorkspaceId) -> u64 {
        store
            .audit_head(ws)
            .await
            .expect("head")
            .map_or(0, |h| h.size)
    }

    async fn wait_for(store: &Arc<dyn Store>, ws: &WorkspaceId, entries: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while size(store, ws).await < entries {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the log never reached {entries} entries"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn long_wait() -> AuditSettings {
        AuditSettings {
            linger_stored: Duration::from_secs(3600),
            ..AuditSettings::for_public_url("http://audit.test")
        }
    }

    #[tokio::test]
    async fn a_writes_event_waits_for_more_and_a_flush_ends_the_wait() {
        let (_dir, store, audit) = log(long_wait()).await;
        let ws = WorkspaceId::new();
        audit.record_stored(
            DomainEvent::new("workspace.updated").workspace(&ws),
            StoredIn::ControlPlane,
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(size(&store, &ws).await, 0, "held for the long wait");
        audit.flush().await;
        assert_eq!(size(&store, &ws).await, 1);
    }

    #[tokio::test]
    async fn an_event_kept_nowhere_else_cuts_the_long_wait_short() {
        let (_dir, store, audit) = log(long_wait()).await;
        let ws = WorkspaceId::new();
        audit.record_stored(
            DomainEvent::new("workspace.updated").workspace(&ws),
            StoredIn::ControlPlane,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(size(&store, &ws).await, 0);
        // A denial is in memory only: the writer wakes and appends both without the hour's wait.
        audit.record(DomainEvent::new("permission.denied").workspace(&ws));
        wait_for(&store, &ws, 2).await;
    }

    #[tokio::test]
    async fn a_batch_that_starts_with_an_event_kept_nowhere_else_waits_briefly() {
        let (_dir, store, audit) = log(long_wait()).await;
        let ws = WorkspaceId::new();
        audit.record(DomainEvent::new("permission.denied").workspace(&ws));
        audit.record_stored(
            DomainEvent::new("workspace.updated").workspace(&ws),
            StoredIn::ControlPlane,
        );
        wait_for(&store, &ws, 2).await;
    }

    /// An event sink that hands events to the audit log, as the server's does.
    struct ToLog(Arc<AuditLog>);

    impl authsome_domain::event::EventSink for ToLog {
        fn emit(&self, event: DomainEvent) {
            self.0.record(event);
        }

        fn emit_stored(&self, event: DomainEvent, stored_in: StoredIn) {
            self.0.record_stored(event, stored_in);
        }
    }

    #[tokio::test]
    async fn every_write_carries_its_event_in_the_outbox() {
        use authsome_domain::id::{AccountId, MemberId};
        use authsome_domain::tenancy::{
            Account, KycStatus, Member, MemberStatus, PaymentStatus, Plan, Role, Workspace,
            WorkspaceLimits, WorkspaceStatus,
        };
        let (_dir, store, audit) = log(long_wait()).await;
        let now = authsome_domain::now();
        let ws = Workspace {
            id: WorkspaceId::new(),
            name: "Acme".into(),
            slug: "acme".into(),
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
            workspace_id: ws.id.clone(),
            account_id: AccountId::new(),
            email: String::new(),
            name: None,
            role: Role::Owner,
            status: MemberStatus::Active,
            created_at: now,
            updated_at: now,
        };
        let account = Account {
            id: owner.account_id.clone(),
            email: "owner@acme.test".into(),
            name: None,
            created_at: now,
        };
        store.create_account(&account, None).await.expect("account");
        store
            .create_workspace(&ws, &owner, &authsome_storage::outbox::Outbox::empty())
            .await
            .expect("workspace");
        let actor = Actor::Account(owner.account_id.clone());
        let rename = |name: &str| crate::WorkspacePatch {
            name: Some(name.into()),
            slug: None,
            metadata: None,
        };
        let pending = || async {
            store
                .audit_outbox(authsome_domain::now() + chrono::Duration::hours(1), 100)
                .await
                .expect("outbox")
        };

        // Whatever its sink, a write commits its event to the outbox with it ...
        let bare = crate::ControlPlane::new(store.clone(), crate::ControlSettings::default());
        bare.update_workspace(&actor, &ws.id, rename("Sinkless"))
            .await
            .expect("update");
        let rows = pending().await;
        assert_eq!(rows.len(), 1);
        let event: DomainEvent = serde_json::from_str(&rows[0].body).expect("event JSON");
        assert_eq!(event.action, "workspace.updated");
        assert_eq!(event.workspace_id.as_ref(), Some(&ws.id));
        assert_eq!(size(&store, &ws.id).await, 0);

        // ... and the audit log takes it: a sink that records into it at once, a process
        // without one (a tool, a stopped server) at the log's next recovery.
        let audited = crate::ControlPlane::new(store.clone(), crate::ControlSettings::default())
            .with_events(Arc::new(ToLog(audit.clone())));
        audited
            .update_workspace(&actor, &ws.id, rename("Audited"))
            .await
            .expect("update");
        assert_eq!(pending().await.len(), 2);
        audit.flush().await;
        audit
            .recover_at_start(authsome_domain::now() + chrono::Duration::seconds(1))
            .await
            .expect("recovery");
        assert_eq!(size(&store, &ws.id).await, 2);
        assert!(pending().await.is_empty());
    }
}
