//! The audit log's format and its cryptography, with no I/O: what an entry looks like on the
//! wire (`entry`), the per-workspace hash chain, the RFC 6962 / RFC 9162 Merkle tree with its
//! inclusion and consistency proofs (`merkle`), checkpoints signed in the C2SP signed-note
//! format (`note`), and the offline verifier that `authsome audit verify` runs (`verify`).
//!
//! Everything here is specified by public documents so that a customer can check a log without
//! trusting AuthSome: the Merkle leaf of an entry is exactly its JSON Lines row, the tree is
//! RFC 6962's, the checkpoint is a C2SP `tlog-checkpoint` in a Go `sumdb/note` signed note.
//!
//! **Boundary:** this crate knows nothing of storage, HTTP, workspaces' permissions or how
//! events are produced; the control plane feeds it entries and stores what it returns.

pub mod entry;
pub mod merkle;
pub mod note;
pub mod verify;

pub use entry::{chain_hash, Entry, EntryActor, Outcome, GENESIS};
pub use merkle::{CompactRange, Hash};
pub use note::{Checkpoint, NoteSigner, NoteVerifier};
