//! The credential vault's cryptography and rules, without I/O or HTTP.
//!
//! Keys form a hierarchy: the deployment's master key seals each workspace's key-encryption
//! keys (KEKs, numbered versions, [`keyring`]); a KEK wraps a fresh data key per secret version;
//! the data key encrypts the value ([`envelope`]). Every AEAD (XChaCha20-Poly1305) is bound by
//! its associated data to where the ciphertext belongs (workspace, vault, secret name, version,
//! KEK version), so a ciphertext copied to another row, secret or workspace does not open.
//! Plaintext values and keys live in [`zeroize::Zeroizing`] buffers, wiped when dropped.
//!
//! This crate owns the envelope format, machine principals' proof of possession ([`pop`]),
//! the credential resolver's rules (cache lifetimes per mode, backoff, circuit breaker:
//! [`resolver`]) and the vault's naming rules ([`rules`]). It knows
//! nothing of storage, permissions, principals or HTTP: the control plane decides who may use
//! it, storage keeps what it produces.

pub mod envelope;
pub mod keyring;
pub mod pop;
pub mod resolver;
pub mod rules;

pub use envelope::{Envelope, SecretContext};
pub use keyring::Kek;

/// Why the vault refused to open or make something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The ciphertext does not open here: another place's AAD, altered bytes, the wrong key.
    #[error("the sealed value does not open in this context")]
    Tampered,
    /// The envelope names a key version the keyring does not hold (destroyed, or never made).
    #[error("no key-encryption key version {0} for this workspace")]
    UnknownKey(u32),
    /// The bytes are not an envelope of a format this version knows.
    #[error("malformed envelope")]
    Malformed,
}
