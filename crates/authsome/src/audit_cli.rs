//! `authsome audit verify`: checks an exported audit log offline, with nothing but the export,
//! signed checkpoints and the verifier keys (no server, no database, no configuration).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use authsome_audit::merkle::CompactRange;
use authsome_audit::note::NoteVerifier;
use authsome_audit::verify::verify_export_from;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

pub struct VerifyArgs {
    pub export: PathBuf,
    pub checkpoint: PathBuf,
    pub earlier: Vec<PathBuf>,
    pub keys: PathBuf,
    pub prefix: Option<PathBuf>,
}

/// `GET …/audit/prefix`: `{"treeSize": n, "peaks": [base64, …]}`.
fn prefix(path: &Path) -> Result<CompactRange> {
    let text = read(path, "prefix file")?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("the prefix file {} is not JSON", path.display()))?;
    let bad = || {
        anyhow!(
            "the prefix file {} is not a treeSize and peaks",
            path.display()
        )
    };
    let size = value["treeSize"].as_u64().ok_or_else(bad)?;
    let peaks = value["peaks"]
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|p| {
            p.as_str()
                .and_then(|p| B64.decode(p).ok())
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(bad)
        })
        .collect::<Result<Vec<_>>>()?;
    CompactRange::from_peaks(size, peaks).map_err(|_| bad())
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// Verifier keys, one per line (blank lines and `#` comments ignored).
fn keys(path: &Path) -> Result<Vec<NoteVerifier>> {
    let text = read(path, "key file")?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(
            NoteVerifier::parse(line)
                .map_err(|e| anyhow!("{} line {}: {e}", path.display(), n + 1))?,
        );
    }
    if keys.is_empty() {
        bail!("the key file {} holds no verifier key", path.display());
    }
    Ok(keys)
}

/// Prints what was verified; an error names the first entry or checkpoint that fails.
pub fn verify(args: VerifyArgs) -> Result<()> {
    let keys = keys(&args.keys)?;
    let mut checkpoints = vec![read(&args.checkpoint, "checkpoint")?];
    for earlier in &args.earlier {
        checkpoints.push(read(earlier, "earlier checkpoint")?);
    }
    let file = std::fs::File::open(&args.export)
        .with_context(|| format!("cannot read the export {}", args.export.display()))?;
    let prefix = args.prefix.as_deref().map(prefix).transpose()?;
    let report = verify_export_from(BufReader::new(file), &checkpoints, &keys, prefix.as_ref())
        .map_err(|e| anyhow!("verification failed: {e}"))?;
    println!(
        "ok: {} entries{}, chain intact, Merkle root {}",
        report.entries,
        report
            .workspace_id
            .as_deref()
            .map(|w| format!(" of {w}"))
            .unwrap_or_default(),
        B64.encode(report.root)
    );
    for c in &report.checkpoints {
        println!(
            "ok: checkpoint {} at size {} (root {}) signed by {}",
            c.origin,
            c.size,
            B64.encode(c.root),
            c.signed_by.join(", ")
        );
    }
    if report.checkpoints.len() > 1 {
        println!(
            "ok: the earlier checkpoints are consistent with the latest (prefixes of one log)"
        );
    }
    Ok(())
}
