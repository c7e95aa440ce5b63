//! The deployment's master key: 32 random bytes from which everything encrypted at rest is
//! sealed, with ChaCha20-Poly1305 bound to a context string (the AAD) so a ciphertext cannot be
//! moved to another purpose. Every replica of a deployment holds the same key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

const NONCE_LEN: usize = 12;
const CHECK_CONTEXT: &[u8] = b"authsome:master-key-check:v1";
const CHECK_PLAINTEXT: &[u8] = b"authsome master key check";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    #[error("must be 32 bytes encoded in base64")]
    Malformed,
    #[error("cannot decrypt: wrong master key, wrong context, or tampered data")]
    Decrypt,
}

#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let key = ChaCha20Poly1305::generate_key(&mut OsRng);
        Self(key.into())
    }

    pub fn from_base64(s: &str) -> Result<Self, MasterKeyError> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|_| MasterKeyError::Malformed)?;
        Ok(Self(
            bytes.try_into().map_err(|_| MasterKeyError::Malformed)?,
        ))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&self.0.into())
    }

    /// `nonce || ciphertext`, authenticated together with `context`.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext,
            aad: context,
        };
        // Encryption fails only for plaintexts beyond 256 GiB.
        let sealed = self.cipher().encrypt(&nonce, payload).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, MasterKeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(MasterKeyError::Decrypt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| MasterKeyError::Decrypt)
    }

    /// A value stored with the data at first start; opening it later proves the key is the same.
    /// A key for another purpose, derived from this one (HMAC-SHA256 over `context`): the same
    /// on every replica, useless for anything else.
    pub fn derive(&self, context: &[u8]) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0) else {
            return [0; 32];
        };
        mac.update(context);
        mac.finalize().into_bytes().into()
    }

    pub fn check_value(&self) -> String {
        STANDARD.encode(self.seal(CHECK_CONTEXT, CHECK_PLAINTEXT))
    }

    pub fn verify_check_value(&self, stored: &str) -> Result<(), MasterKeyError> {
        let sealed = STANDARD
            .decode(stored)
            .map_err(|_| MasterKeyError::Decrypt)?;
        match self.open(CHECK_CONTEXT, &sealed)? {
            p if p == CHECK_PLAINTEXT => Ok(()),
            _ => Err(MasterKeyError::Decrypt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_bound_to_context() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"ctx-a", b"secret");
        assert_eq!(key.open(b"ctx-a", &sealed).unwrap(), b"secret");
        assert_eq!(key.open(b"ctx-b", &sealed), Err(MasterKeyError::Decrypt));
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert_eq!(key.open(b"ctx-a", &tampered), Err(MasterKeyError::Decrypt));
        assert_eq!(
            MasterKey::generate().open(b"ctx-a", &sealed),
            Err(MasterKeyError::Decrypt)
        );
    }

    #[test]
    fn check_value_and_encoding() {
        let key = MasterKey::generate();
        let again = MasterKey::from_base64(&key.to_base64()).unwrap();
        let check = key.check_value();
        assert!(again.verify_check_value(&check).is_ok());
        assert!(MasterKey::generate().verify_check_value(&check).is_err());
        assert_eq!(
            MasterKey::from_base64("c2hvcnQ=").err(),
            Some(MasterKeyError::Malformed)
        );
        assert_eq!(
            MasterKey::from_base64("!!").err(),
            Some(MasterKeyError::Malformed)
        );
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }
}
