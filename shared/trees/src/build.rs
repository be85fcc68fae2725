//! The format-neutral description of an ensemble ([`EnsembleSpec`]) that every reader produces,
//! and its translation into the layout [`Ensemble`] runs.
//!
//! The translation rewrites every split as "go left when `x ≤ t`" on an `f32` threshold:
//! - `x ≤ c` with a threshold `c` of any precision becomes `x ≤ t` where `t` is the largest `f32`
//!   not above `c`: inputs are `f32`, so no input lies between `t` and `c` and both tests agree
//!   on every input (LightGBM stores `f64` thresholds and compares in `f64`);
//! - `x < c` becomes `x ≤ t` with `t` the largest `f32` below `c` (XGBoost);
//! - `x ≥ c` and `x > c` swap the children and become `x < c` and `x ≤ c`.
//!
//! Equality splits and LightGBM's "zero is missing" keep a general test, taken only by the nodes
//! that need it.

use crate::TreesError;
use crate::predict::{Ensemble, Node, Weight};

/// How a branch compares its feature `x` with its threshold `c`; the named comparison being true
/// sends the row to `if_true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `x ≤ c` (LightGBM, ONNX `BRANCH_LEQ`).
    Leq,
    /// `x < c` (XGBoost, ONNX `BRANCH_LT`).
    Lt,
    /// `x ≥ c` (ONNX `BRANCH_GTE`).
    Gte,
    /// `x > c` (ONNX `BRANCH_GT`).
    Gt,
    /// `x == c` (ONNX `BRANCH_EQ`).
    Eq,
    /// `x != c` (ONNX `BRANCH_NEQ`).
    Neq,
}

/// One node of a tree as a reader found it.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeSpec {
    /// A split.
    Branch {
        /// Zero-based feature index.
        feature: usize,
        /// The comparison.
        split: Split,
        /// The threshold, at the precision the format stores it.
        threshold: f64,
        /// NaN goes to `if_true` (otherwise to `if_false`).
        missing_goes_true: bool,
        /// Values within ±1e-35 of zero count as missing too (LightGBM's `zero_as_missing`).
        zero_is_missing: bool,
        /// Index (within the tree) of the child taken when the comparison holds.
        if_true: usize,
        /// Index of the other child.
        if_false: usize,
    },
    /// A leaf: what it adds to each target it names.
    Leaf {
        /// `(target, value)` pairs.
        weights: Vec<(usize, f64)>,
    },
}

/// One tree: its nodes, by index, and which one is the root.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeSpec {
    /// The nodes; children refer to them by index.
    pub nodes: Vec<NodeSpec>,
    /// The root's index.
    pub root: usize,
}

/// How the trees' contributions to one target combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Their sum (boosting).
    Sum,
    /// Their mean over all trees (random forests).
    Average,
    /// The smallest contribution.
    Min,
    /// The largest contribution.
    Max,
}

/// A whole ensemble as a reader found it.
#[derive(Debug, Clone, PartialEq)]
pub struct EnsembleSpec {
    /// Features each row holds.
    pub n_features: usize,
    /// Scores each row gets.
    pub n_targets: usize,
    /// The trees.
    pub trees: Vec<TreeSpec>,
    /// Added to each target after the trees are combined (empty: zeros).
    pub base: Vec<f64>,
    /// How trees combine.
    pub aggregate: Aggregate,
}

/// Bits of [`Node::word`].
pub(crate) const LEAF: u32 = 1 << 31;
pub(crate) const NAN_LEFT: u32 = 1 << 30;
/// The node needs the general test ([`GeneralTest`] in bits 26–28).
pub(crate) const GENERAL: u32 = 1 << 29;
pub(crate) const TEST_SHIFT: u32 = 26;
pub(crate) const FEATURE_MASK: u32 = (1 << TEST_SHIFT) - 1;

/// The tests only some nodes need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum GeneralTest {
    /// `x ≤ t`, with NaN and values within ±1e-35 of zero taking the default.
    LeqZeroMissing = 0,
    /// `x == t`.
    Eq = 1,
    /// `x != t`.
    Neq = 2,
}

impl GeneralTest {
    pub(crate) fn of(word: u32) -> Self {
        match (word >> TEST_SHIFT) & 0b111 {
            0 => GeneralTest::LeqZeroMissing,
            1 => GeneralTest::Eq,
            _ => GeneralTest::Neq,
        }
    }
}

/// The largest `f32` not above `c` (`x ≤ c` ⟺ `x ≤ result` for every `f32` x).
pub(crate) fn f32_at_or_below(c: f64) -> f32 {
    if c.is_nan() {
        return f32::NAN;
    }
    let t = c as f32;
    if f64::from(t) > c { t.next_down() } else { t }
}

/// The largest `f32` below `c` (`x < c` ⟺ `x ≤ result` for every `f32` x).
pub(crate) fn f32_below(c: f64) -> f32 {
    if c.is_nan() {
        return f32::NAN;
    }
    let t = c as f32;
    if f64::from(t) < c {
        t
    } else if t == f32::NEG_INFINITY {
        // Nothing is below −∞; NaN compares false with every input.
        f32::NAN
    } else {
        t.next_down()
    }
}

impl EnsembleSpec {
    /// Checks the description and lays it out for inference.
    pub fn build(&self) -> Result<Ensemble, TreesError> {
        if self.n_targets == 0 {
            return Err(TreesError::invalid("the ensemble has no targets"));
        }
        if self.n_features >= FEATURE_MASK as usize {
            return Err(TreesError::unsupported(format!(
                "{} features are more than the tree engine addresses ({})",
                self.n_features, FEATURE_MASK
            )));
        }
        if !self.base.is_empty() && self.base.len() != self.n_targets {
            return Err(TreesError::invalid(format!(
                "{} base values for {} targets",
                self.base.len(),
                self.n_targets
            )));
        }
        let mut nodes = Vec::new();
        let mut spans = Vec::new();
        let mut weights = Vec::new();
        let mut roots = Vec::with_capacity(self.trees.len());
        let mut depths = Vec::with_capacity(self.trees.len());
        let mut general = false;
        for (t, tree) in self.trees.iter().enumerate() {
            let root = u32::try_from(nodes.len())
                .map_err(|_| TreesError::unsupported("the ensemble has too many nodes"))?;
            roots.push(root);
            let mut layout = Layout {
                spec: self,
                tree,
                tree_index: t,
                nodes: &mut nodes,
                spans: &mut spans,
                weights: &mut weights,
                visited: vec![false; tree.nodes.len()],
                general: &mut general,
            };
            depths.push(layout.place(tree.root, 0)? as u32);
        }
        if u32::try_from(nodes.len()).is_err() || u32::try_from(weights.len()).is_err() {
            return Err(TreesError::unsupported("the ensemble has too many nodes"));
        }
        let mut base = self.base.clone();
        base.resize(self.n_targets, 0.0);
        Ok(Ensemble::new(
            self.n_features,
            self.n_targets,
            Layers {
                nodes,
                spans,
                weights,
                roots,
                depths,
            },
            base,
            self.aggregate,
            general,
        ))
    }
}

/// The laid-out trees, as [`Ensemble`] holds them.
pub(crate) struct Layers {
    /// Every tree's nodes, depth-first.
    pub(crate) nodes: Vec<Node>,
    /// Per node: a leaf's first weight and count (`[0, 0]` for a branch).
    pub(crate) spans: Vec<[u32; 2]>,
    /// Every leaf's weights.
    pub(crate) weights: Vec<Weight>,
    /// Each tree's root node.
    pub(crate) roots: Vec<u32>,
    /// Each tree's depth (edges from the root to its deepest leaf).
    pub(crate) depths: Vec<u32>,
}

/// The depth-first placement of one tree.
struct Layout<'a> {
    spec: &'a EnsembleSpec,
    tree: &'a TreeSpec,
    tree_index: usize,
    nodes: &'a mut Vec<Node>,
    spans: &'a mut Vec<[u32; 2]>,
    weights: &'a mut Vec<Weight>,
    visited: Vec<bool>,
    general: &'a mut bool,
}

/// Deeper than this is a cycle or a degenerate file (XGBoost and LightGBM cap depth far lower).
const MAX_DEPTH: usize = 4096;

impl Layout<'_> {
    /// Places node `index` and its subtree, the left child right after it; returns the depth of
    /// its deepest leaf.
    fn place(&mut self, index: usize, depth: usize) -> Result<usize, TreesError> {
        let t = self.tree_index;
        if depth > MAX_DEPTH {
            return Err(TreesError::invalid(format!(
                "tree {t} is deeper than {MAX_DEPTH} levels"
            )));
        }
        let node = self.tree.nodes.get(index).ok_or_else(|| {
            TreesError::invalid(format!(
                "tree {t} refers to node {index}, which doesn't exist"
            ))
        })?;
        if std::mem::replace(&mut self.visited[index], true) {
            return Err(TreesError::invalid(format!(
                "tree {t} reaches node {index} twice (a cycle or a shared subtree)"
            )));
        }
        match node {
            NodeSpec::Leaf { weights } => {
                let first = self.weights.len() as u32;
                for &(target, value) in weights {
                    if target >= self.spec.n_targets {
                        return Err(TreesError::invalid(format!(
                            "a leaf of tree {t} adds to target {target}, but the model has {}",
                            self.spec.n_targets
                        )));
                    }
                    self.weights.push(Weight {
                        target: target as u32,
                        value,
                    });
                }
                let count = u32::try_from(weights.len())
                    .map_err(|_| TreesError::invalid("a leaf has too many weights"))?;
                // A leaf holds its place: no input is `≤ NaN`, and its right child is itself,
                // so a walk of fixed length stops on it (feature 0 is read and ignored).
                let at = u32::try_from(self.nodes.len())
                    .map_err(|_| TreesError::unsupported("the ensemble has too many nodes"))?;
                self.nodes.push(Node {
                    value: f32::NAN,
                    word: LEAF,
                    right: at,
                });
                self.spans.push([first, count]);
                Ok(depth)
            }
            &NodeSpec::Branch {
                feature,
                split,
                threshold,
                missing_goes_true,
                zero_is_missing,
                if_true,
                if_false,
            } => {
                if feature >= self.spec.n_features {
                    return Err(TreesError::invalid(format!(
                        "tree {t} splits on feature {feature}, but rows have {}",
                        self.spec.n_features
                    )));
                }
                // Rewritten as: left when `x ≤ value` (or the general test), NaN left if `nan_left`.
                let (value, left, right, nan_left, test) = match split {
                    Split::Leq => (
                        f32_at_or_below(threshold),
                        if_true,
                        if_false,
                        missing_goes_true,
                        None,
                    ),
                    Split::Lt => (
                        f32_below(threshold),
                        if_true,
                        if_false,
                        missing_goes_true,
                        None,
                    ),
                    // x > c ⟺ !(x ≤ c) for numbers: swap the children.
                    Split::Gt => (
                        f32_at_or_below(threshold),
                        if_false,
                        if_true,
                        !missing_goes_true,
                        None,
                    ),
                    Split::Gte => (
                        f32_below(threshold),
                        if_false,
                        if_true,
                        !missing_goes_true,
                        None,
                    ),
                    Split::Eq => (
                        exact_f32(threshold),
                        if_true,
                        if_false,
                        missing_goes_true,
                        Some(GeneralTest::Eq),
                    ),
                    Split::Neq => (
                        exact_f32(threshold),
                        if_true,
                        if_false,
                        missing_goes_true,
                        Some(GeneralTest::Neq),
                    ),
                };
                let test = match (test, zero_is_missing) {
                    (Some(test), _) => Some(test),
                    (None, true) => Some(GeneralTest::LeqZeroMissing),
                    (None, false) => None,
                };
                let mut word = feature as u32;
                if nan_left {
                    word |= NAN_LEFT;
                }
                if let Some(test) = test {
                    if zero_is_missing && test != GeneralTest::LeqZeroMissing {
                        return Err(TreesError::unsupported(
                            "an equality split that also treats zero as missing",
                        ));
                    }
                    word |= GENERAL | ((test as u32) << TEST_SHIFT);
                    *self.general = true;
                }
                let at = self.nodes.len();
                self.nodes.push(Node {
                    value,
                    word,
                    right: 0,
                });
                self.spans.push([0, 0]);
                let left_depth = self.place(left, depth + 1)?;
                let right_at = u32::try_from(self.nodes.len())
                    .map_err(|_| TreesError::unsupported("the ensemble has too many nodes"))?;
                self.nodes[at].right = right_at;
                let right_depth = self.place(right, depth + 1)?;
                Ok(left_depth.max(right_depth))
            }
        }
    }
}

/// `c` as an `f32` if it is one exactly; NaN (equal to nothing) otherwise.
fn exact_f32(c: f64) -> f32 {
    let t = c as f32;
    if f64::from(t) == c { t } else { f32::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The rewritten thresholds agree with the original test at the original precision on
        /// every f32 input, including the neighbours of the threshold.
        #[test]
        fn rewritten_thresholds_agree_with_the_original_test(c in any::<f64>(), x in any::<f32>(), near in -3i32..=3) {
            let mut candidates = vec![x, c as f32];
            let mut y = c as f32;
            for _ in 0..near.unsigned_abs() {
                y = if near < 0 { y.next_down() } else { y.next_up() };
            }
            candidates.push(y);
            for x in candidates {
                let xd = f64::from(x);
                prop_assert_eq!(x <= f32_at_or_below(c), xd <= c, "x={} c={}", x, c);
                prop_assert_eq!(x <= f32_below(c), xd < c, "x={} c={}", x, c);
            }
        }
    }

    #[test]
    fn thresholds_at_the_edges() {
        assert_eq!(f32_at_or_below(0.1), 0.1f32.next_down());
        assert_eq!(f32_at_or_below(f64::from(0.5f32)), 0.5);
        assert_eq!(f32_below(f64::from(0.5f32)), 0.5f32.next_down());
        assert_eq!(f32_at_or_below(f64::INFINITY), f32::INFINITY);
        assert_eq!(f32_at_or_below(1e300), f32::MAX);
        assert!(f32_below(f64::NEG_INFINITY).is_nan());
        assert!(f32_at_or_below(f64::NAN).is_nan());
    }
}
