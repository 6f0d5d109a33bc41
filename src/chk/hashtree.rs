//! Tahoe's Merkle trees (`allmydata/hashtree.py`): a complete binary tree
//! stored as a flat list, root at 0, the children of i at 2i+1 and 2i+2.
//! The leaves are padded to a power of two with `tagged_hash("Merkle tree
//! empty leaf", "%d" % i)` (i the leaf's position), inner nodes are
//! `tagged_pair_hash("Merkle tree internal node", left, right)`.

use super::hash::{EMPTY_LEAF_TAG, Hash, INTERNAL_NODE_TAG, tagged_hash, tagged_pair_hash};

/// The smallest power of two ≥ x (1 for 0).
pub(crate) fn roundup_pow2(x: usize) -> usize {
    x.max(1).next_power_of_two()
}

/// The hash of an inner node.
pub(crate) fn pair_hash(left: &Hash, right: &Hash) -> Hash {
    tagged_pair_hash(INTERNAL_NODE_TAG, left, right)
}

/// A complete hash tree.
#[derive(Clone, Debug)]
pub(crate) struct HashTree {
    nodes: Vec<Hash>,
    first_leaf: usize,
}

impl HashTree {
    /// The tree over `leaves` (`HashTree(L)`).
    pub(crate) fn new(leaves: &[Hash]) -> HashTree {
        let width = roundup_pow2(leaves.len());
        let first_leaf = width - 1;
        let mut nodes = vec![[0u8; 32]; 2 * width - 1];
        for i in 0..width {
            nodes[first_leaf + i] = match leaves.get(i) {
                Some(h) => *h,
                None => tagged_hash(EMPTY_LEAF_TAG, i.to_string().as_bytes()),
            };
        }
        for i in (0..first_leaf).rev() {
            nodes[i] = pair_hash(&nodes[2 * i + 1], &nodes[2 * i + 2]);
        }
        HashTree { nodes, first_leaf }
    }

    /// The root hash.
    pub(crate) fn root(&self) -> Hash {
        self.nodes[0]
    }

    /// Every node, root first (`list(t)`): what a share stores for its block
    /// and crypttext hash trees.
    pub(crate) fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// The index of node `i`'s sibling (i ≥ 1).
    fn sibling(i: usize) -> usize {
        if i % 2 == 1 { i + 1 } else { i - 1 }
    }

    /// The node indexes needed to check leaf `leafnum` against the root
    /// (`needed_hashes`): the siblings on the way up, and the leaf itself if
    /// `include_leaf`. Tahoe returns a Python set, and the share hash chain
    /// is written in its iteration order; [`PySet`] reproduces that order,
    /// so the shares written here are byte for byte the gateway's.
    pub(crate) fn needed_hashes(&self, leafnum: usize, include_leaf: bool) -> Vec<usize> {
        let mut here = self.first_leaf + leafnum;
        let mut set = PySet::new();
        while here != 0 {
            set.add(Self::sibling(here));
            here = (here - 1) / 2;
        }
        if include_leaf {
            set.add(self.first_leaf + leafnum);
        }
        set.items()
    }

    /// Node `i`.
    pub(crate) fn get(&self, i: usize) -> Option<&Hash> {
        self.nodes.get(i)
    }
}

/// The iteration order of a CPython 3 `set` of small non-negative ints
/// (whose hash is the int itself), built by adding them one by one:
/// `Objects/setobject.c`'s open addressing (8 slots to start, linear probes
/// of 9, then perturbation; growth to 4× the entries when 3/5 full). Only
/// the order matters here, and readers do not depend on it.
struct PySet {
    table: Vec<Option<usize>>,
    fill: usize,
}

impl PySet {
    const LINEAR_PROBES: usize = 9;

    fn new() -> PySet {
        PySet {
            table: vec![None; 8],
            fill: 0,
        }
    }

    /// The slot for `key`: where it is, or the first free one on its path.
    fn slot(table: &[Option<usize>], key: usize) -> usize {
        let mask = table.len() - 1;
        let mut perturb = key;
        let mut i = key & mask;
        loop {
            let probes = if i + Self::LINEAR_PROBES <= mask {
                Self::LINEAR_PROBES
            } else {
                0
            };
            for (j, entry) in table.iter().enumerate().skip(i).take(probes + 1) {
                match entry {
                    None => return j,
                    Some(k) if *k == key => return j,
                    Some(_) => {}
                }
            }
            perturb >>= 5;
            i = (i * 5 + 1 + perturb) & mask;
        }
    }

    fn add(&mut self, key: usize) {
        let at = Self::slot(&self.table, key);
        if self.table[at].is_some() {
            return;
        }
        self.table[at] = Some(key);
        self.fill += 1;
        let mask = self.table.len() - 1;
        if self.fill * 5 >= mask * 3 {
            let min_used = self.fill * 4;
            let mut size = 8;
            while size <= min_used {
                size <<= 1;
            }
            let old = std::mem::replace(&mut self.table, vec![None; size]);
            for key in old.into_iter().flatten() {
                let at = Self::slot(&self.table, key);
                self.table[at] = Some(key);
            }
        }
    }

    fn items(&self) -> Vec<usize> {
        self.table.iter().flatten().copied().collect()
    }
}

/// How many (index, hash) pairs a share carries for the share hash tree of
/// `n` shares: `len(needed_hashes(0, include_leaf=True))`.
pub(crate) fn share_hash_count(n: usize) -> usize {
    roundup_pow2(n).trailing_zeros() as usize + 1
}

/// Checks that `leaf` is leaf `leafnum` of a tree with `num_leaves` leaves
/// whose root is `root`, given (index, hash) pairs holding at least the
/// siblings on the way up. `Err` says which step failed.
pub(crate) fn verify_chain(
    root: &Hash,
    num_leaves: usize,
    leafnum: usize,
    leaf: &Hash,
    pairs: &[(usize, Hash)],
) -> Result<(), String> {
    let first_leaf = roundup_pow2(num_leaves) - 1;
    if leafnum >= roundup_pow2(num_leaves) {
        return Err(format!(
            "leaf {leafnum} outside a tree of {num_leaves} leaves"
        ));
    }
    let lookup = |i: usize| pairs.iter().find(|(j, _)| *j == i).map(|(_, h)| *h);
    let mut here = first_leaf + leafnum;
    if let Some(stored) = lookup(here)
        && stored != *leaf
    {
        return Err("the stored leaf hash differs from the computed one".into());
    }
    let mut hash = *leaf;
    while here != 0 {
        let sib = HashTree::sibling(here);
        let sib_hash = lookup(sib).ok_or_else(|| format!("hash chain lacks node {sib}"))?;
        hash = if here % 2 == 1 {
            pair_hash(&hash, &sib_hash)
        } else {
            pair_hash(&sib_hash, &hash)
        };
        here = (here - 1) / 2;
    }
    if hash != *root {
        return Err("hash chain does not lead to the root".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u8) -> Vec<Hash> {
        (0..n).map(|i| tagged_hash(b"t", &[i])).collect()
    }

    #[test]
    fn shapes() {
        let t = HashTree::new(&leaves(3));
        assert_eq!(t.nodes().len(), 7);
        assert_eq!(t.root(), pair_hash(t.get(1).unwrap(), t.get(2).unwrap()));
        assert_eq!(
            *t.get(6).unwrap(),
            tagged_hash(EMPTY_LEAF_TAG, b"3"),
            "padding leaves are numbered by leaf position"
        );
        assert_eq!(HashTree::new(&leaves(1)).nodes().len(), 1);
        assert_eq!(t.needed_hashes(0, true), vec![2, 3, 4]);
        // A resized set: iteration in slot order, not sorted.
        let big = HashTree::new(&leaves(100));
        // (tahoe-lafs 1.20.0 on Python 3.11: list(t.needed_hashes(5, True))).
        assert_eq!(
            big.needed_hashes(5, true),
            vec![66, 131, 4, 2, 132, 8, 16, 31]
        );
        assert_eq!(share_hash_count(1), 1);
        assert_eq!(share_hash_count(3), 3);
        assert_eq!(share_hash_count(10), 5);
        assert_eq!(share_hash_count(256), 9);
        for n in 1..40usize {
            let t = HashTree::new(&leaves(n as u8));
            assert_eq!(t.needed_hashes(0, true).len(), share_hash_count(n), "{n}");
        }
    }

    #[test]
    fn chains_verify_and_catch_changes() {
        let l = leaves(10);
        let t = HashTree::new(&l);
        for (i, leaf) in l.iter().enumerate() {
            let pairs: Vec<(usize, Hash)> = t
                .needed_hashes(i, true)
                .into_iter()
                .map(|j| (j, *t.get(j).unwrap()))
                .collect();
            verify_chain(&t.root(), 10, i, leaf, &pairs).unwrap();
            assert!(verify_chain(&t.root(), 10, i, &l[(i + 1) % 10], &pairs).is_err());
            let mut bad = pairs.clone();
            bad.last_mut().unwrap().1[0] ^= 1;
            assert!(verify_chain(&t.root(), 10, i, leaf, &bad).is_err());
            assert!(verify_chain(&t.root(), 10, i, leaf, &pairs[..1]).is_err());
        }
    }
}
