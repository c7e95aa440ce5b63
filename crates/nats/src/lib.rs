//! NATS adapters. Today one: [`JetStreamJobs`], the durable job queue's transport over a
//! JetStream work-queue stream (`AUTHSOME_NATS_URL`), implementing the control plane's
//! [`JobTransport`] port.
//!
//! It carries tickets (a job's id and which hand-out it is), never a job's payload: the job
//! itself stays in the control plane's database, which decides who runs it. This crate knows
//! the wire (subjects, message ids for deduplication, acknowledgements, redelivery) and nothing
//! of what a job does, of storage or of workspaces.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use async_trait::async_trait;
use authsome_control::jobs::{Delivery, JobTransport, Ticket, TransportError};
use authsome_domain::id::JobId;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// Where the jobs' stream lives and how it redelivers.
#[derive(Debug, Clone)]
pub struct JetStreamSettings {
    pub url: String,
    /// The stream's name; its subjects are `<subject_prefix>.>`.
    pub stream: String,
    pub subject_prefix: String,
    /// How long a delivered ticket may go unacknowledged before it is delivered again.
    pub ack_wait: Duration,
}

impl JetStreamSettings {
    /// The deployment's stream at `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            stream: "AUTHSOME_JOBS".into(),
            subject_prefix: "authsome.jobs".into(),
            ack_wait: authsome_control::jobs::LEASE + Duration::from_secs(10),
        }
    }
}

/// The job queue's transport over JetStream: a work-queue stream (a message is removed once
/// acknowledged) with one durable pull consumer that every replica fetches from, explicit
/// acknowledgements, and the server's deduplication by message id (job and attempt).
pub struct JetStreamJobs {
    context: jetstream::Context,
    consumer: consumer::Consumer<consumer::pull::Config>,
    subject_prefix: String,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    job: String,
    attempt: u32,
    kind: String,
}

fn failed(what: &str) -> impl Fn(&dyn std::fmt::Display) -> TransportError + '_ {
    move |e| TransportError(format!("{what}: {e}"))
}

impl JetStreamJobs {
    /// Connects and makes sure the stream and the workers' consumer exist.
    pub async fn connect(settings: &JetStreamSettings) -> Result<Self, TransportError> {
        let client = async_nats::ConnectOptions::new()
            .name("authsome")
            .connect(settings.url.as_str())
            .await
            .map_err(|e| failed("cannot connect to NATS")(&e))?;
        let context = jetstream::new(client);
        let stream = context
            .get_or_create_stream(stream::Config {
                name: settings.stream.clone(),
                subjects: vec![format!("{}.>", settings.subject_prefix)],
                retention: stream::RetentionPolicy::WorkQueue,
                // Longer than any retry of one publication: a retried publish is stored once.
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| failed("cannot open the jobs stream")(&e))?;
        let consumer = stream
            .get_or_create_consumer(
                "workers",
                consumer::pull::Config {
                    durable_name: Some("workers".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: settings.ack_wait,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| failed("cannot open the workers' consumer")(&e))?;
        Ok(Self {
            context,
            consumer,
            subject_prefix: settings.subject_prefix.clone(),
        })
    }

    /// Removes the stream (tests clean up after themselves).
    pub async fn delete_stream(&self, name: &str) -> Result<(), TransportError> {
        self.context
            .delete_stream(name)
            .await
            .map(|_| ())
            .map_err(|e| failed("cannot delete the stream")(&e))
    }
}

#[async_trait]
impl JobTransport for JetStreamJobs {
    async fn publish(&self, tickets: &[Ticket]) -> Result<(), TransportError> {
        // All sent at once, then every acknowledgement awaited: one round trip, not one each.
        let mut acks = Vec::with_capacity(tickets.len());
        for ticket in tickets {
            let body = serde_json::to_vec(&Wire {
                job: ticket.job.as_str().to_owned(),
                attempt: ticket.attempt,
                kind: ticket.kind.clone(),
            })
            .map_err(|e| failed("cannot encode a ticket")(&e))?;
            let publish = jetstream::message::PublishMessage::build()
                .payload(body.into())
                .message_id(format!("{}:{}", ticket.job, ticket.attempt));
            let ack = self
                .context
                .send_publish(
                    format!("{}.{}", self.subject_prefix, subject_token(&ticket.kind)),
                    publish,
                )
                .await
                .map_err(|e| failed("cannot publish a job")(&e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| failed("the jobs stream did not store a job")(&e))?;
        }
        Ok(())
    }

    async fn fetch(
        &self,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<Box<dyn Delivery>>, TransportError> {
        // What is there now; only when nothing is, wait up to `wait` for the first.
        let mut out = self
            .take(self.consumer.fetch().max_messages(limit.max(1)).messages())
            .await?;
        if out.is_empty() && !wait.is_zero() {
            let batch = self
                .consumer
                .batch()
                .max_messages(limit.max(1))
                .expires(wait.max(Duration::from_millis(10)))
                .messages();
            out = self.take(batch).await?;
        }
        Ok(out)
    }
}

impl JetStreamJobs {
    async fn take<E: std::fmt::Display>(
        &self,
        batch: impl std::future::IntoFuture<Output = Result<consumer::pull::Batch, E>>,
    ) -> Result<Vec<Box<dyn Delivery>>, TransportError> {
        let mut batch = batch.await.map_err(|e| failed("cannot fetch jobs")(&e))?;
        let mut out: Vec<Box<dyn Delivery>> = Vec::new();
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => out.push(Box::new(Delivered(message))),
                Err(e) => {
                    // What was fetched before the failure is kept; the rest is redelivered.
                    tracing::warn!(error = %e, "a jobs fetch ended early");
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// A job kind as a subject's tokens: dotted words; anything else (spaces, wildcards) as `_`.
fn subject_token(kind: &str) -> String {
    kind.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

struct Delivered(jetstream::Message);

#[async_trait]
impl Delivery for Delivered {
    fn ticket(&self) -> Option<Ticket> {
        let wire: Wire = serde_json::from_slice(&self.0.payload).ok()?;
        Some(Ticket {
            job: JobId::parse(&wire.job).ok()?,
            attempt: wire.attempt,
            kind: wire.kind,
        })
    }

    async fn ack(self: Box<Self>) {
        // Best effort: an acknowledgement lost is a redelivery, which finds the job settled in
        // the database (the authority), so it need not be confirmed.
        if let Err(e) = self.0.ack().await {
            tracing::warn!(error = %e, "a job's acknowledgement was not confirmed");
        }
    }

    async fn retry_after(self: Box<Self>, delay: Duration) {
        if let Err(e) = self.0.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::warn!(error = %e, "a job's redelivery request was lost");
        }
    }
}
