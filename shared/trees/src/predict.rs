//! [`Ensemble`]: trees laid out for inference, and the walk that scores rows.
//!
//! Nodes are 12 bytes: the threshold, a word holding the feature index and flags, and the index of
//! the right child; the left child is the next node. Leaves point into one array of
//! `(target, value)` weights kept in `f64`, so sums over hundreds of trees round once, at the end.
//!
//! Rows are scored in blocks of [`BLOCK`]: each tree is walked by every row of the block before
//! the next tree, so its nodes are read from cache; within the block, [`LANES`] rows walk the tree
//! together, so the loads of one row's next node overlap the others'.

use crate::build::{FEATURE_MASK, GENERAL, GeneralTest, LEAF, NAN_LEFT};
use crate::transform::PostTransform;
use crate::{Aggregate, TreesError};

/// Rows scored together, tree after tree.
const BLOCK: usize = 64;
/// Rows that walk one tree in lockstep.
const LANES: usize = 8;
/// LightGBM's `kZeroThreshold`: values this close to zero are zero.
const ZERO_THRESHOLD: f32 = 1e-35;

/// One node (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub(crate) struct Node {
    /// Branch: go left when `x ≤ value`. Unused by leaves.
    pub(crate) value: f32,
    /// Branch: feature index | flags. Leaf: [`LEAF`] | number of weights.
    pub(crate) word: u32,
    /// Branch: the right child. Leaf: the first weight.
    pub(crate) right: u32,
}

/// What a leaf adds to one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Weight {
    pub(crate) target: u32,
    pub(crate) value: f64,
}

/// A tree ensemble ready to score rows.
#[derive(Debug, Clone)]
pub struct Ensemble {
    n_features: usize,
    n_targets: usize,
    nodes: Vec<Node>,
    weights: Vec<Weight>,
    roots: Vec<u32>,
    base: Vec<f64>,
    aggregate: Aggregate,
    /// Some node needs the general test: the walk checks each node's flag.
    general: bool,
}

impl Ensemble {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        n_features: usize,
        n_targets: usize,
        nodes: Vec<Node>,
        weights: Vec<Weight>,
        roots: Vec<u32>,
        base: Vec<f64>,
        aggregate: Aggregate,
        general: bool,
    ) -> Self {
        Self {
            n_features,
            n_targets,
            nodes,
            weights,
            roots,
            base,
            aggregate,
            general,
        }
    }

    /// Features each row holds.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Scores each row gets.
    pub fn n_targets(&self) -> usize {
        self.n_targets
    }

    /// Trees in the ensemble.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Nodes in all trees (leaves included).
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes the laid-out ensemble holds.
    pub fn size_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>()
            + self.weights.len() * std::mem::size_of::<Weight>()
            + self.roots.len() * 4
    }

    /// Scores `rows` rows of `input` (row-major, `rows × n_features`, NaN for missing): each
    /// row's `n_targets` scores (combined, plus the base values, then `transform`), in `f64`.
    pub fn predict(
        &self,
        input: &[f32],
        rows: usize,
        transform: PostTransform,
    ) -> Result<Vec<f64>, TreesError> {
        self.predict_strided(input, rows, self.n_features, transform)
    }

    /// [`Ensemble::predict`] on rows of `stride ≥ n_features` values, of which the first
    /// `n_features` are read (an ONNX tree operator's input may hold features no tree uses).
    pub fn predict_strided(
        &self,
        input: &[f32],
        rows: usize,
        stride: usize,
        transform: PostTransform,
    ) -> Result<Vec<f64>, TreesError> {
        if stride < self.n_features || rows.checked_mul(stride) != Some(input.len()) {
            return Err(TreesError::InputSize {
                rows,
                features: self.n_features.max(stride),
                values: input.len(),
            });
        }
        let k = stride;
        let width = self.n_targets;
        let total = rows
            .checked_mul(width)
            .ok_or_else(|| TreesError::unsupported("too many rows for one call"))?;
        let mut out = vec![0.0f64; total];
        let mut leaves = [0usize; BLOCK];
        for (block, scores) in out.chunks_mut(BLOCK * width).enumerate() {
            let first = block * BLOCK;
            let n = scores.len() / width;
            let x = &input[first * k..(first + n) * k];
            if matches!(self.aggregate, Aggregate::Min | Aggregate::Max) {
                scores.fill(f64::NAN);
            }
            for &root in &self.roots {
                self.walk_block(root as usize, x, k, &mut leaves[..n]);
                for (row, &leaf) in leaves[..n].iter().enumerate() {
                    self.add_leaf(leaf, &mut scores[row * width..(row + 1) * width]);
                }
            }
            for row in scores.chunks_mut(width) {
                self.finish(row);
                transform.apply(row);
            }
        }
        Ok(out)
    }

    /// The leaf each row of `x` reaches in the tree at `root`.
    fn walk_block(&self, root: usize, x: &[f32], k: usize, leaves: &mut [usize]) {
        let mut rows = leaves.chunks_mut(LANES).enumerate();
        for (lane_block, lanes) in &mut rows {
            let first = lane_block * LANES;
            if lanes.len() == LANES && !self.general {
                let mut at = [root; LANES];
                let mut done = 0u32;
                // Every lane steps until it sits on a leaf; lanes already there stay put.
                while done != (1 << LANES) - 1 {
                    for (lane, node_at) in at.iter_mut().enumerate() {
                        let node = self.nodes[*node_at];
                        if node.word & LEAF != 0 {
                            done |= 1 << lane;
                            continue;
                        }
                        let feature = (node.word & FEATURE_MASK) as usize;
                        let v = x[(first + lane) * k + feature];
                        let left = v <= node.value || (v.is_nan() && node.word & NAN_LEFT != 0);
                        *node_at = if left {
                            *node_at + 1
                        } else {
                            node.right as usize
                        };
                    }
                }
                lanes.copy_from_slice(&at);
            } else {
                for (lane, leaf) in lanes.iter_mut().enumerate() {
                    let row = &x[(first + lane) * k..(first + lane + 1) * k];
                    *leaf = self.walk(root, row);
                }
            }
        }
    }

    /// The leaf one row reaches, with every test.
    fn walk(&self, mut at: usize, row: &[f32]) -> usize {
        loop {
            let node = self.nodes[at];
            if node.word & LEAF != 0 {
                return at;
            }
            let v = row[(node.word & FEATURE_MASK) as usize];
            let nan_left = node.word & NAN_LEFT != 0;
            let left = if node.word & GENERAL == 0 {
                v <= node.value || (v.is_nan() && nan_left)
            } else {
                match GeneralTest::of(node.word) {
                    GeneralTest::LeqZeroMissing => {
                        if v.is_nan() || v.abs() <= ZERO_THRESHOLD {
                            nan_left
                        } else {
                            v <= node.value
                        }
                    }
                    GeneralTest::Eq => v == node.value || (v.is_nan() && nan_left),
                    GeneralTest::Neq => {
                        if v.is_nan() {
                            nan_left
                        } else {
                            v != node.value
                        }
                    }
                }
            };
            at = if left { at + 1 } else { node.right as usize };
        }
    }

    /// Adds the weights of the leaf at `leaf` to one row's scores.
    fn add_leaf(&self, leaf: usize, scores: &mut [f64]) {
        let node = self.nodes[leaf];
        let first = node.right as usize;
        let count = (node.word & FEATURE_MASK) as usize;
        for w in &self.weights[first..first + count] {
            let s = &mut scores[w.target as usize];
            *s = match self.aggregate {
                Aggregate::Sum | Aggregate::Average => *s + w.value,
                Aggregate::Min if s.is_nan() || w.value < *s => w.value,
                Aggregate::Max if s.is_nan() || w.value > *s => w.value,
                Aggregate::Min | Aggregate::Max => *s,
            };
        }
    }

    /// Completes one row's scores: the mean for averages, zero where no tree spoke, the base.
    fn finish(&self, row: &mut [f64]) {
        for (s, base) in row.iter_mut().zip(&self.base) {
            match self.aggregate {
                Aggregate::Average if !self.roots.is_empty() => *s /= self.roots.len() as f64,
                Aggregate::Min | Aggregate::Max if s.is_nan() => *s = 0.0,
                _ => {}
            }
            *s += base;
        }
    }
}
