//! The admin API of an application's users and sessions (secret key only).

use authsome_control::admission::{
    AdminAccess, SessionsRead, SessionsWrite, UsersRead, UsersWrite,
};
use authsome_domain::id::{SessionId, UserId};
use authsome_domain::identity::{Session, User};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::member::parse_email;
use authsome_domain::tenancy::{parse_json_object, parse_name};
use authsome_storage::app::UserFilter;
use authsome_storage::outbox::Outbox;
use authsome_storage::StorageError;

use crate::{Identity, IdentityError, Result};

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::email))]
    pub email: String,
    /// Optional: a user without a password cannot sign in with one.
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_user_password))]
    pub password: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_name))]
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_json_object))]
    pub public_metadata: Option<serde_json::Value>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_json_object))]
    pub private_metadata: Option<serde_json::Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserPatch {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_email))]
    pub email: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_name))]
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_user_password))]
    pub password: Option<String>,
    /// Replaces the whole object.
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_json_object))]
    pub public_metadata: Option<serde_json::Value>,
    /// Replaces the whole object.
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_json_object))]
    pub private_metadata: Option<serde_json::Value>,
}

fn email_taken(e: StorageError) -> IdentityError {
    match e {
        StorageError::Duplicate => {
            IdentityError::Conflict("a user with this email already exists".into())
        }
        StorageError::NotFound => IdentityError::NotFound("user"),
        other => other.into(),
    }
}

impl Identity {
    pub async fn create_user(
        &self,
        access: &AdminAccess<UsersWrite>,
        input: NewUser,
    ) -> Result<User> {
        let app = access.application();
        let email = parse_email(&input.email)?;
        if let Some(p) = &input.password {
            self.policy.check(p)?;
        }
        let now = self.clock.now();
        let user = User {
            id: UserId::new(),
            email,
            name: input
                .name
                .as_deref()
                .map(|n| parse_name("name", n))
                .transpose()?,
            public_metadata: object_or_empty("publicMetadata", input.public_metadata)?,
            private_metadata: object_or_empty("privateMetadata", input.private_metadata)?,
            disabled: false,
            created_at: now,
            updated_at: now,
            last_sign_in_at: None,
        };
        let hash = match input.password {
            Some(p) => Some(self.hash_password(app, p).await?),
            None => None,
        };
        let store = self.store(app).await?;
        self.audited(
            app,
            Self::event(app, "user.created", &user.id, None),
            async |outbox| {
                store
                    .create_user(&user, hash.as_deref(), outbox)
                    .await
                    .map_err(email_taken)
            },
        )
        .await?;
        Ok(user)
    }

    pub async fn get_user(&self, access: &AdminAccess<UsersRead>, id: &UserId) -> Result<User> {
        let app = access.application();
        self.store(app)
            .await?
            .user(id)
            .await?
            .ok_or(IdentityError::NotFound("user"))
    }

    pub async fn list_users(
        &self,
        access: &AdminAccess<UsersRead>,
        email: Option<&str>,
        query: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<User>> {
        let app = access.application();
        let filter = UserFilter {
            email: email.map(|e| e.trim().to_lowercase()),
            query: query.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty()),
        };
        Ok(self.store(app).await?.users(&filter, page).await?)
    }

    pub async fn update_user(
        &self,
        access: &AdminAccess<UsersWrite>,
        id: &UserId,
        patch: UserPatch,
    ) -> Result<User> {
        let app = access.application();
        let store = self.store(app).await?;
        let mut user = store
            .user(id)
            .await?
            .ok_or(IdentityError::NotFound("user"))?;
        // A person's email and name are stored in the log as keyed HMACs; metadata as the
        // keys that changed.
        let mut event = Self::event(app, "user.updated", id, None);
        if let Some(email) = patch.email {
            let email = parse_email(&email)?;
            event = event.changed_identifying("email", &user.email, &email);
            user.email = email;
        }
        if let Some(name) = patch.name {
            let name = parse_name("name", &name)?;
            event = event.changed_identifying("name", user.name.as_deref().unwrap_or(""), &name);
            user.name = Some(name);
        }
        if let Some(m) = patch.public_metadata {
            let metadata = parse_json_object("publicMetadata", m)?;
            event = event.changed_keys("publicMetadata", &user.public_metadata, &metadata);
            user.public_metadata = metadata;
        }
        if let Some(m) = patch.private_metadata {
            let metadata = parse_json_object("privateMetadata", m)?;
            event = event.changed_keys("privateMetadata", &user.private_metadata, &metadata);
            user.private_metadata = metadata;
        }
        let new_hash = match patch.password {
            Some(p) => {
                self.policy.check(&p)?;
                Some(self.hash_password(app, p).await?)
            }
            None => None,
        };
        let now = self.clock.now();
        user.updated_at = now;
        if new_hash.is_some() {
            event = event.change("password", "changed");
        }
        self.audited(app, event, async |outbox| {
            store.update_user(&user, outbox).await.map_err(email_taken)
        })
        .await?;
        if let Some(hash) = new_hash {
            store.set_password(id, &hash, now, &Outbox::empty()).await?;
        }
        Ok(user)
    }

    pub async fn delete_user(&self, access: &AdminAccess<UsersWrite>, id: &UserId) -> Result<()> {
        let app = access.application();
        let store = self.store(app).await?;
        self.audited(
            app,
            Self::event(app, "user.deleted", id, None),
            async |outbox| store.delete_user(id, outbox).await.map_err(email_taken),
        )
        .await?;
        Ok(())
    }

    /// Disabling ends every session and refresh token of the user at once.
    pub async fn set_disabled(
        &self,
        access: &AdminAccess<UsersWrite>,
        id: &UserId,
        disabled: bool,
    ) -> Result<User> {
        let app = access.application();
        let store = self.store(app).await?;
        let mut user = store
            .user(id)
            .await?
            .ok_or(IdentityError::NotFound("user"))?;
        let now = self.clock.now();
        user.disabled = disabled;
        user.updated_at = now;
        let action = if disabled {
            "user.disabled"
        } else {
            "user.enabled"
        };
        self.audited(app, Self::event(app, action, id, None), async |outbox| {
            store.update_user(&user, outbox).await.map_err(email_taken)
        })
        .await?;
        if disabled {
            store
                .revoke_user_sessions(id, now, &Outbox::empty())
                .await?;
        }
        Ok(user)
    }

    pub async fn user_sessions(
        &self,
        access: &AdminAccess<SessionsRead>,
        id: &UserId,
        page: &PageRequest,
    ) -> Result<Page<Session>> {
        let app = access.application();
        let store = self.store(app).await?;
        store
            .user(id)
            .await?
            .ok_or(IdentityError::NotFound("user"))?;
        Ok(store.sessions_of(id, page).await?)
    }

    pub async fn revoke_session(
        &self,
        access: &AdminAccess<SessionsWrite>,
        id: &SessionId,
    ) -> Result<()> {
        let app = access.application();
        let store = self.store(app).await?;
        self.audited(
            app,
            Self::event(app, "session.revoked", id, None),
            async |outbox| {
                store
                    .revoke_session(id, self.clock.now(), outbox)
                    .await
                    .map_err(|e| match e {
                        StorageError::NotFound => IdentityError::NotFound("session"),
                        other => other.into(),
                    })
            },
        )
        .await?;
        Ok(())
    }
}

fn object_or_empty(field: &'static str, v: Option<serde_json::Value>) -> Result<serde_json::Value> {
    Ok(match v {
        Some(v) => parse_json_object(field, v)?,
        None => serde_json::json!({}),
    })
}
