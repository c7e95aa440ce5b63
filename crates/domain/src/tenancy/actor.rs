//! Who is calling the control plane: a signed-in team member's account, or a workspace
//! management key acting with the role it was created with.

use crate::id::{AccountId, KeyId, WorkspaceId};
use crate::tenancy::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Account(AccountId),
    ManagementKey {
        key_id: KeyId,
        workspace_id: WorkspaceId,
        role: Role,
    },
}
