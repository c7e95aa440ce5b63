//! `authsome init`: the root workspace, its break-glass owner and one management key, once.

use authsome_domain::id::{AccountId, MemberId, WorkspaceId};
use authsome_domain::keys::{KeyKind, KeyMode};
use authsome_domain::password;
use authsome_domain::tenancy::member::parse_email;
use authsome_domain::tenancy::{
    Account, KycStatus, Member, MemberStatus, PaymentStatus, Plan, Role, Workspace,
    WorkspaceLimits, WorkspaceStatus,
};
use authsome_storage::{BootstrapOutcome, RootBootstrap};

use crate::keys::new_key;
use crate::{ControlPlane, Result};

pub enum BootstrapResult {
    /// Done now. `password` is set when it was generated (not given by the operator).
    Created {
        workspace_id: WorkspaceId,
        owner_email: String,
        password: Option<String>,
        management_key: String,
    },
    /// An earlier `init` did it; nothing changed.
    AlreadyDone {
        workspace_id: WorkspaceId,
        owner_email: Option<String>,
    },
}

impl ControlPlane {
    pub async fn bootstrap(
        &self,
        owner_email: &str,
        given_password: Option<String>,
    ) -> Result<BootstrapResult> {
        let email = parse_email(owner_email)?;
        if let Some(existing) = self.store.root_workspace_id().await? {
            return already_done(self, existing).await;
        }
        let (password, generated) = match given_password {
            Some(p) => {
                password::check_policy(&p)?;
                (p, false)
            }
            None => (password::generate_password(), true),
        };
        let password_hash = self.hash(password.clone()).await?;
        let now = self.clock.now();
        let account = Account {
            id: AccountId::new(),
            email: email.clone(),
            name: Some("Break-glass owner".into()),
            created_at: now,
        };
        let workspace = Workspace {
            id: WorkspaceId::new(),
            name: "Root".into(),
            slug: "root".into(),
            plan: Plan::Enterprise,
            status: WorkspaceStatus::Active,
            kyc_status: KycStatus::Completed,
            payment_status: PaymentStatus::Current,
            metadata: serde_json::json!({}),
            limits: WorkspaceLimits::default(),
            root: true,
            created_at: now,
            updated_at: now,
        };
        let member = Member {
            id: MemberId::new(),
            workspace_id: workspace.id.clone(),
            account_id: account.id.clone(),
            email: email.clone(),
            name: account.name.clone(),
            role: Role::Owner,
            status: MemberStatus::Active,
            created_at: now,
            updated_at: now,
        };
        let key = new_key(
            &workspace.id,
            None,
            KeyKind::Management,
            KeyMode::Live,
            Some("bootstrap".into()),
            Vec::new(),
            Some(Role::Admin),
        );
        let outcome = self
            .store
            .bootstrap(&RootBootstrap {
                account,
                password_hash,
                workspace: workspace.clone(),
                member,
                key: key.key,
            })
            .await?;
        Ok(match outcome {
            BootstrapOutcome::Created => BootstrapResult::Created {
                workspace_id: workspace.id,
                owner_email: email,
                password: generated.then_some(password),
                management_key: key.plaintext,
            },
            BootstrapOutcome::AlreadyDone {
                workspace_id,
                owner_email,
            } => BootstrapResult::AlreadyDone {
                workspace_id,
                owner_email,
            },
        })
    }
}

async fn already_done(cp: &ControlPlane, workspace_id: WorkspaceId) -> Result<BootstrapResult> {
    let page = cp
        .store
        .members(
            &workspace_id,
            &authsome_domain::page::PageRequest::first(100),
        )
        .await?;
    let owner_email = page
        .items
        .into_iter()
        .find(|m| m.role == Role::Owner)
        .map(|m| m.email);
    Ok(BootstrapResult::AlreadyDone {
        workspace_id,
        owner_email,
    })
}
