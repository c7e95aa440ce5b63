//! A durable job: background work (a rotation's run, a schedule's tick, an alert's delivery)
//! that survives restarts and runs once across replicas. What it does is named by `kind`
//! and carried in `payload` (ids, never secrets); the queue only stores, hands out and retires.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::id::{JobId, WorkspaceId};

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    /// What runs it (`rotation.run`, …).
    pub kind: String,
    pub payload: Value,
    /// Whose work it is, when it is a workspace's (deleted with it).
    pub workspace_id: Option<WorkspaceId>,
    /// Not before.
    pub run_at: DateTime<Utc>,
    /// Times it was handed out, this one included.
    pub attempts: u32,
    /// At most one job with the same key is ever enqueued (a schedule's tick).
    pub dedupe_key: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Job {
    pub fn new(
        kind: &str,
        payload: Value,
        workspace: Option<&WorkspaceId>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: JobId::new(),
            kind: kind.to_owned(),
            payload,
            workspace_id: workspace.cloned(),
            run_at: now,
            attempts: 0,
            dedupe_key: None,
            created_at: now,
        }
    }
}
