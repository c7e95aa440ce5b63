//! The one place domain events go: the audit log, which stores every one, and a broadcast
//! channel that webhooks and tests subscribe to. The sink stamps each event with the request it
//! happened in (its id, the caller's address and user agent, and the caller when the emitting
//! code did not know it).

use std::sync::Arc;

use authsome_control::audit::AuditLog;
use authsome_domain::event::{DomainEvent, EventActor, EventSink, StoredIn};
use tokio::sync::broadcast;

use crate::request_id;

pub struct EventBus {
    sender: broadcast::Sender<DomainEvent>,
    audit: Option<Arc<AuditLog>>,
}

impl EventBus {
    /// `capacity` events are buffered for slow subscribers before they lag.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(16));
        Self {
            sender,
            audit: None,
        }
    }

    /// Also records every event in `audit`.
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    pub fn subscribe(&self) -> broadcast::Receiver<DomainEvent> {
        self.sender.subscribe()
    }

    /// Hands `event` to the audit log (with `record`), then to the subscribers, so that a
    /// subscriber that reads the log on hearing of it finds it there (the audit API flushes the
    /// queue first). Copied only when both take it; no subscriber is fine: nothing is lost
    /// that anyone asked for.
    fn deliver(&self, event: DomainEvent, record: impl FnOnce(&AuditLog, DomainEvent)) {
        let subscribed = self.sender.receiver_count() > 0;
        match &self.audit {
            Some(audit) if subscribed => {
                record(audit, event.clone());
                let _ = self.sender.send(event);
            }
            Some(audit) => record(audit, event),
            None => {
                let _ = self.sender.send(event);
            }
        }
    }
}

impl EventSink for EventBus {
    fn stamp(&self, event: &mut DomainEvent) {
        if let Some(context) = request_id::context() {
            event.request_id = Some(context.id.clone());
            event.ip.clone_from(&context.ip);
            event.user_agent = context.user_agent();
            if event.actor == EventActor::Unknown {
                if let Some(actor) = context.actor() {
                    event.actor = actor;
                }
            }
        } else if event.actor == EventActor::Unknown {
            event.actor = EventActor::System;
        }
    }

    fn emit(&self, mut event: DomainEvent) {
        self.stamp(&mut event);
        tracing::debug!(action = %event.action, target = ?event.target, "event");
        self.deliver(event, |audit, event| audit.record(event));
    }

    fn emit_stored(&self, event: DomainEvent, stored_in: StoredIn) {
        tracing::debug!(action = %event.action, target = ?event.target, "event");
        self.deliver(event, |audit, event| audit.record_stored(event, stored_in));
    }
}
