//! Offline verification of an exported log: what `authsome audit verify` runs, and what anyone
//! can re-implement from the format's description.
//!
//! It reads the JSON Lines export in one pass and bounded memory, checks that every row is a
//! canonical entry of one workspace, that indices run 0, 1, 2, … without gaps, that each
//! `prevHash` is the chain hash of the row before, and recomputes the RFC 6962 root at the size
//! of each given signed checkpoint (whose signature it checks first). Two checkpoints that both
//! match the same rows are consistent: the earlier log is a prefix of the later one.

use std::io::BufRead;

use crate::entry::{chain_hash, Entry, GENESIS};
use crate::merkle::{leaf_hash, CompactRange, Hash};
use crate::note::{self, Checkpoint, NoteVerifier};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The first entry that fails, by line of the export and, when readable, index and id.
    #[error("line {line}{}: {why}", describe(.index, .id))]
    Entry {
        line: u64,
        index: Option<u64>,
        id: Option<String>,
        why: String,
    },
    #[error("checkpoint {which}: {why}")]
    Checkpoint { which: usize, why: String },
    #[error("reading the export: {0}")]
    Io(String),
}

fn describe(index: &Option<u64>, id: &Option<String>) -> String {
    match (index, id) {
        (Some(i), Some(id)) => format!(" (entry {i}, {id})"),
        (Some(i), None) => format!(" (entry {i})"),
        _ => String::new(),
    }
}

/// A verified checkpoint: its tree size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub signed_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub entries: u64,
    pub workspace_id: Option<String>,
    /// The chain hash of the last entry.
    pub head: Hash,
    /// The Merkle root of all entries.
    pub root: Hash,
    pub checkpoints: Vec<CheckedPoint>,
}

/// Opens a signed checkpoint note with `keys`.
pub fn open_checkpoint(
    signed: &str,
    keys: &[NoteVerifier],
) -> Result<(Checkpoint, Vec<String>), note::NoteError> {
    let (text, sigs) = note::open(signed, keys)?;
    let checkpoint = Checkpoint::parse(text)?;
    Ok((
        checkpoint,
        sigs.into_iter()
            .map(|s| format!("{}+{:08x}", s.name, s.id))
            .collect(),
    ))
}

struct Row {
    line: u64,
    entry: Entry,
    hash: Hash,
}

/// Verifies `export` against signed `checkpoints` (any order).
pub fn verify_export(
    export: impl BufRead,
    checkpoints: &[String],
    keys: &[NoteVerifier],
) -> Result<Report, VerifyError> {
    verify_export_from(export, checkpoints, keys, None)
}

/// As [`verify_export`], for a log whose oldest entries were pruned by retention: `prefix` is
/// the compact range of the pruned leaves (the server's `/audit/prefix`), the export starts at
/// index `prefix.size()`, and its first `prevHash` is taken as the chain's anchor. A wrong
/// prefix cannot pass: the roots it leads to are checked against the signed checkpoints.
pub fn verify_export_from(
    export: impl BufRead,
    checkpoints: &[String],
    keys: &[NoteVerifier],
    prefix: Option<&CompactRange>,
) -> Result<Report, VerifyError> {
    let mut points = Vec::new();
    for (which, signed) in checkpoints.iter().enumerate() {
        let (cp, signed_by) =
            open_checkpoint(signed, keys).map_err(|e| VerifyError::Checkpoint {
                which: which + 1,
                why: e.to_string(),
            })?;
        points.push((which + 1, cp, signed_by));
    }
    if let Some((_, first, _)) = points.first() {
        if let Some((which, _, _)) = points.iter().find(|(_, c, _)| c.origin != first.origin) {
            return Err(VerifyError::Checkpoint {
                which: *which,
                why: "its origin differs from the other checkpoints'".into(),
            });
        }
    }
    let mut range = prefix.cloned().unwrap_or_default();
    let pruned = range.size();
    let mut roots_at: Vec<(u64, Hash)> = Vec::new();
    let wanted: std::collections::BTreeSet<u64> = points.iter().map(|(_, c, _)| c.size).collect();
    if let Some((which, cp, _)) = points.iter().find(|(_, c, _)| c.size < pruned) {
        return Err(VerifyError::Checkpoint {
            which: *which,
            why: format!(
                "it covers {} entries, all pruned before this export (which starts at {pruned})",
                cp.size
            ),
        });
    }
    if wanted.contains(&pruned) {
        roots_at.push((pruned, range.root()));
    }
    let mut workspace: Option<String> = None;
    // The last row, kept until the row after it decides whether its link holds.
    let mut previous: Option<Row> = None;
    // A broken link waiting for one more row to tell which side was altered.
    let mut suspect: Option<(Row, Row)> = None;
    for (line_no, line) in (1u64..).zip(export.lines()) {
        let line = line.map_err(|e| VerifyError::Io(e.to_string()))?;
        let fail = |index: Option<u64>, id: Option<String>, why: String| VerifyError::Entry {
            line: line_no,
            index,
            id,
            why,
        };
        let entry = Entry::parse(&line)
            .map_err(|e| fail(None, None, format!("not an audit entry: {e}")))?;
        let (index, id) = (Some(entry.index), Some(entry.id.clone()));
        match &workspace {
            None => workspace = Some(entry.workspace_id.clone()),
            Some(ws) if *ws != entry.workspace_id => {
                return Err(fail(
                    index,
                    id,
                    format!("belongs to {}, not {ws}", entry.workspace_id),
                ))
            }
            Some(_) => {}
        }
        let expected = range.size();
        if entry.index != expected {
            let why = if entry.index > expected {
                format!("entry {expected} is missing here (deleted or moved?)")
            } else {
                format!("out of order: entry {expected} was expected here (reordered or inserted?)")
            };
            return Err(fail(index, id, why));
        }
        let hash = chain_hash(line.as_bytes());
        let row = Row {
            line: line_no,
            entry,
            hash,
        };
        if let Some((before, after)) = suspect.take() {
            // `after`'s link to `before` is broken. If this row still links to `after`, then
            // `after` is intact and `before` was altered; otherwise `after` was.
            let culprit = if row.entry.prev_hash == after.hash {
                before
            } else {
                after
            };
            return Err(altered(culprit));
        }
        let expected_prev = match &previous {
            Some(p) => p.hash,
            // The first kept entry of a pruned log anchors the chain.
            None if pruned > 0 => row.entry.prev_hash,
            None => GENESIS,
        };
        if row.entry.prev_hash != expected_prev {
            match previous.take() {
                None => {
                    return Err(fail(
                        index,
                        id,
                        "the first entry's prevHash is not the genesis value".into(),
                    ))
                }
                Some(before) => {
                    range.push(leaf_hash(line.as_bytes()));
                    suspect = Some((before, row));
                    continue;
                }
            }
        }
        range.push(leaf_hash(line.as_bytes()));
        if wanted.contains(&range.size()) {
            roots_at.push((range.size(), range.root()));
        }
        previous = Some(row);
    }
    if let Some((before, _)) = suspect {
        return Err(VerifyError::Entry {
            line: before.line,
            index: Some(before.entry.index),
            id: Some(before.entry.id),
            why: "its hash is not the prevHash of the entry after it: it, or the last entry, \
                  was altered"
                .into(),
        });
    }
    let mut checked = Vec::new();
    for (which, cp, signed_by) in points {
        let Some((_, root)) = roots_at.iter().find(|(s, _)| *s == cp.size) else {
            return Err(VerifyError::Checkpoint {
                which,
                why: format!(
                    "it covers {} entries and the export has only {}",
                    cp.size,
                    range.size()
                ),
            });
        };
        if *root != cp.root {
            return Err(VerifyError::Checkpoint {
                which,
                why: format!(
                    "the root of the first {} entries is not the signed root: an entry before \
                     index {} was changed, removed or added",
                    cp.size, cp.size
                ),
            });
        }
        checked.push(CheckedPoint {
            origin: cp.origin,
            size: cp.size,
            root: cp.root,
            signed_by,
        });
    }
    checked.sort_by_key(|c| c.size);
    Ok(Report {
        entries: range.size(),
        workspace_id: workspace,
        head: previous.map_or(GENESIS, |p| p.hash),
        root: range.root(),
        checkpoints: checked,
    })
}

fn altered(row: Row) -> VerifyError {
    VerifyError::Entry {
        line: row.line,
        index: Some(row.entry.index),
        id: Some(row.entry.id),
        why: "altered: its hash is not the prevHash the entry after it records".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{EntryActor, Outcome};
    use crate::note::NoteSigner;

    fn log(n: u64) -> Vec<String> {
        let mut prev = GENESIS;
        (0..n)
            .map(|i| {
                let line = Entry {
                    index: i,
                    id: format!("evt_{i}"),
                    at: "2026-11-23T17:40:00.000Z".into(),
                    workspace_id: "ws_1".into(),
                    application_id: None,
                    actor: EntryActor {
                        kind: "system".into(),
                        id: None,
                        ip: None,
                        user_agent: None,
                    },
                    action: "workspace.updated".into(),
                    target: Some(format!("t{i}")),
                    outcome: Outcome::Success,
                    request_id: None,
                    changes: Default::default(),
                    prev_hash: prev,
                }
                .canonical();
                prev = chain_hash(line.as_bytes());
                line
            })
            .collect()
    }

    fn checkpoint(signer: &NoteSigner, lines: &[String]) -> String {
        let mut range = CompactRange::new();
        for l in lines {
            range.push(leaf_hash(l.as_bytes()));
        }
        signer
            .sign(
                &Checkpoint {
                    origin: "example/audit/ws_1".into(),
                    size: range.size(),
                    root: range.root(),
                    extensions: vec![],
                }
                .to_text(),
            )
            .unwrap()
    }

    fn run(lines: &[String], cps: &[String], signer: &NoteSigner) -> Result<Report, VerifyError> {
        let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        verify_export(text.as_bytes(), cps, &[signer.verifier()])
    }

    fn failing_index(r: Result<Report, VerifyError>) -> Option<u64> {
        match r {
            Err(VerifyError::Entry { index, .. }) => index,
            other => panic!("expected an entry failure, got {other:?}"),
        }
    }

    #[test]
    fn an_intact_log_verifies_against_two_checkpoints() {
        let signer = NoteSigner::new("example/audit", &[1; 32]).unwrap();
        let lines = log(10);
        let cps = [
            checkpoint(&signer, &lines[..4]),
            checkpoint(&signer, &lines),
        ];
        let report = run(&lines, &cps, &signer).unwrap();
        assert_eq!(report.entries, 10);
        assert_eq!(report.checkpoints.len(), 2);
        assert_eq!(report.checkpoints[0].size, 4);
    }

    #[test]
    fn a_pruned_log_verifies_from_its_prefix() {
        let signer = NoteSigner::new("example/audit", &[1; 32]).unwrap();
        let lines = log(10);
        let cps = [
            checkpoint(&signer, &lines[..6]),
            checkpoint(&signer, &lines),
        ];
        let mut prefix = CompactRange::new();
        for l in &lines[..4] {
            prefix.push(leaf_hash(l.as_bytes()));
        }
        let text = lines[4..]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        let report =
            verify_export_from(text.as_bytes(), &cps, &[signer.verifier()], Some(&prefix)).unwrap();
        assert_eq!((report.entries, report.checkpoints.len()), (10, 2));
        // A prefix that is not the pruned entries' leads to other roots.
        let mut wrong = CompactRange::new();
        for l in &lines[1..5] {
            wrong.push(leaf_hash(l.as_bytes()));
        }
        assert!(matches!(
            verify_export_from(text.as_bytes(), &cps, &[signer.verifier()], Some(&wrong)),
            Err(VerifyError::Checkpoint { .. })
        ));
        // Without the prefix the export does not start at 0.
        assert!(verify_export(text.as_bytes(), &cps, &[signer.verifier()]).is_err());
    }

    #[test]
    fn tampering_is_named() {
        let signer = NoteSigner::new("example/audit", &[1; 32]).unwrap();
        let lines = log(10);
        let cps = [checkpoint(&signer, &lines)];
        // Changed content of entry 4.
        let mut changed = lines.clone();
        changed[4] = changed[4].replace("\"t4\"", "\"t9\"");
        assert_eq!(failing_index(run(&changed, &cps, &signer)), Some(4));
        // Deleted entry 6.
        let mut deleted = lines.clone();
        deleted.remove(6);
        assert_eq!(failing_index(run(&deleted, &cps, &signer)), Some(7));
        // Swapped 2 and 3.
        let mut swapped = lines.clone();
        swapped.swap(2, 3);
        assert_eq!(failing_index(run(&swapped, &cps, &signer)), Some(3));
        // The last entry changed: only the checkpoint can tell.
        let mut last = lines.clone();
        last[9] = last[9].replace("\"t9\"", "\"tX\"");
        assert!(matches!(
            run(&last, &cps, &signer),
            Err(VerifyError::Checkpoint { .. })
        ));
        // A forged checkpoint.
        let forged = cps[0].replace("\n10\n", "\n9\n");
        assert!(matches!(
            run(&lines, &[forged], &signer),
            Err(VerifyError::Checkpoint { .. })
        ));
    }
}
