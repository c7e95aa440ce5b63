//! The server backend: Postgres, shared by any number of replicas. Migrations take sqlx's
//! advisory lock, so replicas starting together apply each migration exactly once.

use std::sync::OnceLock;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::PgPool;

use crate::script::ScriptConnection;

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

    /// A connection for one write: Postgres orders writers itself, so any of the pool's.
    async fn writer(&self) -> crate::Result<PoolConnection<sqlx::Postgres>> {
        Ok(self.pool.acquire().await?)
    }

    /// A connection for a write sent as one command.
    async fn script_writer(&self) -> crate::Result<ScriptConnection<sqlx::Postgres>> {
        ScriptConnection::acquire(&self.pool).await
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

crate::sql::impl_repositories!(PostgresStore, Backend::Postgres, MIGRATOR);

crate::audit::impl_audit!(PostgresStore, crate::audit::postgres_batch::insert_entries);

crate::vault::impl_vault!(PostgresStore);

crate::alerts::impl_alerts!(PostgresStore);

crate::billing::impl_billing!(PostgresStore);

crate::rotation::impl_rotation!(PostgresStore, " FOR UPDATE SKIP LOCKED");
