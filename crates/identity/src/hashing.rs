//! A fixed pool of threads for password hashing. argon2id is deliberately expensive (tens of
//! milliseconds, ~19 MiB each); a fixed set of threads bounds both the CPU it takes from request
//! handling and the memory it holds, and lets each thread's allocator reuse one block instead of
//! every blocking thread keeping its own.

use std::sync::mpsc;
use std::sync::Mutex;

type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct HashPool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl HashPool {
    pub(crate) fn new(threads: usize) -> Self {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = std::sync::Arc::new(Mutex::new(receiver));
        for n in 0..threads.max(1) {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("authsome-hash-{n}"))
                .spawn(move || loop {
                    let job = match receiver.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        // Every sender is gone: the engine was dropped.
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        Self {
            jobs: Mutex::new(sender),
        }
    }

    /// Runs `work` on a hashing thread; `None` only if the pool is gone.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        self.jobs.lock().ok()?.send(job).ok()?;
        rx.await.ok()
    }
}
