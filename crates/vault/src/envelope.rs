//! The envelope of one secret version: the value encrypted under a fresh data key, and the data
//! key wrapped by a workspace KEK, each AEAD bound to the secret's place.
//!
//! Bytes: `AV1` · KEK version (u32, big-endian) · wrapped data key (24-byte nonce, 32-byte key,
//! 16-byte tag) · 24-byte nonce · encrypted value with its tag. The key id (the KEK version) is
//! in every envelope; the workspace is in the AAD.

use authsome_domain::id::{VaultId, WorkspaceId};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::{Kek, VaultError};

const MAGIC: &[u8; 3] = b"AV1";
const NONCE: usize = 24;
const TAG: usize = 16;
const WRAPPED_KEY: usize = NONCE + 32 + TAG;
const HEADER: usize = MAGIC.len() + 4;

/// Where a secret version lives: what its ciphertexts are bound to.
#[derive(Debug, Clone, Copy)]
pub struct SecretContext<'a> {
    pub workspace: &'a WorkspaceId,
    pub vault: &'a VaultId,
    pub name: &'a str,
    pub version: u32,
}

impl SecretContext<'_> {
    fn value_aad(&self) -> Vec<u8> {
        format!(
            "authsome:vault:value:v1\0{}\0{}\0{}\0{}",
            self.workspace, self.vault, self.name, self.version
        )
        .into_bytes()
    }

    fn key_aad(&self, kek_version: u32) -> Vec<u8> {
        format!(
            "authsome:vault:data-key:v1\0{}\0{}\0{}\0{}\0{kek_version}",
            self.workspace, self.vault, self.name, self.version
        )
        .into_bytes()
    }
}

/// One sealed secret version.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    kek_version: u32,
    wrapped_key: Vec<u8>,
    nonce: [u8; NONCE],
    ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("kek_version", &self.kek_version)
            .field("bytes", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl Envelope {
    /// Encrypts `plaintext` for `ctx` under a fresh data key wrapped by `kek`. The KEK must be
    /// `ctx.workspace`'s.
    pub fn seal(kek: &Kek, ctx: SecretContext<'_>, plaintext: &[u8]) -> Result<Self, VaultError> {
        if kek.workspace() != ctx.workspace {
            return Err(VaultError::Tampered);
        }
        let data_key = Zeroizing::new(<[u8; 32]>::from(XChaCha20Poly1305::generate_key(
            &mut OsRng,
        )));
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = XChaCha20Poly1305::new(data_key.as_ref().into())
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &ctx.value_aad(),
                },
            )
            .map_err(|_| VaultError::Malformed)?;
        Ok(Self {
            kek_version: kek.version(),
            wrapped_key: wrap(kek, ctx, &data_key)?,
            nonce: nonce.into(),
            ciphertext,
        })
    }

    /// The version of the KEK that wraps this envelope's data key.
    pub fn kek_version(&self) -> u32 {
        self.kek_version
    }

    /// The value, if `kek` is the one named and `ctx` is where it was sealed.
    pub fn open(
        &self,
        kek: &Kek,
        ctx: SecretContext<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let data_key = self.data_key(kek, ctx)?;
        XChaCha20Poly1305::new(data_key.as_ref().into())
            .decrypt(
                XNonce::from_slice(&self.nonce),
                Payload {
                    msg: &self.ciphertext,
                    aad: &ctx.value_aad(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Tampered)
    }

    /// The same value under the same data key, the key now wrapped by `to` (a KEK rotation's
    /// background work: the value's ciphertext is not touched).
    pub fn rewrap(&self, from: &Kek, to: &Kek, ctx: SecretContext<'_>) -> Result<Self, VaultError> {
        let data_key = self.data_key(from, ctx)?;
        Ok(Self {
            kek_version: to.version(),
            wrapped_key: wrap(to, ctx, &data_key)?,
            nonce: self.nonce,
            ciphertext: self.ciphertext.clone(),
        })
    }

    fn data_key(
        &self,
        kek: &Kek,
        ctx: SecretContext<'_>,
    ) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        if kek.version() != self.kek_version {
            return Err(VaultError::UnknownKey(self.kek_version));
        }
        if kek.workspace() != ctx.workspace {
            return Err(VaultError::Tampered);
        }
        let (nonce, sealed) = self.wrapped_key.split_at(NONCE);
        let key = Zeroizing::new(
            kek.cipher()
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: &ctx.key_aad(self.kek_version),
                    },
                )
                .map_err(|_| VaultError::Tampered)?,
        );
        key.as_slice()
            .try_into()
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Tampered)
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + WRAPPED_KEY + NONCE + self.ciphertext.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.kek_version.to_be_bytes());
        out.extend_from_slice(&self.wrapped_key);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses the stored form; [`VaultError::Malformed`] for anything else (a truncated one
    /// included).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() < HEADER + WRAPPED_KEY + NONCE + TAG || &bytes[..MAGIC.len()] != MAGIC {
            return Err(VaultError::Malformed);
        }
        let (version, rest) = bytes[MAGIC.len()..].split_at(4);
        let (wrapped_key, rest) = rest.split_at(WRAPPED_KEY);
        let (nonce, ciphertext) = rest.split_at(NONCE);
        Ok(Self {
            kek_version: u32::from_be_bytes(version.try_into().map_err(|_| VaultError::Malformed)?),
            wrapped_key: wrapped_key.to_vec(),
            nonce: nonce.try_into().map_err(|_| VaultError::Malformed)?,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

fn wrap(kek: &Kek, ctx: SecretContext<'_>, data_key: &[u8; 32]) -> Result<Vec<u8>, VaultError> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = kek
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: data_key,
                aad: &ctx.key_aad(kek.version()),
            },
        )
        .map_err(|_| VaultError::Malformed)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Place {
        ws: WorkspaceId,
        vault: VaultId,
    }

    impl Place {
        fn new() -> Self {
            Self {
                ws: WorkspaceId::new(),
                vault: VaultId::new(),
            }
        }

        fn ctx<'a>(&'a self, name: &'a str, version: u32) -> SecretContext<'a> {
            SecretContext {
                workspace: &self.ws,
                vault: &self.vault,
                name,
                version,
            }
        }
    }

    #[test]
    fn sealed_values_open_only_where_they_were_sealed() {
        let here = Place::new();
        let kek = Kek::generate(&here.ws, 1);
        let env = Envelope::seal(&kek, here.ctx("DB_URL", 2), b"postgres://secret").unwrap();
        let stored = Envelope::from_bytes(&env.to_bytes()).unwrap();
        assert_eq!(stored, env);
        assert_eq!(
            stored.open(&kek, here.ctx("DB_URL", 2)).unwrap().as_slice(),
            b"postgres://secret"
        );
        // Another version, another name, another vault, another workspace: each refused.
        for (ctx, why) in [
            (here.ctx("DB_URL", 1), "version"),
            (here.ctx("DB_URL2", 2), "name"),
        ] {
            assert_eq!(
                stored.open(&kek, ctx).unwrap_err(),
                VaultError::Tampered,
                "{why}"
            );
        }
        let other_vault = VaultId::new();
        let moved = SecretContext {
            vault: &other_vault,
            ..here.ctx("DB_URL", 2)
        };
        assert_eq!(stored.open(&kek, moved).unwrap_err(), VaultError::Tampered);
        let elsewhere = Place::new();
        let their_kek = Kek::generate(&elsewhere.ws, 1);
        assert_eq!(
            stored
                .open(&their_kek, elsewhere.ctx("DB_URL", 2))
                .unwrap_err(),
            VaultError::Tampered
        );
        // The wrong key version is named, not guessed at.
        assert_eq!(
            stored
                .open(&Kek::generate(&here.ws, 2), here.ctx("DB_URL", 2))
                .unwrap_err(),
            VaultError::UnknownKey(1)
        );
        assert_eq!(
            stored
                .open(&Kek::generate(&here.ws, 1), here.ctx("DB_URL", 2))
                .unwrap_err(),
            VaultError::Tampered
        );
    }

    #[test]
    fn altered_or_truncated_envelopes_are_refused() {
        let here = Place::new();
        let kek = Kek::generate(&here.ws, 7);
        let bytes = Envelope::seal(&kek, here.ctx("k", 1), b"value")
            .unwrap()
            .to_bytes();
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let opened =
                Envelope::from_bytes(&altered).and_then(|e| e.open(&kek, here.ctx("k", 1)));
            assert!(opened.is_err(), "byte {i} altered and still opened");
        }
        for len in [0, 3, HEADER, bytes.len() - 1] {
            let opened =
                Envelope::from_bytes(&bytes[..len]).and_then(|e| e.open(&kek, here.ctx("k", 1)));
            assert!(opened.is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn rewrapping_moves_the_data_key_to_the_new_kek() {
        let here = Place::new();
        let old = Kek::generate(&here.ws, 1);
        let new = Kek::generate(&here.ws, 2);
        let env = Envelope::seal(&old, here.ctx("API_KEY", 1), b"sk_123").unwrap();
        let moved = env.rewrap(&old, &new, here.ctx("API_KEY", 1)).unwrap();
        assert_eq!(moved.kek_version(), 2);
        assert_eq!(
            moved.ciphertext, env.ciphertext,
            "the value is not re-encrypted"
        );
        assert_eq!(
            moved.open(&new, here.ctx("API_KEY", 1)).unwrap().as_slice(),
            b"sk_123"
        );
        assert_eq!(
            moved.open(&old, here.ctx("API_KEY", 1)).unwrap_err(),
            VaultError::UnknownKey(2)
        );
        // A rewrap bound to another place fails instead of moving the key there.
        assert!(env.rewrap(&old, &new, here.ctx("OTHER", 1)).is_err());
    }

    #[test]
    fn a_kek_of_another_workspace_cannot_seal_here() {
        let here = Place::new();
        let theirs = Kek::generate(&WorkspaceId::new(), 1);
        assert!(Envelope::seal(&theirs, here.ctx("k", 1), b"v").is_err());
    }
}
