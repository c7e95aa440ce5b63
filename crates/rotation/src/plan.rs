//! The closed loop as steps: mint the new value, store it as the vault's next version, push it
//! to each target, redeploy them (when asked), verify each (read back), probe the health URL
//! (when given), then retire the previous credential after the grace period. Each step that
//! completed has an undo; when a step fails, [`rollback`] lists the undos of everything done
//! before it, last first, so the targets get the previous version back and the vault's latest
//! goes back too.

/// What a step does; `target` is an index into the rotation's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Step {
    Mint,
    Store,
    Push {
        target: usize,
    },
    Redeploy {
        target: usize,
    },
    Verify {
        target: usize,
    },
    HealthCheck,
    /// Revoke or expire the previous credential, once the grace period is over.
    RetirePrevious,
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Succeeded,
    Failed,
    RolledBack,
}

/// Undoing a completed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    /// Push the previous version to the target again.
    RestoreTarget { target: usize },
    /// Redeploy the target again (after its previous value is back).
    Redeploy { target: usize },
    /// Make the previous version the vault's latest again.
    RestoreLatest,
}

/// What a rotation is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub targets: usize,
    pub redeploy: bool,
    pub health_check: bool,
}

/// The steps, in order.
pub fn steps(shape: Shape) -> Vec<Step> {
    let mut steps = vec![Step::Mint, Step::Store];
    steps.extend((0..shape.targets).map(|target| Step::Push { target }));
    if shape.redeploy {
        steps.extend((0..shape.targets).map(|target| Step::Redeploy { target }));
    }
    steps.extend((0..shape.targets).map(|target| Step::Verify { target }));
    if shape.health_check {
        steps.push(Step::HealthCheck);
    }
    steps.push(Step::RetirePrevious);
    steps
}

/// The undos for the steps that `done` (in the order they ran), last first. Minting, verifying
/// and probing change nothing; retiring the previous credential comes last, so nothing after it
/// can fail and it is never undone.
pub fn rollback(done: &[Step]) -> Vec<Undo> {
    let redeployed: Vec<usize> = done
        .iter()
        .filter_map(|s| match s {
            Step::Redeploy { target } => Some(*target),
            _ => None,
        })
        .collect();
    let mut undo = Vec::new();
    for step in done.iter().rev() {
        match step {
            Step::Push { target } => {
                undo.push(Undo::RestoreTarget { target: *target });
                if redeployed.contains(target) {
                    undo.push(Undo::Redeploy { target: *target });
                }
            }
            Step::Store => undo.push(Undo::RestoreLatest),
            Step::Mint
            | Step::Redeploy { .. }
            | Step::Verify { .. }
            | Step::HealthCheck
            | Step::RetirePrevious => {}
        }
    }
    undo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_runs_in_order_with_optional_steps() {
        let all = steps(Shape {
            targets: 2,
            redeploy: true,
            health_check: true,
        });
        assert_eq!(
            all,
            [
                Step::Mint,
                Step::Store,
                Step::Push { target: 0 },
                Step::Push { target: 1 },
                Step::Redeploy { target: 0 },
                Step::Redeploy { target: 1 },
                Step::Verify { target: 0 },
                Step::Verify { target: 1 },
                Step::HealthCheck,
                Step::RetirePrevious,
            ]
        );
        let bare = steps(Shape {
            targets: 1,
            redeploy: false,
            health_check: false,
        });
        assert_eq!(
            bare,
            [
                Step::Mint,
                Step::Store,
                Step::Push { target: 0 },
                Step::Verify { target: 0 },
                Step::RetirePrevious,
            ]
        );
    }

    #[test]
    fn a_failure_undoes_what_was_done_last_first() {
        let all = steps(Shape {
            targets: 2,
            redeploy: true,
            health_check: true,
        });
        // The health check failed: everything before it is undone.
        let failed_at = all.iter().position(|s| *s == Step::HealthCheck).unwrap();
        assert_eq!(
            rollback(&all[..failed_at]),
            [
                Undo::RestoreTarget { target: 1 },
                Undo::Redeploy { target: 1 },
                Undo::RestoreTarget { target: 0 },
                Undo::Redeploy { target: 0 },
                Undo::RestoreLatest,
            ]
        );
        // The second push failed: only the first target and the vault go back.
        assert_eq!(
            rollback(&all[..3]),
            [Undo::RestoreTarget { target: 0 }, Undo::RestoreLatest]
        );
        assert!(
            rollback(&all[..1]).is_empty(),
            "a minted value changed nothing"
        );
    }
}
