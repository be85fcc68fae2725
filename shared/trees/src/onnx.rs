//! The `ai.onnx.ml` tree operators, `TreeEnsembleRegressor` and `TreeEnsembleClassifier`, from
//! their attributes (read by whoever parses the graph, so this crate needs no ONNX parser).
//!
//! Answers follow onnxruntime, the reference every exporter tests against:
//! - a classifier whose leaves all score one class of two (what skl2onnx, onnxmltools and the
//!   boosters' converters write for binary models) scores the positive class: with `LOGISTIC`,
//!   probabilities `[σ(−s), σ(s)]` and the positive label when `s > 0`; with `NONE`,
//!   `[1 − s, s]` and the positive label when `s > 0.5` if every weight is non-negative (a
//!   forest's vote), else `[−s, s]` and the positive label when `s > 0`;
//! - otherwise each class gets its score plus its base value, the transform applies to the
//!   row, and the label is the class of the highest score.

use crate::TreesError;
use crate::build::{Aggregate, EnsembleSpec, NodeSpec, Split, TreeSpec};
use crate::model::{BinaryScore, ClassLabels, Task, TreeModel};
use crate::transform::PostTransform;

/// The node and leaf attributes both tree operators share. Leaf attributes are the
/// `target_*` of a regressor or the `class_*` of a classifier.
#[derive(Debug, Clone, Default)]
pub struct TreeAttributes {
    /// `nodes_treeids`.
    pub nodes_treeids: Vec<i64>,
    /// `nodes_nodeids`.
    pub nodes_nodeids: Vec<i64>,
    /// `nodes_featureids`.
    pub nodes_featureids: Vec<i64>,
    /// `nodes_modes`: `BRANCH_LEQ`, `BRANCH_LT`, `BRANCH_GTE`, `BRANCH_GT`, `BRANCH_EQ`,
    /// `BRANCH_NEQ` or `LEAF`.
    pub nodes_modes: Vec<String>,
    /// `nodes_values` (or `nodes_values_as_tensor`).
    pub nodes_values: Vec<f64>,
    /// `nodes_truenodeids`.
    pub nodes_truenodeids: Vec<i64>,
    /// `nodes_falsenodeids`.
    pub nodes_falsenodeids: Vec<i64>,
    /// `nodes_missing_value_tracks_true` (empty: all false).
    pub nodes_missing_value_tracks_true: Vec<i64>,
    /// `target_treeids` / `class_treeids`.
    pub leaf_treeids: Vec<i64>,
    /// `target_nodeids` / `class_nodeids`.
    pub leaf_nodeids: Vec<i64>,
    /// `target_ids` / `class_ids`.
    pub leaf_targetids: Vec<i64>,
    /// `target_weights` / `class_weights` (or their `_as_tensor` forms).
    pub leaf_weights: Vec<f64>,
    /// `base_values` (or `base_values_as_tensor`); empty when absent.
    pub base_values: Vec<f64>,
    /// `post_transform`.
    pub post_transform: PostTransform,
}

/// A `TreeEnsembleRegressor` reading rows of `n_features`.
pub fn regressor(
    attributes: &TreeAttributes,
    n_targets: usize,
    aggregate: Aggregate,
    n_features: usize,
) -> Result<TreeModel, TreesError> {
    let trees = trees(attributes, Ok)?;
    let ensemble = EnsembleSpec {
        n_features,
        n_targets,
        trees,
        base: attributes.base_values.clone(),
        aggregate,
    }
    .build()?;
    TreeModel::new(
        ensemble,
        attributes.post_transform,
        Task::Regression,
        Vec::new(),
    )
}

/// A `TreeEnsembleClassifier` with `labels`, reading rows of `n_features`.
pub fn classifier(
    attributes: &TreeAttributes,
    labels: ClassLabels,
    n_features: usize,
) -> Result<TreeModel, TreesError> {
    let n_classes = labels.len();
    if n_classes == 0 {
        return Err(TreesError::invalid("the classifier has no class labels"));
    }
    let mut scored: Vec<i64> = attributes.leaf_targetids.clone();
    scored.sort_unstable();
    scored.dedup();
    let binary = n_classes == 2 && scored.len() == 1;
    if binary {
        // Every leaf scores one class: the ensemble has one score, that of the positive class.
        let trees = trees(attributes, |_| Ok(0))?;
        let transform = attributes.post_transform;
        let non_negative = attributes.leaf_weights.iter().all(|&w| w >= 0.0);
        let score = match transform {
            PostTransform::Logistic => BinaryScore::Probability,
            PostTransform::None if non_negative => BinaryScore::Probability,
            PostTransform::None => BinaryScore::Margin,
            other => {
                return Err(TreesError::unsupported(format!(
                    "a two-class tree classifier with one score and post_transform {other:?} has no defined answer; export it with LOGISTIC or NONE"
                )));
            }
        };
        let ensemble = EnsembleSpec {
            n_features,
            n_targets: 1,
            trees,
            base: attributes
                .base_values
                .first()
                .copied()
                .into_iter()
                .collect(),
            aggregate: Aggregate::Sum,
        }
        .build()?;
        return TreeModel::new(
            ensemble,
            transform,
            Task::Classification {
                labels,
                binary: Some(score),
            },
            Vec::new(),
        );
    }
    let trees = trees(attributes, |class| {
        if class < n_classes {
            Ok(class)
        } else {
            Err(TreesError::invalid(format!(
                "a leaf scores class {class} of {n_classes}"
            )))
        }
    })?;
    let ensemble = EnsembleSpec {
        n_features,
        n_targets: n_classes,
        trees,
        base: attributes.base_values.clone(),
        aggregate: Aggregate::Sum,
    }
    .build()?;
    TreeModel::new(
        ensemble,
        attributes.post_transform,
        Task::Classification {
            labels,
            binary: None,
        },
        Vec::new(),
    )
}

/// The ONNX-ML aggregate function name.
pub fn aggregate_from_onnx(name: &str) -> Option<Aggregate> {
    Some(match name {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        _ => return None,
    })
}

fn split_of(mode: &str) -> Result<Option<Split>, TreesError> {
    Ok(Some(match mode {
        "BRANCH_LEQ" => Split::Leq,
        "BRANCH_LT" => Split::Lt,
        "BRANCH_GTE" => Split::Gte,
        "BRANCH_GT" => Split::Gt,
        "BRANCH_EQ" => Split::Eq,
        "BRANCH_NEQ" => Split::Neq,
        "LEAF" => return Ok(None),
        other => {
            return Err(TreesError::unsupported(format!(
                "tree node mode {other:?} is not supported"
            )));
        }
    }))
}

/// A tree's nodes (filled as they are read) and the index of each node id.
type TreeUnderConstruction = (Vec<Option<NodeSpec>>, std::collections::HashMap<i64, usize>);

/// Groups the flat attribute lists into trees; `target_of` maps a leaf's target (or class) id.
fn trees(
    a: &TreeAttributes,
    target_of: impl Fn(usize) -> Result<usize, TreesError>,
) -> Result<Vec<TreeSpec>, TreesError> {
    let n = a.nodes_nodeids.len();
    let lists = [
        ("nodes_treeids", a.nodes_treeids.len()),
        ("nodes_featureids", a.nodes_featureids.len()),
        ("nodes_modes", a.nodes_modes.len()),
        ("nodes_values", a.nodes_values.len()),
        ("nodes_truenodeids", a.nodes_truenodeids.len()),
        ("nodes_falsenodeids", a.nodes_falsenodeids.len()),
    ];
    if n == 0 {
        return Err(TreesError::invalid("the tree ensemble has no nodes"));
    }
    if let Some((name, len)) = lists.iter().find(|(_, len)| *len != n) {
        return Err(TreesError::invalid(format!(
            "{name} has {len} entries, nodes_nodeids {n}"
        )));
    }
    if !a.nodes_missing_value_tracks_true.is_empty() && a.nodes_missing_value_tracks_true.len() != n
    {
        return Err(TreesError::invalid(
            "nodes_missing_value_tracks_true doesn't have one entry per node",
        ));
    }
    let leaves = a.leaf_nodeids.len();
    if a.leaf_treeids.len() != leaves
        || a.leaf_targetids.len() != leaves
        || a.leaf_weights.len() != leaves
    {
        return Err(TreesError::invalid(
            "the leaf attributes (tree ids, node ids, targets, weights) differ in length",
        ));
    }
    let index = |v: i64, what: &str| {
        usize::try_from(v).map_err(|_| TreesError::invalid(format!("{what} {v} is negative")))
    };
    // Trees by id, in order of first appearance; nodes of a tree by node id.
    let mut tree_of_id: std::collections::BTreeMap<i64, usize> = Default::default();
    let mut specs: Vec<TreeUnderConstruction> = Vec::new();
    for i in 0..n {
        let t = *tree_of_id.entry(a.nodes_treeids[i]).or_insert_with(|| {
            specs.push(Default::default());
            specs.len() - 1
        });
        let (nodes, ids) = &mut specs[t];
        if ids.insert(a.nodes_nodeids[i], nodes.len()).is_some() {
            return Err(TreesError::invalid(format!(
                "tree {} has node {} twice",
                a.nodes_treeids[i], a.nodes_nodeids[i]
            )));
        }
        nodes.push(None);
    }
    // Branches first (children are resolved by node id), then leaves gather their weights.
    let mut leaf_weights: Vec<Vec<Vec<(usize, f64)>>> = specs
        .iter()
        .map(|(nodes, _)| vec![Vec::new(); nodes.len()])
        .collect();
    for l in 0..leaves {
        let t = tree_of_id.get(&a.leaf_treeids[l]).copied().ok_or_else(|| {
            TreesError::invalid(format!(
                "a leaf names tree {}, which has no nodes",
                a.leaf_treeids[l]
            ))
        })?;
        let at = specs[t].1.get(&a.leaf_nodeids[l]).copied().ok_or_else(|| {
            TreesError::invalid(format!(
                "a leaf names node {} of tree {}, which doesn't exist",
                a.leaf_nodeids[l], a.leaf_treeids[l]
            ))
        })?;
        let target = target_of(index(a.leaf_targetids[l], "a leaf target")?)?;
        leaf_weights[t][at].push((target, a.leaf_weights[l]));
    }
    for i in 0..n {
        let t = tree_of_id[&a.nodes_treeids[i]];
        let at = specs[t].1[&a.nodes_nodeids[i]];
        let node = match split_of(&a.nodes_modes[i])? {
            None => NodeSpec::Leaf {
                weights: std::mem::take(&mut leaf_weights[t][at]),
            },
            Some(split) => {
                let child = |id: i64| {
                    specs[t].1.get(&id).copied().ok_or_else(|| {
                        TreesError::invalid(format!(
                            "node {} of tree {} has child {id}, which doesn't exist",
                            a.nodes_nodeids[i], a.nodes_treeids[i]
                        ))
                    })
                };
                NodeSpec::Branch {
                    feature: index(a.nodes_featureids[i], "a feature id")?,
                    split,
                    threshold: a.nodes_values[i],
                    missing_goes_true: a
                        .nodes_missing_value_tracks_true
                        .get(i)
                        .is_some_and(|&v| v != 0),
                    zero_is_missing: false,
                    if_true: child(a.nodes_truenodeids[i])?,
                    if_false: child(a.nodes_falsenodeids[i])?,
                }
            }
        };
        specs[t].0[at] = Some(node);
    }
    specs
        .into_iter()
        .map(|(nodes, ids)| {
            // The root is the node no other node names as a child; exporters number it 0.
            let root = ids.get(&0).copied().unwrap_or(0);
            Ok(TreeSpec {
                nodes: nodes
                    .into_iter()
                    .map(|n| n.expect("every node filled"))
                    .collect(),
                root,
            })
        })
        .collect()
}

/// The attributes of `ai.onnx.ml` opset 5's `TreeEnsemble`, which replaces both tree operators:
/// interior nodes and leaves in separate lists, trees by their root's position, modes and
/// thresholds as tensors, enums as integers.
#[derive(Debug, Clone, Default)]
pub struct TreeEnsembleV5 {
    /// `tree_roots`: each tree's root, a position in the `nodes_*` lists.
    pub tree_roots: Vec<i64>,
    /// `nodes_featureids`.
    pub nodes_featureids: Vec<i64>,
    /// `nodes_modes`: 0 `<=`, 1 `<`, 2 `>=`, 3 `>`, 4 `==`, 5 `!=`, 6 set membership.
    pub nodes_modes: Vec<u8>,
    /// `nodes_splits`.
    pub nodes_splits: Vec<f64>,
    /// `nodes_truenodeids`: a position in `nodes_*`, or in `leaf_*` where `nodes_trueleafs`.
    pub nodes_truenodeids: Vec<i64>,
    /// `nodes_trueleafs`.
    pub nodes_trueleafs: Vec<i64>,
    /// `nodes_falsenodeids`.
    pub nodes_falsenodeids: Vec<i64>,
    /// `nodes_falseleafs`.
    pub nodes_falseleafs: Vec<i64>,
    /// `nodes_missing_value_tracks_true` (empty: all false).
    pub nodes_missing_value_tracks_true: Vec<i64>,
    /// `leaf_targetids`.
    pub leaf_targetids: Vec<i64>,
    /// `leaf_weights`.
    pub leaf_weights: Vec<f64>,
    /// `n_targets`.
    pub n_targets: i64,
    /// `aggregate_function`: 0 average, 1 sum, 2 min, 3 max.
    pub aggregate_function: i64,
    /// `post_transform`: 0 none, 1 softmax, 2 logistic, 3 softmax-zero, 4 probit.
    pub post_transform: i64,
}

/// An opset-5 `TreeEnsemble` reading rows of `n_features`: `Y` is `[rows, n_targets]`.
pub fn tree_ensemble_v5(a: &TreeEnsembleV5, n_features: usize) -> Result<TreeModel, TreesError> {
    let aggregate = match a.aggregate_function {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        other => {
            return Err(TreesError::invalid(format!(
                "aggregate_function {other} is not one of 0 to 3"
            )));
        }
    };
    let post_transform = match a.post_transform {
        0 => PostTransform::None,
        1 => PostTransform::Softmax,
        2 => PostTransform::Logistic,
        3 => PostTransform::SoftmaxZero,
        4 => PostTransform::Probit,
        other => {
            return Err(TreesError::invalid(format!(
                "post_transform {other} is not one of 0 to 4"
            )));
        }
    };
    let n_targets = usize::try_from(a.n_targets)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| TreesError::invalid(format!("n_targets {} is not positive", a.n_targets)))?;
    let attributes = v5_as_attributes(a, post_transform)?;
    regressor(&attributes, n_targets, aggregate, n_features)
}

/// The opset-5 lists rewritten as the older operators' (one node list with `LEAF` nodes, leaves
/// by tree and node id), walking each tree from its root.
fn v5_as_attributes(
    a: &TreeEnsembleV5,
    post_transform: PostTransform,
) -> Result<TreeAttributes, TreesError> {
    let n = a.nodes_featureids.len();
    let lists = [
        ("nodes_modes", a.nodes_modes.len()),
        ("nodes_splits", a.nodes_splits.len()),
        ("nodes_truenodeids", a.nodes_truenodeids.len()),
        ("nodes_trueleafs", a.nodes_trueleafs.len()),
        ("nodes_falsenodeids", a.nodes_falsenodeids.len()),
        ("nodes_falseleafs", a.nodes_falseleafs.len()),
    ];
    if let Some((name, len)) = lists.iter().find(|(_, len)| *len != n) {
        return Err(TreesError::invalid(format!(
            "{name} has {len} entries, nodes_featureids {n}"
        )));
    }
    if a.leaf_targetids.len() != a.leaf_weights.len() {
        return Err(TreesError::invalid(
            "leaf_targetids and leaf_weights differ in length",
        ));
    }
    let mode_name = |mode: u8| -> Result<&'static str, TreesError> {
        Ok(match mode {
            0 => "BRANCH_LEQ",
            1 => "BRANCH_LT",
            2 => "BRANCH_GTE",
            3 => "BRANCH_GT",
            4 => "BRANCH_EQ",
            5 => "BRANCH_NEQ",
            6 => {
                return Err(TreesError::unsupported(
                    "TreeEnsemble splits on set membership (BRANCH_MEMBER) are not supported; export the model with the older TreeEnsembleRegressor / TreeEnsembleClassifier (ai.onnx.ml opset 3), which has none",
                ));
            }
            other => {
                return Err(TreesError::invalid(format!(
                    "tree node mode {other} is not one of 0 to 6"
                )));
            }
        })
    };
    let position = |v: i64, len: usize, what: &str| {
        usize::try_from(v)
            .ok()
            .filter(|&p| p < len)
            .ok_or_else(|| TreesError::invalid(format!("{what} {v} is out of range")))
    };
    let mut out = TreeAttributes {
        post_transform,
        ..TreeAttributes::default()
    };
    let mut visited = vec![false; n];
    for (tree, &root) in a.tree_roots.iter().enumerate() {
        let tree = tree as i64;
        let mut next_id = 0i64;
        // (position in nodes_*, or in leaf_* when the bool says so; the id it gets)
        let mut stack = vec![(position(root, n, "a tree root")?, false, 0i64)];
        next_id += 1;
        while let Some((at, is_leaf, id)) = stack.pop() {
            out.nodes_treeids.push(tree);
            out.nodes_nodeids.push(id);
            if is_leaf {
                out.nodes_featureids.push(0);
                out.nodes_modes.push("LEAF".into());
                out.nodes_values.push(0.0);
                out.nodes_truenodeids.push(0);
                out.nodes_falsenodeids.push(0);
                out.nodes_missing_value_tracks_true.push(0);
                out.leaf_treeids.push(tree);
                out.leaf_nodeids.push(id);
                out.leaf_targetids.push(a.leaf_targetids[at]);
                out.leaf_weights.push(a.leaf_weights[at]);
                continue;
            }
            if std::mem::replace(&mut visited[at], true) {
                return Err(TreesError::invalid(format!(
                    "node {at} is reached twice; the nodes don't form trees"
                )));
            }
            let (true_id, false_id) = (next_id, next_id + 1);
            next_id += 2;
            out.nodes_featureids.push(a.nodes_featureids[at]);
            out.nodes_modes.push(mode_name(a.nodes_modes[at])?.into());
            out.nodes_values.push(a.nodes_splits[at]);
            out.nodes_truenodeids.push(true_id);
            out.nodes_falsenodeids.push(false_id);
            out.nodes_missing_value_tracks_true.push(
                a.nodes_missing_value_tracks_true
                    .get(at)
                    .copied()
                    .unwrap_or(0),
            );
            for (child, leaf, child_id) in [
                (
                    a.nodes_falsenodeids[at],
                    a.nodes_falseleafs[at] != 0,
                    false_id,
                ),
                (a.nodes_truenodeids[at], a.nodes_trueleafs[at] != 0, true_id),
            ] {
                let len = if leaf { a.leaf_weights.len() } else { n };
                stack.push((position(child, len, "a child")?, leaf, child_id));
            }
        }
    }
    if out.nodes_nodeids.is_empty() {
        return Err(TreesError::invalid("the tree ensemble has no trees"));
    }
    Ok(out)
}
