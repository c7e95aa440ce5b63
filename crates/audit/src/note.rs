//! Signed notes as Go's `golang.org/x/mod/sumdb/note` and C2SP `signed-note` define them, and
//! the `tlog-checkpoint` text they carry.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one line per signature:
//! `— <name> <base64(key id (4 bytes, big-endian) || Ed25519 signature)>`. The key id is the
//! first four bytes of `SHA-256(name || "\n" || 0x01 || public key)`. A verifier key is written
//! `<name>+<key id as 8 hex digits>+<base64(0x01 || public key)>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("the note carries no signature by a known key")]
    UnknownKey,
    #[error("the signature of {0} does not verify")]
    BadSignature(String),
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// The key id of an Ed25519 key named `name`.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Signs notes with one named Ed25519 key.
pub struct NoteSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl NoteSigner {
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::MalformedKey("a key name has no spaces or '+'"));
        }
        let key = SigningKey::from_bytes(seed);
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// Reads a Go private key string: `PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`.
    pub fn from_private_key(skey: &str) -> Result<Self, NoteError> {
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey(
                "a private key starts with PRIVATE+KEY+",
            ))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedKey("expected name+id+key"));
        };
        let bytes = B64
            .decode(key)
            .map_err(|_| NoteError::MalformedKey("the key is not base64"))?;
        let seed: [u8; 32] = match bytes.split_first() {
            Some((&ALG_ED25519, seed)) => seed
                .try_into()
                .map_err(|_| NoteError::MalformedKey("an Ed25519 seed is 32 bytes"))?,
            _ => return Err(NoteError::MalformedKey("not an Ed25519 key")),
        };
        let signer = Self::new(name, &seed)?;
        if format!("{:08x}", signer.id) != id {
            return Err(NoteError::MalformedKey("the key id does not match the key"));
        }
        Ok(signer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// The note: `text` (which must end in a newline), a blank line, this key's signature.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') || text.contains("\n\n") || text.contains('\r') {
            return Err(NoteError::Malformed(
                "the text ends in one newline and has no blank lines",
            ));
        }
        let signature = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.id.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

/// A public key that checks notes' signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Reads `<name>+<hex id>+<base64(0x01 || public key)>`.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedKey("expected <name>+<id>+<key>"));
        };
        if !valid_name(name) {
            return Err(NoteError::MalformedKey("bad key name"));
        }
        if id.len() != 8
            || !id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(NoteError::MalformedKey(
                "the key id is 8 lower-case hex digits",
            ));
        }
        let bytes = B64
            .decode(key)
            .map_err(|_| NoteError::MalformedKey("the key is not base64"))?;
        let public: [u8; 32] = match bytes.split_first() {
            Some((&ALG_ED25519, public)) => public
                .try_into()
                .map_err(|_| NoteError::MalformedKey("an Ed25519 public key is 32 bytes"))?,
            _ => return Err(NoteError::MalformedKey("not an Ed25519 key")),
        };
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 point"))?;
        let computed = key_id(name, &public);
        if format!("{computed:08x}") != id {
            return Err(NoteError::MalformedKey("the key id does not match the key"));
        }
        Ok(Self {
            name: name.to_owned(),
            id: computed,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The verifier key string.
    pub fn encode(&self) -> String {
        let mut bytes = vec![ALG_ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(bytes))
    }
}

/// A signature on a note that one of the given verifiers checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    pub name: String,
    pub id: u32,
}

/// Splits `note` into its text and checks its signatures: every signature by a known key must
/// verify, and at least one must be by a known key. Returns the text and who signed it.
pub fn open<'a>(
    note: &'a str,
    verifiers: &[NoteVerifier],
) -> Result<(&'a str, Vec<VerifiedSignature>), NoteError> {
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(NoteError::Malformed("the signatures end with a newline"));
    }
    let mut verified = Vec::new();
    for line in sigs.lines() {
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "a signature line starts with an em dash",
        ))?;
        let (name, blob) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "a signature line is '— name signature'",
        ))?;
        let blob = B64
            .decode(blob)
            .map_err(|_| NoteError::Malformed("a signature is base64"))?;
        if blob.len() < 4 {
            return Err(NoteError::Malformed("a signature starts with a key id"));
        }
        let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
        let Some(verifier) = verifiers.iter().find(|v| v.name == name && v.id == id) else {
            continue;
        };
        let signature = ed25519_dalek::Signature::from_slice(&blob[4..])
            .map_err(|_| NoteError::BadSignature(name.to_owned()))?;
        verifier
            .key
            .verify(text.as_bytes(), &signature)
            .map_err(|_| NoteError::BadSignature(name.to_owned()))?;
        verified.push(VerifiedSignature {
            name: name.to_owned(),
            id,
        });
    }
    if verified.is_empty() {
        return Err(NoteError::UnknownKey);
    }
    Ok((text, verified))
}

/// A C2SP `tlog-checkpoint`: origin, tree size, root hash, then extension lines (ours:
/// `time <unix milliseconds>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            text.push_str(e);
            text.push('\n');
        }
        text
    }

    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or(NoteError::MalformedCheckpoint("no origin line"))?;
        let size = lines
            .next()
            .and_then(|l| {
                (!(l.starts_with('+') || (l.len() > 1 && l.starts_with('0'))))
                    .then(|| l.parse().ok())
                    .flatten()
            })
            .ok_or(NoteError::MalformedCheckpoint(
                "the second line is the tree size",
            ))?;
        let root = lines
            .next()
            .and_then(|l| B64.decode(l).ok())
            .and_then(|b| <Hash>::try_from(b).ok())
            .ok_or(NoteError::MalformedCheckpoint(
                "the third line is the base64 root hash",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions: lines.map(str::to_owned).collect(),
        })
    }

    /// The `time` extension, in Unix milliseconds.
    pub fn time_ms(&self) -> Option<i64> {
        self.extensions
            .iter()
            .find_map(|e| e.strip_prefix("time ").and_then(|t| t.parse().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of Go's golang.org/x/mod/sumdb/note documentation.
    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const SIGNED: &str = "If you think cryptography is the answer to your problem,\n\
                          then you don't know what your problem is.\n\
                          \n\
                          \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn signs_and_opens_exactly_as_go_does() {
        let signer = NoteSigner::from_private_key(SKEY).unwrap();
        assert_eq!(signer.verifier().encode(), VKEY);
        assert_eq!(signer.sign(TEXT).unwrap(), SIGNED);
        let verifier = NoteVerifier::parse(VKEY).unwrap();
        let (text, sigs) = open(SIGNED, std::slice::from_ref(&verifier)).unwrap();
        assert_eq!(text, TEXT);
        assert_eq!(sigs[0].id, 0xc74f20a3);
        let forged = SIGNED.replace("cryptography", "cryptographY");
        assert_eq!(
            open(&forged, &[verifier]),
            Err(NoteError::BadSignature("PeterNeumann".into()))
        );
    }

    #[test]
    fn unknown_keys_and_mangled_verifier_keys_are_refused() {
        let other = NoteSigner::new("other.example/audit", &[7; 32]).unwrap();
        assert_eq!(
            open(SIGNED, &[other.verifier()]),
            Err(NoteError::UnknownKey)
        );
        for bad in [
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+AhpjsQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3",
        ] {
            assert!(NoteVerifier::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checkpoints_round_trip() {
        let cp = Checkpoint {
            origin: "auth.example.com/audit/ws_1".into(),
            size: 42,
            root: [9; 32],
            extensions: vec!["time 1700000000000".into()],
        };
        let text = cp.to_text();
        assert_eq!(Checkpoint::parse(&text).unwrap(), cp);
        assert_eq!(cp.time_ms(), Some(1_700_000_000_000));
        assert!(Checkpoint::parse("origin\n01\nAAAA\n").is_err());
    }
}
