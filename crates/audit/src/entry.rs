//! An audit entry and its canonical encoding.
//!
//! The canonical encoding is one line of JSON: object keys sorted by their bytes, no
//! whitespace, strings escaped as `serde_json` writes them, integers only. It is what the log
//! stores, what the export's JSON Lines rows are, and what the Merkle leaf hashes
//! (`SHA-256(0x00 || line)`), so nobody ever has to re-encode an entry to check it.
//!
//! The chain: each entry carries `prevHash`, the chain hash of the entry before it in its
//! workspace's log (all zeros for the first), where the chain hash of an entry is
//! `SHA-256("authsome.audit.v1.chain\n" || line)`. The domain-separation prefix keeps a chain
//! hash from ever being mistaken for a Merkle leaf or node hash of the same bytes.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The `prevHash` of a log's first entry.
pub const GENESIS: Hash = [0; 32];

const CHAIN_DOMAIN: &[u8] = b"authsome.audit.v1.chain\n";

/// The format version every entry carries as `v`.
pub const VERSION: u64 = 1;

/// The chain hash of an entry, from its canonical line (without the newline).
pub fn chain_hash(line: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(CHAIN_DOMAIN);
    h.update(line);
    h.finalize().into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The operation was attempted and failed (a wrong password, for example).
    Failure,
    /// The caller was not allowed to do it.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            "denied" => Some(Self::Denied),
            _ => None,
        }
    }
}

/// Who did it, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryActor {
    /// `account`, `key`, `user`, `system`, or `anonymous` (no credential, e.g. a failed sign-in).
    pub kind: String,
    pub id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Position in the workspace's log, from 0: the Merkle leaf index.
    pub index: u64,
    pub id: String,
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    pub workspace_id: String,
    pub application_id: Option<String>,
    pub actor: EntryActor,
    pub action: String,
    pub target: Option<String>,
    pub outcome: Outcome,
    pub request_id: Option<String>,
    /// What changed; identifying values that must not be readable appear as `hmac-sha256:…`.
    pub changes: Map<String, Value>,
    pub prev_hash: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not in canonical form (sorted keys, no whitespace)")]
    NotCanonical,
    #[error("field {0} is missing or has the wrong type")]
    Field(&'static str),
}

impl Entry {
    /// The canonical line (without a newline).
    pub fn canonical(&self) -> String {
        let mut actor = Map::new();
        actor.insert("type".into(), self.actor.kind.clone().into());
        let optional = |map: &mut Map<String, Value>, key: &str, v: &Option<String>| {
            if let Some(v) = v {
                map.insert(key.into(), Value::String(v.clone()));
            }
        };
        optional(&mut actor, "id", &self.actor.id);
        optional(&mut actor, "ip", &self.actor.ip);
        optional(&mut actor, "userAgent", &self.actor.user_agent);
        let mut o = Map::new();
        o.insert("v".into(), VERSION.into());
        o.insert("index".into(), self.index.into());
        o.insert("id".into(), self.id.clone().into());
        o.insert("at".into(), self.at.clone().into());
        o.insert("workspaceId".into(), self.workspace_id.clone().into());
        optional(&mut o, "applicationId", &self.application_id);
        o.insert("actor".into(), Value::Object(actor));
        o.insert("action".into(), self.action.clone().into());
        optional(&mut o, "target", &self.target);
        o.insert("outcome".into(), self.outcome.as_str().into());
        optional(&mut o, "requestId", &self.request_id);
        o.insert("changes".into(), Value::Object(self.changes.clone()));
        o.insert("prevHash".into(), hex::encode(self.prev_hash).into());
        canonical_json(&Value::Object(o))
    }

    /// Reads a canonical line back, refusing anything not in canonical form.
    pub fn parse(line: &str) -> Result<Self, EntryError> {
        let value: Value =
            serde_json::from_str(line).map_err(|e| EntryError::NotJson(e.to_string()))?;
        if canonical_json(&value) != line {
            return Err(EntryError::NotCanonical);
        }
        let o = value.as_object().ok_or(EntryError::Field("(object)"))?;
        let string = |k: &'static str| -> Result<String, EntryError> {
            o.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(EntryError::Field(k))
        };
        let optional =
            |m: &Map<String, Value>, k: &'static str| -> Result<Option<String>, EntryError> {
                match m.get(k) {
                    None => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(EntryError::Field(k)),
                }
            };
        if o.get("v").and_then(Value::as_u64) != Some(VERSION) {
            return Err(EntryError::Field("v"));
        }
        let actor = o
            .get("actor")
            .and_then(Value::as_object)
            .ok_or(EntryError::Field("actor"))?;
        let prev_hash = o
            .get("prevHash")
            .and_then(Value::as_str)
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| Hash::try_from(b).ok())
            .ok_or(EntryError::Field("prevHash"))?;
        Ok(Self {
            index: o
                .get("index")
                .and_then(Value::as_u64)
                .ok_or(EntryError::Field("index"))?,
            id: string("id")?,
            at: string("at")?,
            workspace_id: string("workspaceId")?,
            application_id: optional(o, "applicationId")?,
            actor: EntryActor {
                kind: actor
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or(EntryError::Field("actor.type"))?
                    .to_owned(),
                id: optional(actor, "id")?,
                ip: optional(actor, "ip")?,
                user_agent: optional(actor, "userAgent")?,
            },
            action: string("action")?,
            target: optional(o, "target")?,
            outcome: Outcome::parse(&string("outcome")?).ok_or(EntryError::Field("outcome"))?,
            request_id: optional(o, "requestId")?,
            changes: o
                .get("changes")
                .and_then(Value::as_object)
                .cloned()
                .ok_or(EntryError::Field("changes"))?,
            prev_hash,
        })
    }
}

/// JSON with object keys sorted by their UTF-8 bytes and no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(index: u64, prev: Hash) -> Entry {
        let mut changes = Map::new();
        changes.insert("name".into(), "Acme \"prod\"".into());
        changes.insert("email".into(), "hmac-sha256:00ff".into());
        Entry {
            index,
            id: format!("evt_{index}"),
            at: "2026-11-23T17:40:00.123Z".into(),
            workspace_id: "ws_1".into(),
            application_id: Some("app_1".into()),
            actor: EntryActor {
                kind: "account".into(),
                id: Some("acc_1".into()),
                ip: Some("203.0.113.9".into()),
                user_agent: Some("curl/8.5 ünïcode".into()),
            },
            action: "application.key.rolled".into(),
            target: Some("key_1".into()),
            outcome: Outcome::Success,
            request_id: Some("req_1".into()),
            changes,
            prev_hash: prev,
        }
    }

    #[test]
    fn canonical_lines_are_sorted_compact_and_round_trip() {
        let entry = sample(3, [7; 32]);
        let line = entry.canonical();
        assert!(
            line.starts_with(r#"{"action":"application.key.rolled","actor":{"id":"acc_1","ip""#)
        );
        assert!(!line.contains(": ") && !line.contains('\n'));
        assert_eq!(Entry::parse(&line).unwrap(), entry);
        // The same content spelled differently is not canonical.
        let reordered = line.replacen(r#"{"action""#, r#"{ "action""#, 1);
        assert_eq!(Entry::parse(&reordered), Err(EntryError::NotCanonical));
    }

    #[test]
    fn the_chain_hash_is_domain_separated_from_the_merkle_leaf() {
        let line = sample(0, GENESIS).canonical();
        assert_ne!(
            chain_hash(line.as_bytes()),
            crate::merkle::leaf_hash(line.as_bytes())
        );
    }
}
