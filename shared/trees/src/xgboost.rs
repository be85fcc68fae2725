//! XGBoost's own model files: JSON (`model.json`) and UBJSON (`model.ubj`), as `save_model`
//! writes them (XGBoost 1.0 and later).
//!
//! What the library does at prediction, done the same way: a split sends `x < threshold` left
//! and a missing value (NaN) the way its `default_left` says; a tree adds its leaf to the margin
//! of the class `tree_info` names; DART trees are scaled by their `weight_drop`; the margin
//! starts at `base_score` carried to margin space by the objective (logit for the logistic
//! objectives, log for Poisson, gamma and Tweedie); then the objective's transform.

use serde::Deserialize;

use crate::build::{Aggregate, EnsembleSpec, NodeSpec, Split, TreeSpec};
use crate::model::{BoosterTask, TreeModel};
use crate::transform::PostTransform;
use crate::{TreesError, ubjson};

#[derive(Deserialize)]
struct File {
    learner: Learner,
}

#[derive(Deserialize)]
struct Learner {
    #[serde(default)]
    feature_names: Vec<String>,
    #[serde(default)]
    feature_types: Vec<String>,
    gradient_booster: serde_json::Value,
    learner_model_param: ModelParam,
    objective: Objective,
}

#[derive(Deserialize)]
struct ModelParam {
    base_score: String,
    #[serde(default)]
    num_class: Option<String>,
    num_feature: String,
    #[serde(default)]
    num_target: Option<String>,
}

#[derive(Deserialize)]
struct Objective {
    name: String,
}

#[derive(Deserialize)]
struct GbTree {
    model: GbTreeModel,
}

#[derive(Deserialize)]
struct GbTreeModel {
    trees: Vec<Tree>,
    tree_info: Vec<i64>,
}

#[derive(Deserialize)]
struct Tree {
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    split_indices: Vec<i64>,
    split_conditions: Vec<f64>,
    default_left: Vec<Flag>,
    #[serde(default)]
    split_type: Vec<i64>,
    #[serde(default)]
    tree_param: Option<TreeParam>,
}

#[derive(Deserialize)]
struct TreeParam {
    #[serde(default)]
    size_leaf_vector: Option<String>,
}

/// `default_left` is written as 0/1 by some versions and as booleans by others.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Int(i64),
}

impl Flag {
    fn is_set(self) -> bool {
        match self {
            Flag::Bool(b) => b,
            Flag::Int(i) => i != 0,
        }
    }
}

/// Reads XGBoost's JSON model.
pub fn from_json(bytes: &[u8]) -> Result<TreeModel, TreesError> {
    let file: File = serde_json::from_slice(bytes)
        .map_err(|e| TreesError::invalid(format!("not an XGBoost JSON model: {e}")))?;
    translate(file)
}

/// Reads XGBoost's UBJSON model.
pub fn from_ubjson(bytes: &[u8]) -> Result<TreeModel, TreesError> {
    let value = ubjson::parse(bytes)?;
    let file: File = serde_json::from_value(value)
        .map_err(|e| TreesError::invalid(format!("not an XGBoost UBJSON model: {e}")))?;
    translate(file)
}

/// True if `bytes` look like an XGBoost JSON model (a JSON object with a `learner`).
pub fn looks_like_json(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    text.trim_start().starts_with('{') && text.contains("\"learner\"")
}

/// True if `bytes` look like an XGBoost UBJSON model (an object whose first key is `learner`).
pub fn looks_like_ubjson(bytes: &[u8]) -> bool {
    bytes.starts_with(b"{") && bytes.windows(7).take(64).any(|w| w == b"learner")
}

fn number<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, TreesError> {
    text.trim()
        .parse()
        .map_err(|_| TreesError::invalid(format!("{what} is {text:?}, not a number")))
}

/// `base_score` as XGBoost writes it: `"5E-1"`, or `"[5E-1]"` / `"[a,b,c]"` (one per target).
fn base_scores(text: &str) -> Result<Vec<f64>, TreesError> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(',')
        .map(|v| number::<f64>("base_score", v))
        .collect()
}

fn translate(file: File) -> Result<TreeModel, TreesError> {
    let learner = file.learner;
    let param = &learner.learner_model_param;
    let n_features: usize = number("num_feature", &param.num_feature)?;
    let num_class: usize = match &param.num_class {
        Some(v) => number("num_class", v)?,
        None => 0,
    };
    let num_target: usize = match &param.num_target {
        Some(v) => number("num_target", v)?,
        None => 1,
    };
    let objective = learner.objective.name.as_str();
    let (transform, margin_of_base, task) = objective_of(objective, num_class)?;
    let n_targets = num_class.max(num_target).max(1);

    let booster = learner.gradient_booster;
    let booster_name = booster.get("name").and_then(|n| n.as_str()).unwrap_or("");
    let (gbtree, weight_drop): (GbTree, Option<Vec<f64>>) = match booster_name {
        "gbtree" => (
            serde_json::from_value(booster)
                .map_err(|e| TreesError::invalid(format!("the gbtree booster: {e}")))?,
            None,
        ),
        "dart" => {
            let gbtree = booster
                .get("gbtree")
                .cloned()
                .ok_or_else(|| TreesError::invalid("a DART booster without its trees"))?;
            let drop: Vec<f64> = booster
                .get("weight_drop")
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| TreesError::invalid(format!("DART weight_drop: {e}")))?
                .unwrap_or_default();
            (
                serde_json::from_value(gbtree)
                    .map_err(|e| TreesError::invalid(format!("the DART trees: {e}")))?,
                Some(drop),
            )
        }
        "gblinear" => {
            return Err(TreesError::unsupported(
                "this XGBoost model is linear (booster gblinear), not trees; export it to ONNX or train it with booster=\"gbtree\"",
            ));
        }
        other => {
            return Err(TreesError::unsupported(format!(
                "XGBoost booster {other:?} is not supported (gbtree and dart are)"
            )));
        }
    };
    let model = gbtree.model;
    if model.tree_info.len() != model.trees.len() {
        return Err(TreesError::invalid(format!(
            "{} trees but {} tree_info entries",
            model.trees.len(),
            model.tree_info.len()
        )));
    }
    if let Some(drop) = &weight_drop
        && drop.len() != model.trees.len()
    {
        return Err(TreesError::invalid(format!(
            "{} trees but {} DART weights",
            model.trees.len(),
            drop.len()
        )));
    }
    let mut trees = Vec::with_capacity(model.trees.len());
    for (i, (tree, &target)) in model.trees.iter().zip(&model.tree_info).enumerate() {
        let target = usize::try_from(target)
            .ok()
            .filter(|&t| t < n_targets)
            .ok_or_else(|| {
                TreesError::invalid(format!("tree {i} belongs to class {target}, out of range"))
            })?;
        let scale = weight_drop.as_ref().map_or(1.0, |d| d[i]);
        trees.push(tree_spec(i, tree, target, scale, &learner.feature_types)?);
    }
    let mut base = base_scores(&param.base_score)?;
    if base.len() == 1 && n_targets > 1 {
        base = vec![base[0]; n_targets];
    }
    if base.len() != n_targets {
        return Err(TreesError::invalid(format!(
            "{} base scores for {n_targets} targets",
            base.len()
        )));
    }
    let base = base.into_iter().map(margin_of_base).collect();
    let ensemble = EnsembleSpec {
        n_features,
        n_targets,
        trees,
        base,
        aggregate: Aggregate::Sum,
    }
    .build()?;
    let task = task.task(n_targets);
    TreeModel::new(ensemble, transform, task, learner.feature_names)
}

type BaseToMargin = fn(f64) -> f64;

/// The transform, the mapping of `base_score` to margin space, and the task of an objective.
fn objective_of(
    name: &str,
    num_class: usize,
) -> Result<(PostTransform, BaseToMargin, BoosterTask), TreesError> {
    let identity: BaseToMargin = |b| b;
    let logit: BaseToMargin = |b| -(1.0 / b - 1.0).ln();
    let log: BaseToMargin = f64::ln;
    Ok(match name {
        "reg:squarederror"
        | "reg:squaredlogerror"
        | "reg:pseudohubererror"
        | "reg:absoluteerror"
        | "reg:quantileerror"
        | "reg:linear" => (PostTransform::None, identity, BoosterTask::Regression),
        "reg:logistic" => (PostTransform::Logistic, logit, BoosterTask::Regression),
        "binary:logistic" => (PostTransform::Logistic, logit, BoosterTask::Binary),
        "binary:logitraw" => (PostTransform::None, logit, BoosterTask::Regression),
        "count:poisson" | "reg:gamma" | "reg:tweedie" => {
            (PostTransform::Exp, log, BoosterTask::Regression)
        }
        "multi:softprob" | "multi:softmax" if num_class >= 2 => {
            (PostTransform::Softmax, identity, BoosterTask::Multiclass)
        }
        "rank:pairwise" | "rank:ndcg" | "rank:map" => {
            (PostTransform::None, identity, BoosterTask::Regression)
        }
        other => {
            return Err(TreesError::unsupported(format!(
                "XGBoost objective {other:?} is not supported; supported: reg:squarederror (and the other reg: losses), reg:logistic, binary:logistic, binary:logitraw, multi:softprob, multi:softmax, count:poisson, reg:gamma, reg:tweedie, rank:*"
            )));
        }
    })
}

fn tree_spec(
    index: usize,
    tree: &Tree,
    target: usize,
    scale: f64,
    feature_types: &[String],
) -> Result<TreeSpec, TreesError> {
    let n = tree.left_children.len();
    if [
        tree.right_children.len(),
        tree.split_indices.len(),
        tree.split_conditions.len(),
        tree.default_left.len(),
    ]
    .iter()
    .any(|&len| len != n)
        || n == 0
    {
        return Err(TreesError::invalid(format!(
            "tree {index}'s node arrays have different lengths (or none)"
        )));
    }
    if let Some(size) = tree
        .tree_param
        .as_ref()
        .and_then(|p| p.size_leaf_vector.as_deref())
        && !matches!(size.trim(), "0" | "1")
    {
        return Err(TreesError::unsupported(format!(
            "tree {index} has vector leaves (size_leaf_vector {size}, multi_strategy=\"multi_output_tree\"); train with the default one_output_per_tree"
        )));
    }
    let child = |c: i64, i: usize| {
        usize::try_from(c)
            .ok()
            .filter(|&c| c < n)
            .ok_or_else(|| TreesError::invalid(format!("tree {index} node {i}: child {c}")))
    };
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        if tree.left_children[i] == -1 {
            nodes.push(NodeSpec::Leaf {
                weights: vec![(target, tree.split_conditions[i] * scale)],
            });
            continue;
        }
        if tree.split_type.get(i).copied().unwrap_or(0) != 0 {
            return Err(TreesError::unsupported(format!(
                "tree {index} splits on a categorical feature; maas runs numerical splits only — one-hot encode the category, or export the model to ONNX"
            )));
        }
        let feature = usize::try_from(tree.split_indices[i]).map_err(|_| {
            TreesError::invalid(format!("tree {index} node {i}: feature index out of range"))
        })?;
        if feature_types.get(feature).is_some_and(|t| t == "c") {
            return Err(TreesError::unsupported(format!(
                "feature {feature} is categorical; maas runs numerical splits only"
            )));
        }
        nodes.push(NodeSpec::Branch {
            feature,
            split: Split::Lt,
            // XGBoost stores and compares thresholds as f32.
            threshold: f64::from(tree.split_conditions[i] as f32),
            missing_goes_true: tree.default_left[i].is_set(),
            zero_is_missing: false,
            if_true: child(tree.left_children[i], i)?,
            if_false: child(tree.right_children[i], i)?,
        });
    }
    Ok(TreeSpec { nodes, root: 0 })
}
