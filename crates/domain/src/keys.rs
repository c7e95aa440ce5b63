//! The key format: `{pk|sk}_{live|test}_` or `wk_live_`, 32 random bytes in base62 (43 characters),
//! then a 6-character base62 CRC32 of everything before it (the GitHub token scheme).
//!
//! A typo or a string that is not a key fails [`parse_key`] without any storage read. Keys are
//! stored only as their SHA-256 ([`KeyHash`]); the plaintext exists once, in the creation response.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 32 bytes need ceil(256 / log2(62)) = 43 base62 digits.
const RANDOM_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;

/// What a key can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum KeyKind {
    /// `pk_`: a frontend key, reaches only the public auth endpoints of its application.
    Publishable,
    /// `sk_`: a backend key, the admin API of its application.
    Secret,
    /// `wk_`: a workspace management key for the control plane.
    Management,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Publishable => "publishable",
            KeyKind::Secret => "secret",
            KeyKind::Management => "management",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "publishable" => Some(Self::Publishable),
            "secret" => Some(Self::Secret),
            "management" => Some(Self::Management),
            _ => None,
        }
    }
}

/// Live keys belong to production applications (and workspaces); test keys to staging and
/// development. The two never share data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum KeyMode {
    Live,
    Test,
}

impl KeyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyMode::Live => "live",
            KeyMode::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(Self::Live),
            "test" => Some(Self::Test),
            _ => None,
        }
    }
}

/// Why a string is not a well-formed key. Deliberately coarse: callers answer 401 either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("unknown key prefix")]
    UnknownPrefix,
    #[error("malformed key body")]
    MalformedBody,
    #[error("key checksum mismatch")]
    BadChecksum,
}

/// The SHA-256 of a full key: the only form in which a key is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The same hex, on the stack: the gateway names the key in every forwarded request.
    pub fn hex(&self) -> HexHash {
        let mut out = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = ::hex::encode_to_slice(self.0, &mut out);
        HexHash(out)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = unhex(s)?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// Constant-time equality, for comparing against a stored hash.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        same_secret(&self.0, &other.0)
    }
}

/// Whether two secrets are equal, in a time that depends on their lengths only (public: every
/// key of a kind has the same length), never on where they differ. `subtle`'s constant-time
/// equality, eight bytes at a time rather than byte by byte (which, with its optimisation
/// barrier on every byte, cost the gateway hundreds of instructions per request).
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_rest) = a.as_chunks::<8>();
    let (b_words, b_rest) = b.as_chunks::<8>();
    let mut same = subtle::Choice::from(1);
    for (x, y) in a_words.iter().zip(b_words) {
        same &= u64::from_ne_bytes(*x).ct_eq(&u64::from_ne_bytes(*y));
    }
    same &= a_rest.ct_eq(b_rest);
    same.into()
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

/// A [`KeyHash`] as 64 lowercase hex digits.
#[derive(Clone, Copy)]
pub struct HexHash([u8; 64]);

impl HexHash {
    pub fn as_str(&self) -> &str {
        // Hex digits only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A key that passed the format and checksum checks. Holds the plaintext only as long as the
/// request that carried it.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub kind: KeyKind,
    pub mode: KeyMode,
    raw: &'a str,
}

impl ParsedKey<'_> {
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.raw)
    }
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParsedKey({}…)", key_prefix(self.kind, self.mode))
    }
}

/// The visible prefix of a key of this kind and mode, e.g. `sk_live_`.
pub fn key_prefix(kind: KeyKind, mode: KeyMode) -> &'static str {
    match (kind, mode) {
        (KeyKind::Publishable, KeyMode::Live) => "pk_live_",
        (KeyKind::Publishable, KeyMode::Test) => "pk_test_",
        (KeyKind::Secret, KeyMode::Live) => "sk_live_",
        (KeyKind::Secret, KeyMode::Test) => "sk_test_",
        (KeyKind::Management, _) => "wk_live_",
    }
}

/// Checks prefix, length, alphabet and checksum. Does no I/O and allocates nothing.
pub fn parse_key(s: &str) -> Result<ParsedKey<'_>, KeyFormatError> {
    let bytes = s.as_bytes();
    if bytes.len() != 8 + RANDOM_LEN + CHECKSUM_LEN || bytes[2] != b'_' || bytes[7] != b'_' {
        return Err(KeyFormatError::UnknownPrefix);
    }
    let kind = match &s[..2] {
        "pk" => KeyKind::Publishable,
        "sk" => KeyKind::Secret,
        "wk" => KeyKind::Management,
        _ => return Err(KeyFormatError::UnknownPrefix),
    };
    let mode = match &s[3..7] {
        "live" => KeyMode::Live,
        "test" if kind != KeyKind::Management => KeyMode::Test,
        _ => return Err(KeyFormatError::UnknownPrefix),
    };
    if !bytes[8..].iter().all(u8::is_ascii_alphanumeric) {
        return Err(KeyFormatError::MalformedBody);
    }
    let (payload, checksum) = s.split_at(s.len() - CHECKSUM_LEN);
    let expected = base62_u32(crc32fast::hash(payload.as_bytes()));
    if same_secret(expected.as_bytes(), checksum.as_bytes()) {
        Ok(ParsedKey { kind, mode, raw: s })
    } else {
        Err(KeyFormatError::BadChecksum)
    }
}

/// A newly generated key. `plaintext` must be shown to the caller once and then dropped.
pub struct GeneratedKey {
    pub plaintext: String,
    pub hash: KeyHash,
    pub kind: KeyKind,
    pub mode: KeyMode,
}

impl GeneratedKey {
    pub fn last4(&self) -> String {
        self.plaintext[self.plaintext.len() - 4..].to_owned()
    }
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GeneratedKey({}…)", key_prefix(self.kind, self.mode))
    }
}

/// Generates a key of the given kind and mode from the OS random number generator.
pub fn generate_key(kind: KeyKind, mode: KeyMode) -> GeneratedKey {
    let mode = if kind == KeyKind::Management {
        KeyMode::Live
    } else {
        mode
    };
    let mut plaintext = String::with_capacity(8 + RANDOM_LEN + CHECKSUM_LEN);
    plaintext.push_str(key_prefix(kind, mode));
    plaintext.push_str(&random_base62());
    let checksum = base62_u32(crc32fast::hash(plaintext.as_bytes()));
    plaintext.push_str(&checksum);
    let hash = KeyHash::of(&plaintext);
    GeneratedKey {
        plaintext,
        hash,
        kind,
        mode,
    }
}

/// 32 random bytes as 43 base62 characters: the body of keys and opaque tokens.
pub fn random_base62() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base62_bytes(&bytes, RANDOM_LEN)
}

/// Big-endian base62 of `bytes`, left-padded with `0` to `width` digits.
fn base62_bytes(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            remainder = acc % 62;
        }
        *slot = BASE62[remainder as usize];
    }
    String::from_utf8(digits).unwrap_or_default()
}

fn base62_u32(mut v: u32) -> String {
    let mut digits = [b'0'; CHECKSUM_LEN];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(v % 62) as usize];
        v /= 62;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// An opaque bearer token (team sessions, invitations): `prefix` + 43 base62 characters.
/// Like keys, stored only as SHA-256.
pub struct OpaqueToken {
    pub plaintext: String,
    pub hash: KeyHash,
}

impl OpaqueToken {
    pub fn generate(prefix: &str) -> Self {
        let plaintext = format!("{prefix}{}", random_base62());
        let hash = KeyHash::of(&plaintext);
        Self { plaintext, hash }
    }

    /// A token that only the holder of `key` can compute from `from`, and always the same one
    /// (HMAC-SHA256): for a value that must be answered again, identical, without being stored
    /// (a rotating refresh token's successor).
    pub fn derived(prefix: &str, key: &[u8; 32], from: &str) -> Self {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
            .expect("HMAC takes a key of any length");
        mac.update(from.as_bytes());
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        let plaintext = format!("{prefix}{}", base62_bytes(&digest, RANDOM_LEN));
        let hash = KeyHash::of(&plaintext);
        Self { plaintext, hash }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn secrets_are_the_same_only_when_every_byte_and_the_length_are() {
        let key = generate_key(KeyKind::Secret, KeyMode::Live);
        let raw = key.plaintext.as_bytes();
        assert!(same_secret(raw, raw));
        assert!(same_secret(b"", b""));
        // A difference in any byte (within a word, or in the tail after the last whole one).
        for i in 0..raw.len() {
            let mut other = raw.to_vec();
            other[i] ^= 0x01;
            assert!(!same_secret(raw, &other), "byte {i}");
        }
        assert!(!same_secret(raw, &raw[..raw.len() - 1]));
        assert!(!same_secret(&raw[..8], raw));
    }

    proptest! {
        #[test]
        fn same_secret_agrees_with_equality(a in proptest::collection::vec(any::<u8>(), 0..40),
                                            b in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(same_secret(&a, &b), a == b);
            prop_assert!(same_secret(&a, &a.clone()));
        }
    }

    #[test]
    fn generated_keys_parse_with_their_kind_and_mode() {
        for (kind, mode, prefix) in [
            (KeyKind::Publishable, KeyMode::Live, "pk_live_"),
            (KeyKind::Publishable, KeyMode::Test, "pk_test_"),
            (KeyKind::Secret, KeyMode::Live, "sk_live_"),
            (KeyKind::Secret, KeyMode::Test, "sk_test_"),
            (KeyKind::Management, KeyMode::Live, "wk_live_"),
        ] {
            let key = generate_key(kind, mode);
            assert!(key.plaintext.starts_with(prefix));
            assert_eq!(key.plaintext.len(), 8 + 43 + 6);
            let parsed = parse_key(&key.plaintext).unwrap();
            assert_eq!((parsed.kind, parsed.mode), (kind, mode));
            assert_eq!(parsed.hash(), key.hash);
            assert_eq!(key.hash, KeyHash::from_hex(&key.hash.to_hex()).unwrap());
            assert_eq!(key.hash.hex().as_str(), key.hash.to_hex());
        }
    }

    #[test]
    fn derived_tokens_are_stable_per_input_and_key() {
        let key = [7u8; 32];
        let a = OpaqueToken::derived("rt_", &key, "app_1:rt_one");
        assert_eq!(
            a.plaintext,
            OpaqueToken::derived("rt_", &key, "app_1:rt_one").plaintext
        );
        assert_eq!(a.hash, KeyHash::of(&a.plaintext));
        assert!(a.plaintext.starts_with("rt_") && a.plaintext.len() == 3 + RANDOM_LEN);
        assert_ne!(
            a.plaintext,
            OpaqueToken::derived("rt_", &key, "app_1:rt_two").plaintext
        );
        assert_ne!(
            a.plaintext,
            OpaqueToken::derived("rt_", &[8u8; 32], "app_1:rt_one").plaintext
        );
    }

    #[test]
    fn base62_of_bytes_is_positional() {
        assert_eq!(base62_bytes(&[0, 0], 3), "000");
        assert_eq!(base62_bytes(&[0, 61], 3), "00z");
        assert_eq!(base62_bytes(&[0, 62], 3), "010");
        assert_eq!(base62_bytes(&[0xff; 32], 43).len(), 43);
        assert_eq!(base62_u32(u32::MAX), "4gfFC3");
    }

    #[test]
    fn rejects_non_keys() {
        let key = generate_key(KeyKind::Secret, KeyMode::Live).plaintext;
        assert_eq!(parse_key(""), Err(KeyFormatError::UnknownPrefix));
        assert_eq!(parse_key(&key[1..]), Err(KeyFormatError::UnknownPrefix));
        assert_eq!(
            parse_key(&key.replace("sk_live_", "xk_live_")),
            Err(KeyFormatError::UnknownPrefix)
        );
        assert_eq!(
            parse_key(&key.replace("sk_live_", "wk_test_")),
            Err(KeyFormatError::UnknownPrefix)
        );
        let mut garbled = key.clone().into_bytes();
        garbled[20] = b'-';
        assert_eq!(
            parse_key(std::str::from_utf8(&garbled).unwrap()),
            Err(KeyFormatError::MalformedBody)
        );
        // A key of one kind relabelled as another fails the checksum.
        assert_eq!(
            parse_key(&key.replace("sk_live_", "pk_live_")),
            Err(KeyFormatError::BadChecksum)
        );
    }

    proptest! {
        #[test]
        fn any_single_character_change_is_caught(pos in 8usize..57, c in proptest::char::range('0', 'z')) {
            let key = generate_key(KeyKind::Secret, KeyMode::Test).plaintext;
            let mut chars: Vec<char> = key.chars().collect();
            prop_assume!(chars[pos] != c && c.is_ascii_alphanumeric());
            chars[pos] = c;
            let typo: String = chars.into_iter().collect();
            prop_assert_eq!(parse_key(&typo), Err(KeyFormatError::BadChecksum));
        }

        #[test]
        fn parsing_arbitrary_input_never_panics(s in "\\PC{0,80}") {
            let _ = parse_key(&s);
        }

        #[test]
        fn parsing_arbitrary_key_shaped_input_never_panics(body in "[A-Za-z0-9]{49}") {
            let s = format!("sk_live_{body}");
            let _ = parse_key(&s);
        }
    }
}

/// Signed requests (CONTRACT.md): a secret key signs
/// `METHOD + "\n" + PATH_WITH_QUERY + "\n" + TIMESTAMP + "\n" + hex(SHA-256(body))` with
/// HMAC-SHA256, hex-encoded in `X-Signature`, next to `X-Api-Key-Id` and `X-Timestamp`.
pub mod signing {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    /// How far a request's timestamp may be from the server's clock, either way.
    pub const MAX_SKEW_SECONDS: i64 = 300;

    /// Hex SHA-256 of the empty body: what a request without one signs.
    pub const EMPTY_BODY_DIGEST: &str =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// Hex SHA-256 of a body (of the empty body for requests without one).
    pub fn body_digest(body: &[u8]) -> String {
        hex::encode(Sha256::digest(body))
    }

    fn payload(method: &str, path_with_query: &str, timestamp: &str, body_digest: &str) -> String {
        format!("{method}\n{path_with_query}\n{timestamp}\n{body_digest}")
    }

    /// The hex signature a client sends.
    pub fn sign(
        secret: &str,
        method: &str,
        path_with_query: &str,
        timestamp: &str,
        body_digest: &str,
    ) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return String::new();
        };
        mac.update(payload(method, path_with_query, timestamp, body_digest).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `signature` (hex) is the signature of the request, compared in constant time.
    pub fn verify(
        secret: &str,
        signature: &str,
        method: &str,
        path_with_query: &str,
        timestamp: &str,
        body_digest: &str,
    ) -> bool {
        let expected = sign(secret, method, path_with_query, timestamp, body_digest);
        let given = signature.trim().to_ascii_lowercase();
        super::same_secret(expected.as_bytes(), given.as_bytes())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn signatures_cover_method_path_time_and_body() {
            let digest = body_digest(b"{\"email\":\"a@b.c\"}");
            let sig = sign(
                "sk_test_secret",
                "POST",
                "/v1/app_1/users?x=1",
                "1700000000",
                &digest,
            );
            assert_eq!(sig.len(), 64);
            assert!(verify(
                "sk_test_secret",
                &sig,
                "POST",
                "/v1/app_1/users?x=1",
                "1700000000",
                &digest
            ));
            assert!(verify(
                "sk_test_secret",
                &sig.to_uppercase(),
                "POST",
                "/v1/app_1/users?x=1",
                "1700000000",
                &digest
            ));
            for (secret, method, path, ts, body) in [
                (
                    "sk_test_other",
                    "POST",
                    "/v1/app_1/users?x=1",
                    "1700000000",
                    digest.as_str(),
                ),
                (
                    "sk_test_secret",
                    "GET",
                    "/v1/app_1/users?x=1",
                    "1700000000",
                    digest.as_str(),
                ),
                (
                    "sk_test_secret",
                    "POST",
                    "/v1/app_1/users?x=2",
                    "1700000000",
                    digest.as_str(),
                ),
                (
                    "sk_test_secret",
                    "POST",
                    "/v1/app_1/users?x=1",
                    "1700000001",
                    digest.as_str(),
                ),
                (
                    "sk_test_secret",
                    "POST",
                    "/v1/app_1/users?x=1",
                    "1700000000",
                    &body_digest(b"{}"),
                ),
            ] {
                assert!(!verify(secret, &sig, method, path, ts, body));
            }
            assert!(!verify("sk_test_secret", "zz", "POST", "/", "1", &digest));
        }
    }
}
