//! [`Ensemble`]: trees laid out for inference, and the walk that scores rows.
//!
//! Nodes are 12 bytes: the threshold, a word holding the feature index and flags, and the index of
//! the right child; the left child is the next node. A leaf is its own right child with a NaN
//! threshold, so a walk that reaches it stays there; its `(target, value)` weights, kept in `f64`
//! so sums over hundreds of trees round once, are found through a side table.
//!
//! Rows are scored in blocks of [`BLOCK`]: each group of [`LANES`] trees is walked by every row
//! of the block before the next group, so the group's nodes are read from cache. A row walks the
//! trees of a group together, each a fixed number of steps (the group's depth) with no test for
//! leaves, so the loads of one tree's next node overlap the others' and nothing mispredicts but
//! the comparisons' outcome, which is a select.

use crate::build::{FEATURE_MASK, GENERAL, GeneralTest, LEAF, Layers, NAN_LEFT};
use crate::transform::PostTransform;
use crate::{Aggregate, TreesError};

/// Rows scored together, tree after tree.
const BLOCK: usize = 64;
/// Trees one row walks together.
const LANES: usize = 8;
/// LightGBM's `kZeroThreshold`: values this close to zero are zero.
const ZERO_THRESHOLD: f32 = 1e-35;

/// One node (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub(crate) struct Node {
    /// Branch: go left when `x ≤ value`. Leaf: NaN.
    pub(crate) value: f32,
    /// Branch: feature index | flags. Leaf: [`LEAF`] (feature 0).
    pub(crate) word: u32,
    /// Branch: the right child. Leaf: itself.
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
    /// Per node: a leaf's first weight and count.
    spans: Vec<[u32; 2]>,
    weights: Vec<Weight>,
    /// Per node, when [`Ensemble::dense_leaves`]: what a leaf adds to each target
    /// (`n_targets` values per node, zeros for branches).
    leaf_values: Vec<f64>,
    /// The roots, padded to whole groups of [`LANES`] with an empty tree (a leaf adding nothing).
    roots: Vec<u32>,
    /// The trees before the padding.
    n_trees: usize,
    /// Per group of [`LANES`] trees: the deepest tree's depth.
    group_depths: Vec<u32>,
    base: Vec<f64>,
    aggregate: Aggregate,
    /// Some node needs the general test: the walk checks each node's flag.
    general: bool,
}

/// Up to this many targets, leaves' sums are kept per node ([`Ensemble::leaf_values`]).
const DENSE_TARGETS: usize = 4;

impl Ensemble {
    pub(crate) fn new(
        n_features: usize,
        n_targets: usize,
        mut layers: Layers,
        base: Vec<f64>,
        aggregate: Aggregate,
        general: bool,
    ) -> Self {
        let n_trees = layers.roots.len();
        if !n_trees.is_multiple_of(LANES) {
            let empty = layers.nodes.len() as u32;
            layers.nodes.push(Node {
                value: f32::NAN,
                word: LEAF,
                right: empty,
            });
            layers.spans.push([0, 0]);
            let padded = n_trees.next_multiple_of(LANES);
            layers.roots.resize(padded, empty);
            layers.depths.resize(padded, 0);
        }
        let group_depths = layers
            .depths
            .chunks(LANES)
            .map(|group| group.iter().copied().max().unwrap_or(0))
            .collect();
        let dense =
            n_targets <= DENSE_TARGETS && matches!(aggregate, Aggregate::Sum | Aggregate::Average);
        let mut leaf_values = Vec::new();
        if dense {
            leaf_values = vec![0.0; layers.nodes.len() * n_targets];
            for (values, &[first, count]) in leaf_values.chunks_mut(n_targets).zip(&layers.spans) {
                let first = first as usize;
                for w in &layers.weights[first..first + count as usize] {
                    values[w.target as usize] += w.value;
                }
            }
        }
        let ensemble = Self {
            n_features,
            n_targets,
            nodes: layers.nodes,
            spans: layers.spans,
            weights: layers.weights,
            leaf_values,
            roots: layers.roots,
            n_trees,
            group_depths,
            base,
            aggregate,
            general,
        };
        ensemble.check_layout();
        ensemble
    }

    /// Asserts what [`Ensemble::walk_group`]'s unchecked reads rely on: every root and every
    /// child a walk can step to is a node; a leaf steps to itself, whatever the input (its
    /// threshold is NaN and NaN doesn't go left), and reads feature 0; a branch reads a feature
    /// below `n_features`. The builder lays nodes out this way; this proves it once per model.
    fn check_layout(&self) {
        let len = self.nodes.len();
        assert!(self.roots.iter().all(|&root| (root as usize) < len));
        for (at, node) in self.nodes.iter().enumerate() {
            let feature = (node.word & FEATURE_MASK) as usize;
            if node.word & LEAF != 0 {
                assert!(node.value.is_nan() && node.word & NAN_LEFT == 0);
                assert!(node.right as usize == at && feature == 0);
            } else {
                assert!(at + 1 < len && (node.right as usize) < len);
                assert!(feature < self.n_features);
            }
        }
    }

    /// Leaves' sums are kept per node: small sums or averages.
    fn dense_leaves(&self) -> bool {
        !self.leaf_values.is_empty()
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
        self.n_trees
    }

    /// Nodes in all trees (leaves included).
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes the laid-out ensemble holds.
    pub fn size_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>()
            + self.spans.len() * 8
            + self.weights.len() * std::mem::size_of::<Weight>()
            + self.leaf_values.len() * 8
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
        // The fixed-length walk reads a feature even on leaves (feature 0), so rows need one.
        let fixed_length = !self.general && k > 0;
        for (block, scores) in out.chunks_mut(BLOCK * width).enumerate() {
            let first = block * BLOCK;
            let n = scores.len() / width;
            let x = &input[first * k..(first + n) * k];
            if matches!(self.aggregate, Aggregate::Min | Aggregate::Max) {
                scores.fill(f64::NAN);
            }
            if fixed_length {
                let mut has_nan = [false; BLOCK];
                for (flag, row) in has_nan.iter_mut().zip(x.chunks_exact(k)) {
                    *flag = row.iter().any(|v| v.is_nan());
                }
                for (group, &depth) in self.roots.chunks_exact(LANES).zip(&self.group_depths) {
                    let group: &[u32; LANES] = group.try_into().expect("whole groups");
                    for ((row, row_scores), &nan) in x
                        .chunks_exact(k)
                        .zip(scores.chunks_mut(width))
                        .zip(&has_nan)
                    {
                        let at = if nan {
                            self.walk_group::<true>(group, depth, row)
                        } else {
                            self.walk_group::<false>(group, depth, row)
                        };
                        self.add_leaves(&at, row_scores);
                    }
                }
            } else {
                for &root in &self.roots[..self.n_trees] {
                    for (r, row_scores) in scores.chunks_mut(width).enumerate() {
                        let leaf = self.walk(root as usize, &x[r * k..(r + 1) * k]);
                        self.add_leaf(leaf, row_scores);
                    }
                }
            }
            for row in scores.chunks_mut(width) {
                self.finish(row);
                transform.apply(row);
            }
        }
        Ok(out)
    }

    /// Walks one row down the [`LANES`] trees at `roots` together, `depth` steps each (leaves
    /// hold their place); returns the leaf each reaches. Only for ensembles of plain `x ≤ t`
    /// tests; `NAN` says whether the row holds a NaN, which then goes each node's way.
    ///
    /// The one place the crate reads without bounds checks: they cost a third of the walk's
    /// time (measured on a 500-tree XGBoost model, see ARCHITECTURE.md). `row` must hold at
    /// least `max(n_features, 1)` values.
    #[inline(always)]
    #[allow(unsafe_code)]
    fn walk_group<const NAN: bool>(
        &self,
        roots: &[u32; LANES],
        depth: u32,
        row: &[f32],
    ) -> [usize; LANES] {
        debug_assert!(row.len() >= self.n_features.max(1));
        let mut at = roots.map(|root| root as usize);
        for _ in 0..depth {
            for a in &mut at {
                // SAFETY: `a` starts at a root and moves to a branch's left child (`a + 1`) or
                // to a node's `right`; `check_layout` proved all of them index `nodes`.
                let node = unsafe { *self.nodes.get_unchecked(*a) };
                // SAFETY: a branch's feature is below `n_features` and a leaf's is 0
                // (`check_layout`); `row` holds at least `max(n_features, 1)` values (the
                // caller's contract, checked by `predict_strided`).
                let v = unsafe { *row.get_unchecked((node.word & FEATURE_MASK) as usize) };
                let left = if NAN {
                    (v <= node.value) | (v.is_nan() & (node.word & NAN_LEFT != 0))
                } else {
                    v <= node.value
                };
                // A branch here would mispredict on half the steps.
                *a = std::hint::select_unpredictable(left, *a + 1, node.right as usize);
            }
        }
        at
    }

    /// Adds what the leaves at `at` add to one row's scores.
    #[inline(always)]
    fn add_leaves(&self, at: &[usize; LANES], scores: &mut [f64]) {
        if !self.dense_leaves() {
            for &leaf in at {
                self.add_leaf(leaf, scores);
            }
            return;
        }
        let width = self.n_targets;
        let value = |leaf: usize, target: usize| self.leaf_values[leaf * width + target];
        for (target, score) in scores.iter_mut().enumerate() {
            // Pairwise, so the eight additions don't wait on each other.
            let v = at.map(|leaf| value(leaf, target));
            *score += ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
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
        let [first, count] = self.spans[leaf];
        let first = first as usize;
        for w in &self.weights[first..first + count as usize] {
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
                Aggregate::Average if self.n_trees > 0 => *s /= self.n_trees as f64,
                Aggregate::Min | Aggregate::Max if s.is_nan() => *s = 0.0,
                _ => {}
            }
            *s += base;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::Aggregate;
    use crate::build::{EnsembleSpec, NodeSpec, Split, TreeSpec};
    use crate::transform::PostTransform;

    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// A tree grown from `seed`: splits on random features and thresholds, leaves at random
    /// depths up to `max_depth` (so trees of one group differ in depth), each leaf adding to
    /// one, several or none of `targets` targets.
    fn tree(seed: &mut u64, features: usize, targets: usize, max_depth: usize) -> TreeSpec {
        fn grow(
            nodes: &mut Vec<NodeSpec>,
            seed: &mut u64,
            features: usize,
            targets: usize,
            depth: usize,
        ) -> usize {
            let at = nodes.len();
            if depth == 0 || next(seed).is_multiple_of(4) {
                let mut weights = Vec::new();
                for target in 0..targets {
                    if targets == 1 || !next(seed).is_multiple_of(3) {
                        weights.push((target, (next(seed) % 1000) as f64 / 100.0 - 5.0));
                    }
                }
                nodes.push(NodeSpec::Leaf { weights });
                return at;
            }
            nodes.push(NodeSpec::Leaf { weights: vec![] });
            let left = grow(nodes, seed, features, targets, depth - 1);
            let right = grow(nodes, seed, features, targets, depth - 1);
            let split = match next(seed) % 4 {
                0 => Split::Leq,
                1 => Split::Lt,
                2 => Split::Gt,
                _ => Split::Gte,
            };
            nodes[at] = NodeSpec::Branch {
                feature: (next(seed) % features as u64) as usize,
                split,
                threshold: (next(seed) % 200) as f64 / 100.0 - 1.0,
                missing_goes_true: next(seed).is_multiple_of(2),
                zero_is_missing: false,
                if_true: left,
                if_false: right,
            };
            at
        }
        let mut nodes = Vec::new();
        let root = grow(&mut nodes, seed, features, targets, max_depth);
        TreeSpec { nodes, root }
    }

    /// The spec's own answer for one row: each tree walked from its root by the original test,
    /// its leaf's weights combined by the aggregate, then the base added.
    fn direct(spec: &EnsembleSpec, row: &[f32]) -> Vec<f64> {
        let mut spoken: Vec<Vec<f64>> = vec![Vec::new(); spec.n_targets];
        for tree in &spec.trees {
            let mut at = tree.root;
            loop {
                match &tree.nodes[at] {
                    NodeSpec::Leaf { weights } => {
                        for &(target, value) in weights {
                            spoken[target].push(value);
                        }
                        break;
                    }
                    NodeSpec::Branch {
                        feature,
                        split,
                        threshold,
                        missing_goes_true,
                        if_true,
                        if_false,
                        ..
                    } => {
                        let x = f64::from(row[*feature]);
                        let holds = if x.is_nan() {
                            *missing_goes_true
                        } else {
                            match split {
                                Split::Leq => x <= *threshold,
                                Split::Lt => x < *threshold,
                                Split::Gt => x > *threshold,
                                Split::Gte => x >= *threshold,
                                Split::Eq => x == *threshold,
                                Split::Neq => x != *threshold,
                            }
                        };
                        at = if holds { *if_true } else { *if_false };
                    }
                }
            }
        }
        spoken
            .iter()
            .zip(&spec.base)
            .map(|(values, base)| {
                let combined = match spec.aggregate {
                    Aggregate::Sum => values.iter().sum(),
                    Aggregate::Average => values.iter().sum::<f64>() / spec.trees.len() as f64,
                    Aggregate::Min => values.iter().copied().reduce(f64::min).unwrap_or(0.0),
                    Aggregate::Max => values.iter().copied().reduce(f64::max).unwrap_or(0.0),
                };
                combined + base
            })
            .collect()
    }

    proptest! {
        /// The fixed-length walk of tree groups (leaves hold their place) answers as each tree
        /// walked on its own, for groups of mixed depths, a last group shorter than the others,
        /// one-leaf trees, NaN inputs, every aggregate, and one to six targets (leaves summed
        /// per node up to four, found through their weights above).
        #[test]
        fn the_group_walk_answers_as_the_trees_walked_one_by_one(
            seed in 1u64..u64::MAX,
            n_trees in 1usize..20,
            n_targets in 1usize..=6,
            aggregate in prop_oneof![
                Just(Aggregate::Sum),
                Just(Aggregate::Average),
                Just(Aggregate::Min),
                Just(Aggregate::Max),
            ],
            max_depth in 0usize..7,
            rows in prop::collection::vec(prop::collection::vec(prop_oneof![Just(f32::NAN), -1.5f32..1.5], 3), 1..70),
        ) {
            let mut state = seed;
            let spec = EnsembleSpec {
                n_features: 3,
                n_targets,
                trees: (0..n_trees).map(|_| tree(&mut state, 3, n_targets, max_depth)).collect(),
                base: (0..n_targets).map(|t| 0.5 + t as f64).collect(),
                aggregate,
            };
            let ensemble = spec.build().expect("builds");
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            let got = ensemble.predict(&flat, rows.len(), PostTransform::None).expect("predicts");
            for (row, got) in rows.iter().zip(got.chunks(n_targets)) {
                let want = direct(&spec, row);
                for (g, w) in got.iter().zip(&want) {
                    prop_assert!((g - w).abs() < 1e-9, "{:?} vs {:?}", got, want);
                }
            }
        }
    }

    #[test]
    fn an_ensemble_of_leaves_needs_no_features() {
        let spec = EnsembleSpec {
            n_features: 0,
            n_targets: 1,
            trees: vec![TreeSpec {
                nodes: vec![NodeSpec::Leaf {
                    weights: vec![(0, 2.0)],
                }],
                root: 0,
            }],
            base: vec![1.0],
            aggregate: Aggregate::Sum,
        };
        let got = spec
            .build()
            .expect("builds")
            .predict(&[], 3, PostTransform::None)
            .expect("predicts");
        assert_eq!(got, vec![3.0; 3]);
    }
}
