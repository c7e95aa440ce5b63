//! The one place domain events go: a broadcast channel the audit log and webhooks will
//! subscribe to. The sink stamps each event with the request it happened in (its id, and the
//! caller when the emitting code did not know it).

use authsome_domain::event::{DomainEvent, EventActor, EventSink};
use tokio::sync::broadcast;

use crate::request_id;

pub struct EventBus {
    sender: broadcast::Sender<DomainEvent>,
}

impl EventBus {
    /// `capacity` events are buffered for slow subscribers before they lag.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(16));
        Self { sender }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<DomainEvent> {
        self.sender.subscribe()
    }
}

impl EventSink for EventBus {
    fn emit(&self, mut event: DomainEvent) {
        if let Some(context) = request_id::context() {
            event.request_id = Some(context.id.clone());
            if event.actor == EventActor::Unknown {
                if let Some(actor) = context.actor() {
                    event.actor = actor;
                }
            }
        } else if event.actor == EventActor::Unknown {
            event.actor = EventActor::System;
        }
        tracing::debug!(action = event.action, target = ?event.target, "event");
        // No subscriber yet is fine: nothing is lost that anyone asked for.
        let _ = self.sender.send(event);
    }
}
