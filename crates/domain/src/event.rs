//! Domain events: every write on the control plane and the customer API is announced as one
//! typed event into one sink, which the audit log and webhooks subscribe to. Emitting code says
//! what happened and to what; the sink stamps who did it and the request id from the request it
//! runs in (it knows the transport; this crate does not).

use chrono::{DateTime, Utc};

use crate::id::{AccountId, ApplicationId, EventId, KeyId, UserId, WorkspaceId};

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "camelCase")]
pub enum EventActor {
    /// A team member signed in to the control plane.
    Account(AccountId),
    /// A workspace management key or an application key.
    Key(KeyId),
    /// An application's end user (with an access token, or signing in/up).
    User(UserId),
    /// A workspace's machine principal (proving itself with its key).
    Principal(crate::id::PrincipalId),
    /// AuthSome itself (maintenance, provisioning).
    System,
    /// Not known where the event was raised; the sink fills it from the request.
    Unknown,
}

/// How the attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    #[default]
    Success,
    /// Attempted and failed (a wrong password).
    Failure,
    /// The caller was not allowed to do it.
    Denied,
}

/// An event, in the form it is also stored in an audit outbox (JSON) until the audit log
/// takes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainEvent {
    pub id: EventId,
    pub at: DateTime<Utc>,
    /// A stable dotted name: `application.created`, `application.key.rolled`, `user.signed_in`.
    pub action: String,
    pub actor: EventActor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<WorkspaceId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_id: Option<ApplicationId>,
    /// The id of what the action was done to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub outcome: Outcome,
    /// What changed (new values of the fields that changed; never a secret).
    pub changes: serde_json::Map<String, serde_json::Value>,
    /// Values that identify someone or something but must not be readable in the audit log
    /// (an email typed at a failed sign-in): the audit log stores a keyed HMAC of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifying: Vec<(String, String)>,
    /// The caller's address and user agent, stamped by the sink from the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl DomainEvent {
    pub fn new(action: &'static str) -> Self {
        Self {
            id: EventId::new(),
            at: crate::now(),
            action: action.to_owned(),
            actor: EventActor::Unknown,
            workspace_id: None,
            application_id: None,
            target: None,
            request_id: None,
            outcome: Outcome::Success,
            changes: serde_json::Map::new(),
            identifying: Vec::new(),
            ip: None,
            user_agent: None,
        }
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Records a changed field's new value.
    pub fn change(mut self, field: &str, value: impl Into<serde_json::Value>) -> Self {
        self.changes.insert(field.to_owned(), value.into());
        self
    }

    /// Records a value that identifies but must not be readable (stored as a keyed HMAC).
    pub fn identifying(mut self, field: &'static str, value: impl Into<String>) -> Self {
        self.identifying.push((field.to_owned(), value.into()));
        self
    }

    /// Records `field`'s new value if an update changed it (nothing when it is the same).
    pub fn changed<T>(self, field: &str, old: &T, new: &T) -> Self
    where
        T: PartialEq + serde::Serialize,
    {
        if old == new {
            return self;
        }
        match serde_json::to_value(new) {
            Ok(value) => self.change(field, value),
            Err(_) => self.change(field, "changed"),
        }
    }

    /// As [`DomainEvent::changed`], for a value that identifies someone (an email, a person's
    /// name): the log stores a keyed HMAC of the new value, never the value.
    pub fn changed_identifying(self, field: &'static str, old: &str, new: &str) -> Self {
        if old == new {
            return self;
        }
        self.identifying(field, new)
    }

    /// For a free-form JSON object (metadata, configuration), which may hold anything its
    /// owner put there: the top-level keys an update added, removed or changed, sorted, and
    /// never their values (`{"keys": [...]}`); nothing when the object is the same.
    /// (A value that is not an object counts as an empty one.)
    pub fn changed_keys(
        self,
        field: &str,
        old: &serde_json::Value,
        new: &serde_json::Value,
    ) -> Self {
        let empty = serde_json::Map::new();
        let old = old.as_object().unwrap_or(&empty);
        let new = new.as_object().unwrap_or(&empty);
        let mut keys: Vec<&str> = old
            .iter()
            .filter(|(k, v)| new.get(k.as_str()) != Some(v))
            .map(|(k, _)| k.as_str())
            .chain(
                new.keys()
                    .filter(|k| !old.contains_key(k.as_str()))
                    .map(String::as_str),
            )
            .collect();
        if keys.is_empty() {
            return self;
        }
        keys.sort_unstable();
        self.change(field, serde_json::json!({ "keys": keys }))
    }

    pub fn actor(mut self, actor: EventActor) -> Self {
        self.actor = actor;
        self
    }

    pub fn workspace(mut self, id: &WorkspaceId) -> Self {
        self.workspace_id = Some(id.clone());
        self
    }

    pub fn application(mut self, id: &ApplicationId) -> Self {
        self.application_id = Some(id.clone());
        self
    }

    pub fn target(mut self, target: impl std::fmt::Display) -> Self {
        self.target = Some(target.to_string());
        self
    }
}

/// Where a committed event was stored in the same transaction as its write (the audit
/// outbox of that database), so the audit log can take it from there exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredIn {
    /// The control-plane database's outbox.
    ControlPlane,
    /// That application's database's outbox.
    Application(ApplicationId),
}

/// Where events go.
///
/// Writes are audited fail-closed: the emitting code first has the sink [`EventSink::stamp`]
/// the event (request id, caller, address), stores it in the outbox of the database it writes,
/// in the write's own transaction, and after the commit hands it to
/// [`EventSink::emit_stored`]. Events that are not writes (a denied request, a failed
/// sign-in) go to [`EventSink::emit`].
pub trait EventSink: Send + Sync {
    fn emit(&self, event: DomainEvent);

    /// Completes the event from the request it is raised in, before it is stored.
    fn stamp(&self, _event: &mut DomainEvent) {}

    /// An event already stored in an outbox with its write.
    fn emit_stored(&self, event: DomainEvent, _stored_in: StoredIn) {
        self.emit(event);
    }
}

/// A sink that drops everything (tools and tests that do not care).
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _: DomainEvent) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_update_records_only_what_it_changed() {
        let e = DomainEvent::new("thing.updated")
            .changed("name", &"Old".to_owned(), &"New".to_owned())
            .changed("slug", &"same".to_owned(), &"same".to_owned())
            .changed("limits", &Some(1), &Some(2));
        assert_eq!(
            serde_json::Value::Object(e.changes),
            json!({"name": "New", "limits": 2})
        );
    }

    #[test]
    fn free_form_objects_record_their_changed_keys_never_their_values() {
        let old = json!({"kept": 1, "edited": "a", "removed": true});
        let new = json!({"kept": 1, "edited": "b", "added": "secret-value"});
        let e = DomainEvent::new("thing.updated")
            .changed_keys("metadata", &old, &new)
            .changed_keys("config", &old, &old);
        assert_eq!(
            serde_json::Value::Object(e.changes.clone()),
            json!({"metadata": {"keys": ["added", "edited", "removed"]}})
        );
        assert!(!serde_json::to_string(&e).unwrap().contains("secret-value"));
    }

    #[test]
    fn identifying_changes_are_kept_apart_for_hashing() {
        let e = DomainEvent::new("user.updated")
            .changed_identifying("email", "a@example.com", "b@example.com")
            .changed_identifying("name", "Ada", "Ada");
        assert!(e.changes.is_empty());
        assert_eq!(
            e.identifying,
            vec![("email".to_owned(), "b@example.com".to_owned())]
        );
    }
}
