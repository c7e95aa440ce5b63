//! The process's one pool for password hashing, shared by the control plane and every
//! application. argon2id is deliberately expensive (tens of milliseconds of CPU and its memory
//! cost per hash), so the pool bounds all three things an attacker could exhaust with it:
//!
//! - **memory and CPU**: a fixed number of threads, no more than the cores and no more than the
//!   memory budget divided by one hash's memory;
//! - **the queue**: each tenant (the control plane, an application) may have a few jobs waiting,
//!   and the whole pool a few dozen per thread; beyond that a job is refused at once with
//!   [`Busy`] (the HTTP layer answers 503 with `Retry-After`) instead of waiting behind a flood;
//! - **fairness**: waiting tenants are served round-robin, and while more than one thread
//!   exists no tenant runs on all of them, so one tenant's burst leaves a thread for everyone
//!   else and their sign-in waits for at most the hash running before it.
//!
//! Plain threads and a condition variable; no HTTP, storage or tenant policy.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

/// The memory the pool's hashes may hold at once unless configured (`AUTHSOME_HASHING_MEMORY_MIB`).
pub const DEFAULT_MEMORY_BUDGET_KIB: u64 = 256 * 1024;

/// Who a hashing job is for; jobs of different tenants are scheduled fairly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashTenant {
    /// Team members' sign-in and invitation acceptance.
    ControlPlane,
    /// One application's users.
    Application(String),
}

/// The pool is full for this tenant: retry after the given seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is at capacity; retry in {retry_after_secs} s")]
pub struct Busy {
    pub retry_after_secs: u64,
}

/// How big the pool is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashPoolSize {
    pub threads: usize,
    /// Jobs one tenant may have waiting (not yet running).
    pub per_tenant_queue: usize,
    /// Jobs all tenants together may have waiting.
    pub total_queue: usize,
}

impl HashPoolSize {
    /// Threads: the cores, but no more than `memory_budget_kib` holds hashes of
    /// `hash_memory_kib` each (at least one). Queues: a few jobs per thread per tenant.
    pub fn derive(cores: usize, memory_budget_kib: u64, hash_memory_kib: u32) -> Self {
        let by_memory = memory_budget_kib / u64::from(hash_memory_kib.max(1));
        let threads = cores
            .min(usize::try_from(by_memory).unwrap_or(usize::MAX))
            .max(1);
        Self {
            threads,
            per_tenant_queue: threads * 4,
            total_queue: threads * 64,
        }
    }

    /// The most threads one tenant may occupy at once: all but one while there are several.
    fn share(self) -> usize {
        if self.threads > 1 {
            self.threads - 1
        } else {
            1
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    waiting: HashMap<HashTenant, VecDeque<Job>>,
    /// Tenants with waiting jobs, in the order they will be served.
    turn: VecDeque<HashTenant>,
    running: HashMap<HashTenant, usize>,
    queued: usize,
    closed: bool,
}

struct Shared {
    size: HashPoolSize,
    state: Mutex<State>,
    work: Condvar,
    /// The threads start with the first job: a pool made and replaced before any hashing
    /// (a service's default, before the process's one is plugged in) costs no threads.
    started: std::sync::Once,
}

/// See the module documentation. Cloning shares the pool; the threads end when the last clone
/// is dropped.
#[derive(Clone)]
pub struct HashPool {
    shared: Arc<Shared>,
    _owner: Arc<Closer>,
}

/// Tells the threads to finish when the last handle goes.
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.state.lock() {
            state.closed = true;
        }
        self.0.work.notify_all();
    }
}

impl HashPool {
    pub fn new(size: HashPoolSize) -> Self {
        let size = HashPoolSize {
            threads: size.threads.max(1),
            per_tenant_queue: size.per_tenant_queue.max(1),
            total_queue: size.total_queue.max(1),
        };
        let shared = Arc::new(Shared {
            size,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            started: std::sync::Once::new(),
        });
        Self {
            _owner: Arc::new(Closer(shared.clone())),
            shared,
        }
    }

    /// A pool sized for this machine's cores and a memory budget (see [`HashPoolSize::derive`]).
    pub fn for_machine(memory_budget_kib: u64, hash_memory_kib: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::new(HashPoolSize::derive(
            cores,
            memory_budget_kib,
            hash_memory_kib,
        ))
    }

    pub fn size(&self) -> HashPoolSize {
        self.shared.size
    }

    /// Runs `work` on a hashing thread in `tenant`'s turn, or refuses at once when the tenant's
    /// queue or the pool's is full.
    pub async fn run<T: Send + 'static>(
        &self,
        tenant: HashTenant,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        self.submit(tenant, job)?;
        rx.await.map_err(|_| Busy {
            retry_after_secs: 1,
        })
    }

    fn start(&self) {
        self.shared.started.call_once(|| {
            for n in 0..self.shared.size.threads {
                let shared = self.shared.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("authsome-hash-{n}"))
                    .spawn(move || worker(&shared));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "could not start a hashing thread");
                }
            }
        });
    }

    fn submit(&self, tenant: HashTenant, job: Job) -> Result<(), Busy> {
        self.start();
        let busy = Busy {
            retry_after_secs: 1,
        };
        let mut state = self.shared.state.lock().map_err(|_| busy)?;
        let size = self.shared.size;
        let mine = state.waiting.get(&tenant).map_or(0, VecDeque::len);
        if state.closed || mine >= size.per_tenant_queue || state.queued >= size.total_queue {
            return Err(busy);
        }
        if mine == 0 {
            state.turn.push_back(tenant.clone());
        }
        state.waiting.entry(tenant).or_default().push_back(job);
        state.queued += 1;
        drop(state);
        self.shared.work.notify_one();
        Ok(())
    }

    /// Jobs waiting now (for tests and metrics).
    pub fn waiting(&self) -> usize {
        self.shared.state.lock().map_or(0, |s| s.queued)
    }
}

/// The next job whose tenant is below its share, taken in turn; the tenant goes to the back of
/// the line if it has more.
fn next_job(state: &mut State, share: usize) -> Option<(HashTenant, Job)> {
    let position = state
        .turn
        .iter()
        .position(|t| state.running.get(t).copied().unwrap_or(0) < share)?;
    let tenant = state.turn.remove(position)?;
    let queue = state.waiting.get_mut(&tenant)?;
    let job = queue.pop_front()?;
    if queue.is_empty() {
        state.waiting.remove(&tenant);
    } else {
        state.turn.push_back(tenant.clone());
    }
    state.queued -= 1;
    *state.running.entry(tenant.clone()).or_insert(0) += 1;
    Some((tenant, job))
}

fn worker(shared: &Shared) {
    let share = shared.size.share();
    let Ok(mut state) = shared.state.lock() else {
        return;
    };
    loop {
        if let Some((tenant, job)) = next_job(&mut state, share) {
            drop(state);
            job();
            state = match shared.state.lock() {
                Ok(s) => s,
                Err(_) => return,
            };
            if let Some(n) = state.running.get_mut(&tenant) {
                *n -= 1;
                if *n == 0 {
                    state.running.remove(&tenant);
                }
            }
            // A tenant held back by its share may now run.
            shared.work.notify_all();
            continue;
        }
        if state.closed && state.queued == 0 {
            return;
        }
        state = match shared.work.wait(state) {
            Ok(s) => s,
            Err(_) => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    fn app(n: &str) -> HashTenant {
        HashTenant::Application(n.into())
    }

    #[test]
    fn threads_follow_cores_and_the_memory_budget() {
        assert_eq!(HashPoolSize::derive(8, 256 * 1024, 19 * 1024).threads, 8);
        assert_eq!(HashPoolSize::derive(32, 64 * 1024, 19 * 1024).threads, 3);
        assert_eq!(HashPoolSize::derive(4, 1024, 19 * 1024).threads, 1);
        assert_eq!(HashPoolSize::derive(2, 256 * 1024, 19 * 1024).share(), 1);
        assert_eq!(HashPoolSize::derive(1, 256 * 1024, 19 * 1024).share(), 1);
    }

    /// Blocks a hashing thread until released.
    fn gate() -> (mpsc::Sender<()>, impl FnOnce() + Send + 'static) {
        let (tx, rx) = mpsc::channel::<()>();
        (tx, move || {
            let _ = rx.recv();
        })
    }

    #[tokio::test]
    async fn a_full_tenant_queue_is_refused_at_once_and_others_still_get_in() {
        let pool = HashPool::new(HashPoolSize {
            threads: 2,
            per_tenant_queue: 2,
            total_queue: 4,
        });
        let (release, hold) = gate();
        // Tenant a occupies its share (one thread of two) and fills its queue.
        let running = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(app("a"), hold).await }
        });
        while pool.waiting() > 0 || pool.shared.state.lock().unwrap().running.is_empty() {
            tokio::task::yield_now().await;
        }
        let q1 = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(app("a"), || 1).await }
        });
        let q2 = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(app("a"), || 2).await }
        });
        while pool.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            pool.run(app("a"), || 3).await,
            Err(Busy {
                retry_after_secs: 1
            })
        );
        // Tenant b runs on the thread a may not take, while a's jobs still wait.
        assert_eq!(pool.run(app("b"), || 7).await, Ok(7));
        assert_eq!(pool.waiting(), 2);
        release.send(()).unwrap();
        assert_eq!(running.await.unwrap(), Ok(()));
        assert_eq!(q1.await.unwrap(), Ok(1));
        assert_eq!(q2.await.unwrap(), Ok(2));
    }

    #[tokio::test]
    async fn the_pools_total_queue_is_bounded() {
        let pool = HashPool::new(HashPoolSize {
            threads: 1,
            per_tenant_queue: 8,
            total_queue: 2,
        });
        let (release, hold) = gate();
        let running = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(app("a"), hold).await }
        });
        while pool.shared.state.lock().unwrap().running.is_empty() {
            tokio::task::yield_now().await;
        }
        let waiting: Vec<_> = ["b", "c"]
            .into_iter()
            .map(|t| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.run(app(t), || ()).await })
            })
            .collect();
        while pool.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert!(pool.run(HashTenant::ControlPlane, || ()).await.is_err());
        release.send(()).unwrap();
        running.await.unwrap().unwrap();
        for w in waiting {
            w.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn waiting_tenants_are_served_in_turn() {
        let pool = HashPool::new(HashPoolSize {
            threads: 1,
            per_tenant_queue: 8,
            total_queue: 32,
        });
        let (release, hold) = gate();
        let first = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(app("x"), hold).await }
        });
        while pool.shared.state.lock().unwrap().running.is_empty() {
            tokio::task::yield_now().await;
        }
        let order = Arc::new(Mutex::new(Vec::new()));
        let seq = Arc::new(AtomicUsize::new(0));
        let mut jobs = Vec::new();
        // Four of a's jobs queue before b's one: b still runs second, not fifth.
        for tenant in ["a", "a", "a", "a", "b"] {
            let (handle, order, seq) = (pool.clone(), order.clone(), seq.clone());
            jobs.push(tokio::spawn(async move {
                handle
                    .run(app(tenant), move || {
                        seq.fetch_add(1, Ordering::SeqCst);
                        order.lock().unwrap().push(tenant);
                    })
                    .await
            }));
            let expected = jobs.len();
            while pool.waiting() < expected {
                tokio::task::yield_now().await;
            }
        }
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        for j in jobs {
            tokio::time::timeout(Duration::from_secs(10), j)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["a", "b", "a", "a", "a"]);
    }
}
