//! TypeID-style identifiers: `<prefix>_<26 chars of lowercase Crockford base32 of a UUIDv7>`.
//!
//! Every identifier the API hands out is one of the types defined here, so an id of the wrong kind
//! cannot be passed where another is expected, and a malformed id is rejected at the edge.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const BODY_LEN: usize = 26;

/// Why a string is not an identifier of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected an id starting with `{expected}_`")]
    WrongPrefix { expected: &'static str },
    #[error("malformed id: the part after `{prefix}_` must be 26 lowercase base32 characters")]
    MalformedBody { prefix: &'static str },
}

/// Encodes a UUID as the 26-character TypeID suffix.
pub fn encode_uuid(uuid: Uuid) -> String {
    let mut out = String::with_capacity(BODY_LEN);
    encode_uuid_into(&mut out, uuid);
    out
}

fn encode_uuid_into(out: &mut String, uuid: Uuid) {
    let value = uuid.as_u128();
    let mut body = [0u8; BODY_LEN];
    for (i, c) in body.iter_mut().enumerate() {
        let shift = 125 - 5 * i as u32;
        *c = ALPHABET[((value >> shift) & 0x1f) as usize];
    }
    // The alphabet is ASCII.
    out.push_str(std::str::from_utf8(&body).unwrap_or_default());
}

/// Each byte's value in [`ALPHABET`], or `INVALID` (ids are parsed on every request).
const INVALID: u8 = 0xff;
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

fn decode_char(c: u8) -> Option<u8> {
    Some(DECODE[c as usize]).filter(|&d| d != INVALID)
}

/// Decodes the 26-character suffix back to a UUID; `None` when malformed.
pub fn decode_uuid(body: &str) -> Option<Uuid> {
    let bytes = body.as_bytes();
    if bytes.len() != BODY_LEN {
        return None;
    }
    let mut value: u128 = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let d = decode_char(c)?;
        // 26 * 5 = 130 bits: the first character may only carry the top 3 bits.
        if i == 0 && d > 7 {
            return None;
        }
        value = (value << 5) | u128::from(d);
    }
    Some(Uuid::from_u128(value))
}

/// `<prefix>_<uuid as TypeID>`.
fn with_prefix(prefix: &str, uuid: Uuid) -> String {
    let mut id = String::with_capacity(prefix.len() + 1 + BODY_LEN);
    id.push_str(prefix);
    id.push('_');
    encode_uuid_into(&mut id, uuid);
    id
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new identifier; time-ordered (UUIDv7).
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(with_prefix($prefix, Uuid::now_v7()))
            }

            /// The identifier as an owned string, without copying it.
            pub fn into_string(self) -> String {
                self.0
            }

            pub fn parse(s: &str) -> Result<Self, IdError> {
                let body = s
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .ok_or(IdError::WrongPrefix { expected: $prefix })?;
                decode_uuid(body).ok_or(IdError::MalformedBody { prefix: $prefix })?;
                Ok(Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn uuid(&self) -> Uuid {
                // Constructed only through `new` or `parse`, both of which guarantee a valid body.
                decode_uuid(&self.0[$prefix.len() + 1..]).unwrap_or_default()
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

define_id!(
    /// A workspace: the customer account.
    WorkspaceId, "ws");
define_id!(
    /// A team member of a workspace.
    MemberId, "mem");
define_id!(
    /// A person who can sign in to the control plane; may be a member of several workspaces.
    AccountId, "acc");
define_id!(
    /// An application: one isolated environment of a workspace.
    ApplicationId, "app");
define_id!(
    /// An API key (application or workspace management key).
    KeyId, "key");
define_id!(
    /// An end user of one application.
    UserId, "usr");
define_id!(
    /// A signed-in session of an application's user.
    SessionId, "ses");
define_id!(
    /// An organization (org unit) inside an application.
    OrganizationId, "org");
define_id!(
    /// A user's membership of an organization.
    OrgMembershipId, "orm");
define_id!(
    /// An invitation to join a workspace.
    InvitationId, "inv");
define_id!(
    /// One HTTP request, for correlation.
    RequestId, "req");
define_id!(
    /// An event or audit entry.
    EventId, "evt");
define_id!(
    /// A vault: a named set of secrets in a workspace.
    VaultId, "vlt");
define_id!(
    /// A secret in a vault (its versions are numbered).
    SecretId, "sec");
define_id!(
    /// A machine principal of a workspace (a service, a CI job, an agent).
    PrincipalId, "prn");
define_id!(
    /// An external identity issuer a workspace trusts for one principal (workload identity).
    TrustedIssuerId, "tis");
define_id!(
    /// One rotation of a secret (its steps and outcome).
    RotationId, "rot");
define_id!(
    /// A rotation policy: rules at one level (workspace, provider or secret).
    PolicyId, "pol");
define_id!(
    /// A request for a second person's approval of a rotation.
    ApprovalId, "apr");
define_id!(
    /// Where a workspace's alerts are delivered (Slack, email, a signed webhook).
    AlertChannelId, "alc");
define_id!(
    /// An alert raised in a workspace (listed in the API, acknowledgeable).
    AlertId, "alr");
define_id!(
    /// A durable unit of background work (a rotation's run, a schedule, a delivery).
    JobId, "job");
define_id!(
    /// A workspace's invoice for one month (a draft while the month runs).
    InvoiceId, "ivc");

impl RequestId {
    /// An id for a request just received: a UUIDv7 (the time, then random bits) like every id,
    /// but without the order within a millisecond that `new` keeps through the process-wide
    /// generator (a lock and 128-bit divisions, on every request). Request ids are looked up,
    /// never sorted.
    pub fn for_request() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let random: [u8; 10] = rand::random();
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
        Self(with_prefix(Self::PREFIX, uuid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn new_ids_roundtrip_and_sort_by_creation() {
        let a = WorkspaceId::new();
        let b = WorkspaceId::new();
        assert_eq!(WorkspaceId::parse(a.as_str()).unwrap(), a);
        assert!(a.as_str().starts_with("ws_"));
        assert_eq!(a.as_str().len(), 3 + 26);
        assert!(a < b, "UUIDv7 ids sort by creation time");
        assert_eq!(a.uuid().get_version_num(), 7);
    }

    #[test]
    fn request_ids_are_version_7_ids_of_now_and_differ() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let ids: Vec<RequestId> = (0..1000).map(|_| RequestId::for_request()).collect();
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        for id in &ids {
            assert_eq!(RequestId::parse(id.as_str()).unwrap(), *id);
            let uuid = id.uuid();
            assert_eq!(uuid.get_version_num(), 7);
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
            let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
            let millis = secs * 1000 + u64::from(nanos) / 1_000_000;
            assert!(
                (before..=after).contains(&millis),
                "{millis} not in {before}..={after}"
            );
        }
        let distinct: std::collections::HashSet<&str> = ids.iter().map(|i| i.as_str()).collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn known_typeid_vector() {
        // From the TypeID specification's valid test vectors.
        let uuid = Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
        assert_eq!(encode_uuid(uuid), "01h455vb4pex5vsknk084sn02q");
        assert_eq!(decode_uuid("01h455vb4pex5vsknk084sn02q"), Some(uuid));
        assert_eq!(decode_uuid("7zzzzzzzzzzzzzzzzzzzzzzzzz"), Some(Uuid::max()));
    }

    #[test]
    fn rejects_wrong_prefix_and_bad_bodies() {
        let app = ApplicationId::new();
        assert_eq!(
            WorkspaceId::parse(app.as_str()),
            Err(IdError::WrongPrefix { expected: "ws" })
        );
        for bad in [
            "ws_",
            "ws",
            "ws_01h455vb4pex5vsknk084sn02",
            "ws_01h455vb4pex5vsknk084sn02qq",
            "ws_01H455VB4PEX5VSKNK084SN02Q",
            "ws_81h455vb4pex5vsknk084sn02q",
            "ws_01h455vb4pex5vsknk084sn0iq",
            "ws-01h455vb4pex5vsknk084sn02q",
            "wsx_01h455vb4pex5vsknk084sn02q",
        ] {
            assert!(WorkspaceId::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn any_uuid_roundtrips(v in any::<u128>()) {
            let uuid = Uuid::from_u128(v);
            let body = encode_uuid(uuid);
            prop_assert_eq!(body.len(), 26);
            prop_assert_eq!(decode_uuid(&body), Some(uuid));
            let id = format!("key_{body}");
            prop_assert!(KeyId::parse(&id).is_ok());
        }

        #[test]
        fn parsing_arbitrary_strings_never_panics(s in ".{0,40}") {
            let _ = ApplicationId::parse(&s);
            let _ = decode_uuid(&s);
        }

        #[test]
        fn single_character_corruption_is_detected_or_still_valid(v in any::<u128>(), pos in 0usize..26, c in any::<char>()) {
            let body = encode_uuid(Uuid::from_u128(v));
            let mut chars: Vec<char> = body.chars().collect();
            chars[pos] = c;
            let corrupted: String = chars.into_iter().collect();
            if let Some(u) = decode_uuid(&corrupted) {
                prop_assert_eq!(encode_uuid(u), corrupted);
            }
        }
    }
}
