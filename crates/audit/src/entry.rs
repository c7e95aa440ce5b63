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
    /// The canonical line (without a newline): what [`canonical_json`] makes of the entry as a
    /// JSON object, written straight from the fields (the writer does it for every entry). The
    /// keys below are in byte order and need no escaping; the tests hold this to the generic
    /// encoding of `Entry::value`.
    pub fn canonical(&self) -> String {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"action\":");
        write_json(&mut out, &self.action);
        out.extend_from_slice(b",\"actor\":{");
        let mut actor = Fields::new(&mut out);
        actor.optional("id", self.actor.id.as_deref());
        actor.optional("ip", self.actor.ip.as_deref());
        actor.string("type", &self.actor.kind);
        actor.optional("userAgent", self.actor.user_agent.as_deref());
        out.push(b'}');
        let mut o = Fields::continuing(&mut out);
        o.optional("applicationId", self.application_id.as_deref());
        o.string("at", &self.at);
        o.key("changes");
        write_object(&self.changes, o.out);
        o.string("id", &self.id);
        o.key("index");
        write_json(o.out, &self.index);
        o.string("outcome", self.outcome.as_str());
        o.string("prevHash", &hex::encode(self.prev_hash));
        o.optional("requestId", self.request_id.as_deref());
        o.optional("target", self.target.as_deref());
        o.key("v");
        write_json(o.out, &VERSION);
        o.string("workspaceId", &self.workspace_id);
        out.push(b'}');
        utf8(out)
    }

    /// The entry as a JSON object: the definition of its canonical line, which is
    /// `canonical_json(&entry.value())`.
    pub fn value(&self) -> Value {
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
        Value::Object(o)
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

/// The fields of an object being written, each key a literal that needs no escaping.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Fields<'a> {
    /// Fields of an object whose `{` was just written.
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, first: true }
    }

    /// Further fields of an object that already has some.
    fn continuing(out: &'a mut Vec<u8>) -> Self {
        Self { out, first: false }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        write_json(self.out, value);
    }

    fn optional(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.string(key, value);
        }
    }
}

/// JSON with object keys sorted by their UTF-8 bytes and no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    utf8(out)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        // Strings escaped, numbers and literals spelled as serde_json writes them.
        other => write_json(out, other),
    }
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    // serde_json's map is already in key order unless a crate in the build turns on its
    // `preserve_order` feature; sorting a sorted list is one pass.
    let mut fields: Vec<(&String, &Value)> = map.iter().collect();
    fields.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (k, v)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(out, k.as_str());
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

/// Writes `value` as serde_json's compact form. Writing a string, number or literal into a
/// `Vec` cannot fail.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(&mut *out, value);
}

/// The written bytes as text: serde_json writes UTF-8 and every other byte here is ASCII, so
/// the lossy branch is never taken.
fn utf8(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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

    /// The line written straight from the fields is the generic canonical encoding of the
    /// entry's JSON object, whichever optional fields are present and whatever the strings
    /// and changes hold.
    #[test]
    fn the_direct_line_is_the_generic_encoding() {
        let full = sample(12_345_678_901, [0xab; 32]);
        let mut bare = sample(0, GENESIS);
        bare.application_id = None;
        bare.target = None;
        bare.request_id = None;
        bare.actor = EntryActor {
            kind: "system".into(),
            id: None,
            ip: None,
            user_agent: None,
        };
        bare.changes = Map::new();
        let mut odd = sample(u64::MAX, [1; 32]);
        odd.actor.user_agent = Some("tab\tquote\"back\\slash\u{1}\u{7f}\u{2028}é😀".into());
        odd.action = "a\nb".into();
        odd.changes = serde_json::json!({
            "z": [1, -2, 3.5, true, null, {"b": "x", "a": [], "A": {}}],
            "keys": {"keys": ["meta\"data", "ü"]},
            "Upper": "comes first",
            "": 0,
            "é": u64::MAX,
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        for entry in [full, bare, odd] {
            let line = entry.canonical();
            assert_eq!(line, canonical_json(&entry.value()));
            assert_eq!(Entry::parse(&line).as_ref(), Ok(&entry));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_entry_writes_its_generic_encoding(
            action in "\\PC{0,12}",
            agent in proptest::option::of("\\PC{0,20}"),
            target in proptest::option::of("[ -~]{0,8}"),
            index in proptest::num::u64::ANY,
            values in proptest::collection::btree_map("\\PC{0,6}", "\\PC{0,6}", 0..5),
        ) {
            let mut entry = sample(index, [9; 32]);
            entry.action = action;
            entry.actor.user_agent = agent;
            entry.target = target;
            entry.changes = values.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            proptest::prop_assert_eq!(entry.canonical(), canonical_json(&entry.value()));
        }
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
