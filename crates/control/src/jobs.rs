//! The durable job queue's runner: hands out the jobs that are due (rotations' runs, schedules'
//! occurrences, rollbacks, alert deliveries) and dispatches each to the use case that runs it.
//!
//! A job is always enqueued as a row in the control plane's database, in the same commit as the
//! work it belongs to, so it can never be lost between the two. How it reaches a worker is the
//! queue's transport:
//! - the database itself (the default): workers claim due rows under a lease (`FOR UPDATE SKIP
//!   LOCKED` on Postgres, the held writer on SQLite);
//! - a [`JobTransport`] such as NATS JetStream (`AUTHSOME_NATS_URL`): a relay claims the due
//!   rows for the transport and publishes one message per hand-out (deduplicated by job and
//!   attempt); whichever worker the transport delivers it to takes the row with a
//!   compare-and-set on that hand-out, runs it, and only then acknowledges the message. A
//!   message delivered twice (a slow worker, a redelivery after a crash) is taken at most once;
//!   one whose job was handed out again or finished since is acknowledged and dropped.
//!
//! Either way a job runs once at a time, and again only when its holder's lease ran out without
//! an outcome (a crash): the use cases it runs are written to resume.

use std::sync::Arc;
use std::time::Duration;

use authsome_domain::id::{JobId, RotationId};
use authsome_domain::job::Job;
use chrono::{DateTime, Utc};

use crate::rotation::{Fault, ROLLBACK_JOB, RUN_JOB, SCHEDULED_JOB};
use crate::{ControlPlane, Result};

/// How long a job a worker holds is its own before another may take it over.
pub const LEASE: Duration = Duration::from_secs(60);
/// How long a job the relay handed to the transport waits there before it is handed out again
/// (no worker took it: every replica was down, or the message was lost).
const RELAYED_FOR: Duration = Duration::from_secs(600);
/// The worker name under which the relay holds the jobs it handed to the transport.
const RELAY: &str = "relay";
/// Jobs claimed (or fetched) at a time.
const BATCH: u32 = 16;

/// One hand-out of a job: what a transport carries (ids only, never a payload or a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub job: JobId,
    /// Which hand-out of the job this is (the job's `attempts` when it was relayed).
    pub attempt: u32,
    /// What runs it (`rotation.run`, …), for the transport's subject.
    pub kind: String,
}

/// The failure of a transport (unreachable, refused); the jobs stay in the database and are
/// relayed again.
#[derive(Debug, thiserror::Error)]
#[error("job transport: {0}")]
pub struct TransportError(pub String);

/// A message queue that carries jobs' hand-outs to workers across replicas, with explicit
/// acknowledgements and redelivery.
#[async_trait::async_trait]
pub trait JobTransport: Send + Sync {
    /// Publishes `tickets`, each deduplicated by job and attempt; returns once the transport
    /// stored them all.
    async fn publish(&self, tickets: &[Ticket]) -> std::result::Result<(), TransportError>;
    /// Up to `limit` deliveries, waiting up to `wait` for the first.
    async fn fetch(
        &self,
        limit: usize,
        wait: Duration,
    ) -> std::result::Result<Vec<Box<dyn Delivery>>, TransportError>;
}

/// A delivered ticket, to be settled once.
#[async_trait::async_trait]
pub trait Delivery: Send {
    /// The ticket; none when the message is not one (it is acknowledged and dropped).
    fn ticket(&self) -> Option<Ticket>;
    /// Done with: never deliver it again.
    async fn ack(self: Box<Self>);
    /// Deliver it again after `delay`.
    async fn retry_after(self: Box<Self>, delay: Duration);
}

impl ControlPlane {
    /// Carries due jobs over `transport` instead of workers claiming them from the database.
    pub fn with_job_transport(mut self, transport: Arc<dyn JobTransport>) -> Self {
        self.job_transport = Some(transport);
        self
    }

    /// Runs the durable jobs that are due, as `worker`, for up to `budget`; how many ran.
    pub async fn run_jobs(&self, worker: &str, budget: Duration) -> Result<usize> {
        match self.job_transport.clone() {
            None => self.run_claimed_jobs(worker, budget).await,
            Some(transport) => {
                self.relay_jobs(transport.as_ref()).await?;
                self.run_delivered_jobs(transport.as_ref(), worker, budget)
                    .await
            }
        }
    }

    async fn run_claimed_jobs(&self, worker: &str, budget: Duration) -> Result<usize> {
        let started = std::time::Instant::now();
        let mut ran = 0;
        while started.elapsed() < budget {
            let now = self.clock.now();
            let jobs = self
                .store
                .claim_jobs(worker, now, lease_from(now, LEASE), BATCH)
                .await?;
            if jobs.is_empty() {
                break;
            }
            for job in jobs {
                self.run_job(worker, &job).await?;
                ran += 1;
            }
        }
        Ok(ran)
    }

    /// Hands the jobs that are due to `transport`; how many. A job whose publication fails
    /// stays held by the relay and is relayed again when that hold runs out.
    pub async fn relay_jobs(&self, transport: &dyn JobTransport) -> Result<usize> {
        let mut relayed = 0;
        loop {
            let now = self.clock.now();
            let jobs = self
                .store
                .claim_jobs(RELAY, now, lease_from(now, RELAYED_FOR), BATCH)
                .await?;
            if jobs.is_empty() {
                return Ok(relayed);
            }
            let tickets: Vec<Ticket> = jobs
                .iter()
                .map(|job| Ticket {
                    job: job.id.clone(),
                    attempt: job.attempts,
                    kind: job.kind.clone(),
                })
                .collect();
            if let Err(e) = transport.publish(&tickets).await {
                tracing::warn!(error = %e, "jobs could not be relayed; they will be again");
                return Ok(relayed);
            }
            relayed += tickets.len();
        }
    }

    async fn run_delivered_jobs(
        &self,
        transport: &dyn JobTransport,
        worker: &str,
        budget: Duration,
    ) -> Result<usize> {
        let started = std::time::Instant::now();
        let mut ran = 0;
        while started.elapsed() < budget {
            let deliveries = match transport
                .fetch(BATCH as usize, Duration::from_millis(50))
                .await
            {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "jobs could not be fetched; will retry");
                    break;
                }
            };
            if deliveries.is_empty() {
                break;
            }
            for delivery in deliveries {
                let Some(ticket) = delivery.ticket() else {
                    delivery.ack().await;
                    continue;
                };
                let now = self.clock.now();
                let taken = self
                    .store
                    .take_job(
                        &ticket.job,
                        ticket.attempt,
                        RELAY,
                        worker,
                        now,
                        lease_from(now, LEASE),
                    )
                    .await;
                match taken {
                    Ok(Some(job)) => {
                        let outcome = self.run_job(worker, &job).await;
                        // Settled in the database (or not, on an error: then its lease runs
                        // out and it is relayed again); the message has served either way.
                        delivery.ack().await;
                        outcome?;
                        ran += 1;
                    }
                    // Finished, handed out again since, or another worker's under a live lease:
                    // this delivery is stale (a live holder acknowledges its own).
                    Ok(None) => delivery.ack().await,
                    Err(e) => {
                        delivery.retry_after(Duration::from_secs(1)).await;
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(ran)
    }

    async fn run_job(&self, worker: &str, job: &Job) -> Result<()> {
        let id = job.payload["rotation"]
            .as_str()
            .and_then(|r| RotationId::parse(r).ok());
        let outcome = match (job.kind.as_str(), id) {
            (RUN_JOB, Some(id)) => self.advance_rotation(&id, job.attempts).await,
            (ROLLBACK_JOB, Some(id)) => self.advance_rollback(&id, job.attempts).await,
            (SCHEDULED_JOB, _) => self.run_scheduled(job).await,
            (crate::alerts::DELIVER_JOB, _) => self.deliver_alert(job).await,
            (crate::payments::SUBSCRIBE_JOB, _) => self.stripe_subscribe(job).await,
            (crate::payments::USAGE_JOB, _) => self.stripe_usage(job).await,
            _ => Err(Fault::Failed(format!("unknown job {}", job.kind))),
        };
        let now = self.clock.now();
        match outcome {
            Ok(None) => {
                self.store.finish_job(&job.id, worker, now).await?;
            }
            Ok(Some(at)) => {
                self.store
                    .retry_job(&job.id, worker, at, "waiting for its time")
                    .await?;
            }
            Err(Fault::Later(wait, why)) => {
                let at = lease_from(now, wait);
                self.store.retry_job(&job.id, worker, at, &why).await?;
            }
            Err(Fault::Failed(why)) => {
                tracing::warn!(job = job.id.as_str(), kind = job.kind, %why, "a job failed");
                self.store.fail_job(&job.id, worker, &why, now).await?;
            }
        }
        Ok(())
    }
}

fn lease_from(now: DateTime<Utc>, span: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(span).unwrap_or_default()
}
