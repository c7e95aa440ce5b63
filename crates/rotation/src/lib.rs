//! Rotation's rules, without I/O or HTTP: how a new value is minted ([`generator`]) or issued
//! by the provider for dual-phase credentials ([`issuer`]), what a
//! policy decides about a rotation ([`policy`]), the closed loop's steps with the rollback
//! each completed step needs when a later one fails ([`plan`]), when a scheduled rotation is due
//! ([`schedule`]), and the seam to the providers' connectors ([`target`]).
//!
//! This crate owns those decisions as plain functions of their inputs (the time is passed in),
//! and declares the connectors' trait. It knows nothing of storage, the vault's keys, the
//! providers' wire formats (the connectors in `authsome-connect`), jobs or permissions: the
//! control plane gathers the facts, asks here, and carries out the answer.

pub mod generator;
pub mod issuer;
pub mod plan;
pub mod policy;
pub mod schedule;
pub mod target;

/// A rotation setting or policy that cannot be used as given; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRule {
    pub field: &'static str,
    pub message: String,
}

impl InvalidRule {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
