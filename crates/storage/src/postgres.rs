//! The server backend: Postgres, shared by any number of replicas. Migrations take sqlx's
//! advisory lock, so replicas starting together apply each migration exactly once.

use std::sync::OnceLock;
use std::time::Duration;

use sqlx::PgPool;

pub struct PostgresStore {
    pool: PgPool,
    root: OnceLock<authsome_domain::id::WorkspaceId>,
}

impl crate::sql::HasDb for PostgresStore {
    type Db = sqlx::Postgres;
}

impl PostgresStore {
    pub async fn connect(url: &str) -> crate::Result<Self> {
        let pool = crate::pool::postgres()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self {
            pool,
            root: OnceLock::new(),
        })
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

crate::sql::impl_repositories!(PostgresStore, Backend::Postgres, MIGRATOR);

crate::audit::impl_audit!(
    PostgresStore,
    crate::audit::postgres_batch::insert_entries,
    crate::audit::postgres_batch::delete_outbox
);
