//! Workspace key-encryption keys (KEKs): 32 random bytes per version, kept only sealed under
//! the master key with an AAD naming the workspace and the version, so a sealed KEK moved to
//! another workspace or version does not open.

use authsome_domain::id::WorkspaceId;
use authsome_domain::master_key::MasterKey;
use chacha20poly1305::aead::{KeyInit, OsRng};
use chacha20poly1305::XChaCha20Poly1305;
use zeroize::Zeroizing;

use crate::VaultError;

/// One version of a workspace's key-encryption key, in the clear (wiped when dropped).
pub struct Kek {
    workspace: WorkspaceId,
    version: u32,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek")
            .field("workspace", &self.workspace)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Kek {
    /// A new random key for `workspace`'s `version`.
    pub fn generate(workspace: &WorkspaceId, version: u32) -> Self {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        Self {
            workspace: workspace.clone(),
            version,
            key: Zeroizing::new(key.into()),
        }
    }

    pub fn workspace(&self) -> &WorkspaceId {
        &self.workspace
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub(crate) fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.as_ref().into())
    }

    /// The key's bytes, for an external KMS to wrap (a customer-managed key). Never stored or
    /// logged in the clear.
    pub fn expose_for_wrapping(&self) -> &[u8; 32] {
        &self.key
    }

    /// A key an external KMS unwrapped for `workspace`'s `version`.
    pub fn from_unwrapped(
        workspace: &WorkspaceId,
        version: u32,
        bytes: &[u8],
    ) -> Result<Self, VaultError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| VaultError::Malformed)?;
        Ok(Self {
            workspace: workspace.clone(),
            version,
            key: Zeroizing::new(key),
        })
    }

    /// The key sealed under the master key, for storage.
    pub fn seal(&self, master: &MasterKey) -> Vec<u8> {
        master.seal(&context(&self.workspace, self.version), self.key.as_ref())
    }

    /// Opens a sealed key of `workspace`'s `version`; [`VaultError::Tampered`] when it was
    /// sealed for another place or under another master key.
    pub fn open(
        master: &MasterKey,
        workspace: &WorkspaceId,
        version: u32,
        sealed: &[u8],
    ) -> Result<Self, VaultError> {
        let plain = Zeroizing::new(
            master
                .open(&context(workspace, version), sealed)
                .map_err(|_| VaultError::Tampered)?,
        );
        let key: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::Malformed)?;
        Ok(Self {
            workspace: workspace.clone(),
            version,
            key: Zeroizing::new(key),
        })
    }
}

fn context(workspace: &WorkspaceId, version: u32) -> Vec<u8> {
    format!("authsome:vault:kek:v1\0{workspace}\0{version}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_for_its_workspace_version_and_master() {
        let master = MasterKey::generate();
        let ws = WorkspaceId::new();
        let kek = Kek::generate(&ws, 3);
        let sealed = kek.seal(&master);
        let opened = Kek::open(&master, &ws, 3, &sealed).unwrap();
        assert_eq!(*opened.key, *kek.key);
        assert_eq!(
            Kek::open(&master, &ws, 4, &sealed).unwrap_err(),
            VaultError::Tampered
        );
        assert_eq!(
            Kek::open(&master, &WorkspaceId::new(), 3, &sealed).unwrap_err(),
            VaultError::Tampered
        );
        assert_eq!(
            Kek::open(&MasterKey::generate(), &ws, 3, &sealed).unwrap_err(),
            VaultError::Tampered
        );
        assert!(!format!("{kek:?}").contains("key:"), "never printed");
    }
}
