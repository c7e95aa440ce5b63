//! The Merkle tree of RFC 6962 §2.1 (RFC 9162 §2.1): leaf `SHA-256(0x00 || data)`, node
//! `SHA-256(0x01 || left || right)`, a tree of `n` leaves split at the largest power of two
//! below `n`. Proof generation follows RFC 6962's `PATH` and `PROOF` definitions; verification
//! follows RFC 9162's iterative algorithms, so the two halves check each other.
//!
//! [`CompactRange`] is the append-only state a log keeps: the roots of the perfect subtrees
//! that make up the tree (one per set bit of its size), enough to append a leaf and compute the
//! root in O(log n) without reading any earlier leaf.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {first} is larger than tree size {second}")]
    SizesOutOfOrder { first: u64, second: u64 },
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the root hash")]
    RootMismatch,
    #[error("compact range encoding is malformed")]
    MalformedRange,
}

pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: the hash of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// `MTH(D[n])` over leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The audit path of leaf `index` in the tree made of `leaves` (RFC 6962 `PATH(m, D[n])`).
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(index as usize, leaves, &mut proof);
    Ok(proof)
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(root(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(root(&leaves[..k]));
    }
}

/// The consistency proof between the tree of the first `first` leaves and the tree of all
/// `leaves` (RFC 6962 `PROOF(m, D[n])`).
pub fn consistency_proof(leaves: &[Hash], first: u64) -> Result<Vec<Hash>, ProofError> {
    let second = leaves.len() as u64;
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    let mut proof = Vec::new();
    if first > 0 && first < second {
        subproof(first as usize, leaves, true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

/// RFC 9162 §2.1.3.2: does `proof` show leaf `leaf` at `index` in the tree of `size` with
/// `root`?
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `first` leaves with `first_root` is a
/// prefix of the tree of `second` leaves with `second_root`?
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if first == 0 {
        // Every tree extends the empty one.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((start, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != first_root || &sr != second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The roots of the perfect subtrees that make up a tree, largest (leftmost) first: appending
/// and the root in O(log n), from state small enough to keep in one row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    peaks: Vec<Hash>,
}

impl CompactRange {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The range of a tree of `size` leaves from its perfect-subtree roots, largest first.
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Result<Self, ProofError> {
        if peaks.len() != size.count_ones() as usize {
            return Err(ProofError::MalformedRange);
        }
        Ok(Self { size, peaks })
    }

    /// The perfect-subtree roots, largest (leftmost) first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        // Each trailing one bit of the old size is a subtree the new leaf completes.
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.peaks.pop().unwrap_or_default();
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// Size (8 bytes big-endian) followed by the peaks.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.peaks.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for p in &self.peaks {
            out.extend_from_slice(p);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProofError> {
        let (size, rest) = bytes
            .split_at_checked(8)
            .ok_or(ProofError::MalformedRange)?;
        let size = u64::from_be_bytes(size.try_into().map_err(|_| ProofError::MalformedRange)?);
        if rest.len() % 32 != 0 || rest.len() / 32 != size.count_ones() as usize {
            return Err(ProofError::MalformedRange);
        }
        let peaks = rest
            .chunks_exact(32)
            .map(|c| c.try_into().map_err(|_| ProofError::MalformedRange))
            .collect::<Result<_, _>>()?;
        Ok(Self { size, peaks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// RFC 6962 reference leaves and roots (transparency-dev/merkle `testonly`).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    #[test]
    fn roots_match_the_rfc6962_vectors() {
        let leaves = leaves();
        let mut range = CompactRange::new();
        assert_eq!(range.root(), h(ROOTS[0]));
        for n in 1..=leaves.len() {
            assert_eq!(root(&leaves[..n]), h(ROOTS[n]), "size {n}");
            range.push(leaves[n - 1]);
            assert_eq!(range.root(), h(ROOTS[n]), "compact range at size {n}");
            assert_eq!(CompactRange::decode(&range.encode()).unwrap(), range);
        }
    }

    #[test]
    fn inclusion_proofs_match_the_vectors() {
        let leaves = leaves();
        let cases: [(u64, usize, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (0, 1, &[]),
        ];
        for (index, size, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = inclusion_proof(&leaves[..size], index).unwrap();
            assert_eq!(got, want, "PATH({index}, D[{size}])");
            verify_inclusion(
                index,
                size as u64,
                &leaves[index as usize],
                &got,
                &h(ROOTS[size]),
            )
            .unwrap();
        }
    }

    #[test]
    fn consistency_proofs_match_the_vectors() {
        let leaves = leaves();
        let cases: [(u64, usize, &[&str]); 3] = [
            (
                2,
                8,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (first, second, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = consistency_proof(&leaves[..second], first).unwrap();
            assert_eq!(got, want, "PROOF({first}, D[{second}])");
            verify_consistency(
                first,
                second as u64,
                &h(ROOTS[first as usize]),
                &h(ROOTS[second]),
                &got,
            )
            .unwrap();
            // The wrong earlier root is refused.
            assert!(verify_consistency(
                first,
                second as u64,
                &h(ROOTS[first as usize - 1]),
                &h(ROOTS[second]),
                &got
            )
            .is_err());
        }
    }

    fn synthetic(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn every_proof_of_every_small_tree_verifies_and_tampering_fails() {
        let all = synthetic(40);
        for n in 1..=all.len() {
            let tree = &all[..n];
            let r = root(tree);
            for i in 0..n as u64 {
                let proof = inclusion_proof(tree, i).unwrap();
                verify_inclusion(i, n as u64, &tree[i as usize], &proof, &r).unwrap();
                if n > 1 {
                    let other = (i + 1) % n as u64;
                    assert!(
                        verify_inclusion(other, n as u64, &tree[i as usize], &proof, &r).is_err()
                    );
                }
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = node_hash(first, first);
                    assert!(verify_inclusion(i, n as u64, &tree[i as usize], &bad, &r).is_err());
                }
            }
            for m in 0..=n as u64 {
                let proof = consistency_proof(tree, m).unwrap();
                let rm = root(&tree[..m as usize]);
                verify_consistency(m, n as u64, &rm, &r, &proof).unwrap();
                if m > 0 && (m as usize) < n {
                    let mut bad = proof.clone();
                    bad.pop();
                    assert!(verify_consistency(m, n as u64, &rm, &r, &bad).is_err());
                }
            }
        }
    }

    #[test]
    fn a_range_that_lies_about_its_size_is_refused() {
        let mut range = CompactRange::new();
        for l in synthetic(5) {
            range.push(l);
        }
        let mut bytes = range.encode();
        bytes[7] = 7;
        assert_eq!(
            CompactRange::decode(&bytes),
            Err(ProofError::MalformedRange)
        );
        assert!(CompactRange::decode(&[1, 2]).is_err());
    }
}
