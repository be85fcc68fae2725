//! LightGBM's text model (`booster.save_model("model.txt")`).
//!
//! What the library does at prediction, done the same way: a split sends `x ≤ threshold` left,
//! comparing in `f64`; by each split's missing type, NaN takes the default direction (`NaN`), or
//! NaN and values within ±1e-35 of zero do (`Zero`), or NaN counts as 0 (`None`); the trees of
//! one iteration score one class each; random-forest models (`average_output`) average over
//! iterations; then the objective's transform (`sigmoid:σ` scales the margin first).

use crate::TreesError;
use crate::build::{Aggregate, EnsembleSpec, NodeSpec, Split, TreeSpec};
use crate::model::{BoosterTask, TreeModel};
use crate::transform::PostTransform;

/// True if `bytes` look like a LightGBM text model.
pub fn looks_like_text(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]);
    head.starts_with("tree\n") || head.starts_with("tree\r\n")
}

/// One `key=value` block (the header, or one tree).
#[derive(Default)]
struct Block<'a> {
    entries: Vec<(&'a str, &'a str)>,
    flags: Vec<&'a str>,
}

impl<'a> Block<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    fn require(&self, key: &str, whose: &str) -> Result<&'a str, TreesError> {
        self.get(key)
            .ok_or_else(|| TreesError::invalid(format!("{whose} has no {key}")))
    }

    fn list<T: std::str::FromStr>(&self, key: &str, whose: &str) -> Result<Vec<T>, TreesError> {
        self.require(key, whose)?
            .split_whitespace()
            .map(|v| {
                v.parse().map_err(|_| {
                    TreesError::invalid(format!("{whose}: {key} holds {v:?}, not a number"))
                })
            })
            .collect()
    }
}

/// Reads LightGBM's text model.
pub fn from_text(bytes: &[u8]) -> Result<TreeModel, TreesError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| TreesError::invalid("not a LightGBM text model: the file is not UTF-8"))?;
    if !looks_like_text(bytes) {
        return Err(TreesError::invalid(
            "not a LightGBM text model: it doesn't start with \"tree\"",
        ));
    }
    let mut header = Block::default();
    let mut trees: Vec<Block> = Vec::new();
    let mut ended = false;
    for line in text.lines().skip(1) {
        let line = line.trim_end_matches('\r');
        if line == "end of trees" {
            ended = true;
            break;
        }
        if line.is_empty() {
            continue;
        }
        if line.starts_with("Tree=") {
            trees.push(Block::default());
            continue;
        }
        let block = trees.last_mut().unwrap_or(&mut header);
        match line.split_once('=') {
            Some((k, v)) => block.entries.push((k, v)),
            None => block.flags.push(line),
        }
    }
    if !ended {
        return Err(TreesError::invalid(
            "the LightGBM model ends before \"end of trees\" (truncated?)",
        ));
    }
    let n_features: usize = header
        .require("max_feature_idx", "the model")?
        .trim()
        .parse::<usize>()
        .map_err(|_| TreesError::invalid("max_feature_idx is not a number"))?
        + 1;
    let num_class: usize = parse_one(header.get("num_class").unwrap_or("1"), "num_class")?;
    let per_iteration: usize = parse_one(
        header.get("num_tree_per_iteration").unwrap_or("1"),
        "num_tree_per_iteration",
    )?;
    if per_iteration == 0 || !trees.len().is_multiple_of(per_iteration) {
        return Err(TreesError::invalid(format!(
            "{} trees are not whole iterations of {per_iteration}",
            trees.len()
        )));
    }
    let objective = header.require("objective", "the model")?;
    let (transform, scale, task) = objective_of(objective, num_class)?;
    let average = header.flags.contains(&"average_output");
    let iterations = (trees.len() / per_iteration).max(1);
    let leaf_scale = if average {
        scale / iterations as f64
    } else {
        scale
    };
    let mut specs = Vec::with_capacity(trees.len());
    for (i, tree) in trees.iter().enumerate() {
        specs.push(tree_spec(
            i,
            tree,
            i % per_iteration,
            leaf_scale,
            n_features,
        )?);
    }
    let feature_names = header
        .get("feature_names")
        .map(|names| names.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let ensemble = EnsembleSpec {
        n_features,
        n_targets: per_iteration,
        trees: specs,
        base: Vec::new(),
        aggregate: Aggregate::Sum,
    }
    .build()?;
    let task = task.task(per_iteration);
    TreeModel::new(ensemble, transform, task, feature_names)
}

fn parse_one<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, TreesError> {
    text.trim()
        .parse()
        .map_err(|_| TreesError::invalid(format!("{what} is {text:?}, not a number")))
}

/// The transform, the factor on the margin, and the task of an objective line such as
/// `binary sigmoid:1` or `multiclass num_class:3`.
fn objective_of(
    line: &str,
    num_class: usize,
) -> Result<(PostTransform, f64, BoosterTask), TreesError> {
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or("");
    let mut sigmoid = 1.0;
    for word in words {
        if let Some(v) = word.strip_prefix("sigmoid:") {
            sigmoid = parse_one(v, "sigmoid")?;
        }
        if word == "sqrt" {
            return Err(TreesError::unsupported(
                "LightGBM regression with reg_sqrt is not supported; train without reg_sqrt",
            ));
        }
    }
    Ok(match name {
        "regression" | "regression_l2" | "regression_l1" | "huber" | "fair" | "quantile"
        | "mape" | "lambdarank" | "rank_xendcg" => {
            (PostTransform::None, 1.0, BoosterTask::Regression)
        }
        "poisson" | "gamma" | "tweedie" => (PostTransform::Exp, 1.0, BoosterTask::Regression),
        "cross_entropy" | "xentropy" => (PostTransform::Logistic, 1.0, BoosterTask::Regression),
        "binary" => (PostTransform::Logistic, sigmoid, BoosterTask::Binary),
        "multiclass" | "softmax" if num_class >= 2 => {
            (PostTransform::Softmax, 1.0, BoosterTask::Multiclass)
        }
        other => {
            return Err(TreesError::unsupported(format!(
                "LightGBM objective {other:?} is not supported; supported: regression (l2, l1, huber, fair, quantile, mape), poisson, gamma, tweedie, cross_entropy, binary, multiclass, lambdarank"
            )));
        }
    })
}

fn tree_spec(
    index: usize,
    tree: &Block,
    target: usize,
    scale: f64,
    n_features: usize,
) -> Result<TreeSpec, TreesError> {
    let whose = format!("tree {index}");
    let num_leaves: usize = parse_one(tree.require("num_leaves", &whose)?, "num_leaves")?;
    if tree.get("is_linear").is_some_and(|v| v.trim() == "1") {
        return Err(TreesError::unsupported(
            "this LightGBM model has linear trees (linear_tree=true); train without it or export to ONNX",
        ));
    }
    let leaf_value: Vec<f64> = tree.list("leaf_value", &whose)?;
    if leaf_value.len() != num_leaves || num_leaves == 0 {
        return Err(TreesError::invalid(format!(
            "{whose}: {} leaf values for {num_leaves} leaves",
            leaf_value.len()
        )));
    }
    let leaf = |value: f64| NodeSpec::Leaf {
        weights: vec![(target, value * scale)],
    };
    if num_leaves == 1 {
        return Ok(TreeSpec {
            nodes: vec![leaf(leaf_value[0])],
            root: 0,
        });
    }
    let internal = num_leaves - 1;
    let split_feature: Vec<usize> = tree.list("split_feature", &whose)?;
    let threshold: Vec<f64> = tree.list("threshold", &whose)?;
    let decision_type: Vec<u32> = tree.list("decision_type", &whose)?;
    let left: Vec<i64> = tree.list("left_child", &whose)?;
    let right: Vec<i64> = tree.list("right_child", &whose)?;
    if [
        split_feature.len(),
        threshold.len(),
        decision_type.len(),
        left.len(),
        right.len(),
    ]
    .iter()
    .any(|&n| n != internal)
    {
        return Err(TreesError::invalid(format!(
            "{whose}: split arrays don't have {internal} entries"
        )));
    }
    // Internal node i is node i; leaf j (written as !j, i.e. −j − 1) is node internal + j.
    let node_of = |c: i64| -> Result<usize, TreesError> {
        let node = if c >= 0 {
            usize::try_from(c).ok().filter(|&c| c < internal)
        } else {
            usize::try_from(!c)
                .ok()
                .filter(|&j| j < num_leaves)
                .map(|j| internal + j)
        };
        node.ok_or_else(|| TreesError::invalid(format!("{whose}: child {c} out of range")))
    };
    let mut nodes = Vec::with_capacity(internal + num_leaves);
    for i in 0..internal {
        let decision = decision_type[i];
        if decision & 1 != 0 {
            return Err(TreesError::unsupported(format!(
                "{whose} splits on a categorical feature; maas runs numerical splits only — pass the category one-hot encoded, or export the model to ONNX"
            )));
        }
        if split_feature[i] >= n_features {
            return Err(TreesError::invalid(format!(
                "{whose}: split on feature {} of {n_features}",
                split_feature[i]
            )));
        }
        let default_left = decision & 2 != 0;
        let (missing_goes_true, zero_is_missing) = match (decision >> 2) & 3 {
            // None: NaN is read as 0.
            0 => (0.0 <= threshold[i], false),
            1 => (default_left, true),
            2 => (default_left, false),
            other => {
                return Err(TreesError::invalid(format!(
                    "{whose}: unknown missing type {other}"
                )));
            }
        };
        nodes.push(NodeSpec::Branch {
            feature: split_feature[i],
            split: Split::Leq,
            threshold: threshold[i],
            missing_goes_true,
            zero_is_missing,
            if_true: node_of(left[i])?,
            if_false: node_of(right[i])?,
        });
    }
    nodes.extend(leaf_value.into_iter().map(leaf));
    Ok(TreeSpec { nodes, root: 0 })
}
