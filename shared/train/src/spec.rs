//! The training job spec: what to train, from which data, how, and whether an alias may move.
//!
//! Every field but `model` and `dataset.key` / `dataset.target` has a default; [`JobSpec::resolved`]
//! fills them in, and the resolved spec is what the manifest's lineage records. Unknown fields are
//! refused, so a misspelt setting is an error rather than silently ignored.

use maas_core::{AliasName, ModelName};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// A training job, as submitted (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job id: `[a-z0-9][a-z0-9._-]{0,63}`. Submitting the same id again resumes the job from its
    /// checkpoint. Generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The model the new version belongs to.
    pub model: String,
    /// Where the rows are.
    pub dataset: DatasetSpec,
    /// What is predicted.
    #[serde(default)]
    pub task: Task,
    /// The network.
    #[serde(default)]
    pub architecture: ArchitectureSpec,
    /// How it is trained.
    #[serde(default)]
    pub training: TrainingSettings,
    /// Which alias may move to the new version, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionPolicy>,
    /// Model card text for the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The dataset: an object in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Key in the store, e.g. `datasets/houses/2026-11.csv`.
    pub key: String,
    /// `csv` (with a header) or `jsonl` (one object per line). Default: from the key's extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DatasetFormat>,
    /// The column to predict.
    pub target: String,
    /// Feature columns in order. Default: every column but the target, in file order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    /// What to do with a row that has a missing or non-numeric value.
    #[serde(default)]
    pub bad_rows: BadRows,
}

/// Dataset file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// JSON lines: one object per line, keyed by column.
    Jsonl,
}

/// Handling of rows with missing or non-numeric values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BadRows {
    /// Refuse the dataset, listing the first problems with line and column.
    #[default]
    Reject,
    /// Leave such rows out (counted in the metrics).
    Drop,
}

/// The learning task, which fixes the loss, the output layer and the inference postprocessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Mean squared error on a numeric target; identity output.
    #[default]
    Regression,
    /// Binary cross-entropy with logits on a 0/1 (or two-valued) target; sigmoid at inference.
    Binary,
    /// Cross-entropy over the target's distinct values; softmax and class labels at inference.
    Multiclass,
}

/// Hidden activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HiddenActivation {
    /// max(0, x).
    #[default]
    Relu,
    /// tanh(x).
    Tanh,
    /// 1 / (1 + e^-x).
    Sigmoid,
}

/// The network: a multi-layer perceptron.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchitectureSpec {
    /// Widths of the hidden layers (the seed model: `[500, 100]`).
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Activation after each hidden layer.
    #[serde(default)]
    pub activation: HiddenActivation,
    /// Dropout probability after each hidden activation, during training only.
    #[serde(default)]
    pub dropout: f32,
}

impl Default for ArchitectureSpec {
    fn default() -> Self {
        Self {
            hidden: default_hidden(),
            activation: HiddenActivation::default(),
            dropout: 0.0,
        }
    }
}

fn default_hidden() -> Vec<usize> {
    vec![500, 100]
}

/// Optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Stochastic gradient descent with momentum.
    Sgd,
    /// Adam (L2 weight decay added to the gradient).
    #[default]
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSettings {
    /// Optimizer.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Learning rate.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// Momentum (SGD only).
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// Weight decay (L2 for SGD and Adam, decoupled for AdamW).
    #[serde(default)]
    pub weight_decay: f64,
    /// Passes over the training rows.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Rows per optimizer step.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Seed for initialisation, shuffling, the validation split and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Share of the rows held out for validation.
    #[serde(default = "default_validation")]
    pub validation_fraction: f64,
    /// Stop when the validation loss has not improved for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// Standardise features with the training rows' mean and standard deviation (stored in the
    /// manifest and applied by the engines at inference).
    #[serde(default)]
    pub standardize: bool,
}

impl Default for TrainingSettings {
    fn default() -> Self {
        Self {
            optimizer: OptimizerKind::default(),
            learning_rate: default_lr(),
            momentum: default_momentum(),
            weight_decay: 0.0,
            epochs: default_epochs(),
            batch_size: default_batch(),
            seed: default_seed(),
            validation_fraction: default_validation(),
            early_stopping: None,
            standardize: false,
        }
    }
}

fn default_lr() -> f64 {
    0.001
}
fn default_momentum() -> f64 {
    0.9
}
fn default_epochs() -> usize {
    10
}
fn default_batch() -> usize {
    64
}
fn default_seed() -> u64 {
    42
}
fn default_validation() -> f64 {
    0.2
}

/// Early stopping on the validation loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest decrease that counts as an improvement.
    #[serde(default)]
    pub min_delta: f64,
}

/// Moves `alias` to the new version only if its validation metric beats the alias's current
/// version by `min_improvement`. The decision is recorded either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionPolicy {
    /// The alias, e.g. `production`.
    pub alias: String,
    /// A metric of the manifest: `val_mse`, `val_r2`, `val_accuracy`, `val_log_loss`, `val_auc`.
    /// Default: `val_mse` for regression, `val_log_loss` for classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// `lower` or `higher` is better. Default: from the metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// How much better the new version must be (absolute, in the metric's unit).
    #[serde(default)]
    pub min_improvement: f64,
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Smaller is better (losses, errors).
    Lower,
    /// Larger is better (accuracy, R², AUC).
    Higher,
}

impl Direction {
    /// The natural direction of a metric name.
    pub fn of_metric(metric: &str) -> Self {
        let m = metric.to_ascii_lowercase();
        if ["r2", "accuracy", "auc"].iter().any(|k| m.ends_with(k)) {
            Direction::Higher
        } else {
            Direction::Lower
        }
    }
}

/// The metrics a job writes, by task (the promotion policy may use any of them).
pub fn metrics_of(task: Task) -> &'static [&'static str] {
    match task {
        Task::Regression => &["val_mse", "val_r2", "val_loss", "train_loss"],
        Task::Binary | Task::Multiclass => &[
            "val_log_loss",
            "val_accuracy",
            "val_auc",
            "val_loss",
            "train_loss",
        ],
    }
}

impl JobSpec {
    /// Parses a spec document, with a message that says what is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<Self, TrainError> {
        serde_json::from_slice(bytes).map_err(|e| TrainError::Spec(format!("{e}")))
    }

    /// Checks every field and fills in the defaults that depend on others (format, promotion
    /// metric and direction). The result is what lineage records.
    pub fn resolved(mut self) -> Result<Self, TrainError> {
        let bad = |msg: String| Err(TrainError::Spec(msg));
        ModelName::new(&self.model).map_err(|e| TrainError::Spec(format!("model: {e}")))?;
        if let Some(id) = &self.job_id {
            validate_job_id(id)?;
        }
        maas_store::validate_key(&self.dataset.key)
            .map_err(|e| TrainError::Spec(format!("dataset.key: {e}")))?;
        if self.dataset.format.is_none() {
            let lower = self.dataset.key.to_ascii_lowercase();
            self.dataset.format = if lower.ends_with(".csv") {
                Some(DatasetFormat::Csv)
            } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
                Some(DatasetFormat::Jsonl)
            } else {
                return bad(format!(
                    "dataset.format: cannot tell from the key {:?}; set \"format\": \"csv\" or \"jsonl\"",
                    self.dataset.key
                ));
            };
        }
        if self.dataset.target.is_empty() {
            return bad("dataset.target: name the column to predict".into());
        }
        if let Some(features) = &self.dataset.features {
            if features.is_empty() {
                return bad("dataset.features: list at least one column, or leave it out to use every column but the target".into());
            }
            if features.contains(&self.dataset.target) {
                return bad(format!(
                    "dataset.features: the target {:?} cannot also be a feature",
                    self.dataset.target
                ));
            }
        }
        let arch = &self.architecture;
        if arch.hidden.contains(&0) || arch.hidden.iter().any(|&w| w > 65_536) {
            return bad("architecture.hidden: layer widths must be between 1 and 65536".into());
        }
        if !(0.0..1.0).contains(&arch.dropout) {
            return bad("architecture.dropout: must be at least 0 and below 1".into());
        }
        let t = &self.training;
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            return bad("training.learning_rate: must be a positive number".into());
        }
        if !(0.0..1.0).contains(&t.momentum) {
            return bad("training.momentum: must be at least 0 and below 1".into());
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return bad("training.weight_decay: must be zero or positive".into());
        }
        if t.epochs == 0 || t.epochs > 100_000 {
            return bad("training.epochs: must be between 1 and 100000".into());
        }
        if t.batch_size == 0 || t.batch_size > 1 << 20 {
            return bad("training.batch_size: must be between 1 and 1048576".into());
        }
        if !(t.validation_fraction > 0.0 && t.validation_fraction < 1.0) {
            return bad("training.validation_fraction: must be above 0 and below 1 (a validation split is needed for metrics and promotion)".into());
        }
        if let Some(es) = &t.early_stopping
            && (es.patience == 0 || !(es.min_delta.is_finite() && es.min_delta >= 0.0))
        {
            return bad("training.early_stopping: patience must be at least 1 and min_delta zero or positive".into());
        }
        let task = self.task;
        if let Some(policy) = &mut self.promotion {
            AliasName::new(&policy.alias)
                .map_err(|e| TrainError::Spec(format!("promotion.alias: {e}")))?;
            let metric = policy
                .metric
                .get_or_insert_with(|| match task {
                    Task::Regression => "val_mse".into(),
                    _ => "val_log_loss".into(),
                })
                .clone();
            if !metrics_of(task).contains(&metric.as_str()) {
                return bad(format!(
                    "promotion.metric: {metric:?} is not a metric of a {task:?} job; use one of {:?}",
                    metrics_of(task)
                ));
            }
            policy
                .direction
                .get_or_insert(Direction::of_metric(&metric));
            if !(policy.min_improvement.is_finite() && policy.min_improvement >= 0.0) {
                return bad("promotion.min_improvement: must be zero or positive".into());
            }
        }
        Ok(self)
    }
}

/// Checks a job id: the same rules as model names (it becomes part of keys).
pub fn validate_job_id(id: &str) -> Result<(), TrainError> {
    ModelName::new(id)
        .map(|_| ())
        .map_err(|e| TrainError::Spec(format!("job_id: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_spec_needs_only_model_and_dataset() {
        let spec = JobSpec::from_json(
            br#"{"model": "seed", "dataset": {"key": "datasets/seed.csv", "target": "y"}}"#,
        )
        .expect("parses")
        .resolved()
        .expect("valid");
        assert_eq!(spec.architecture.hidden, [500, 100]);
        assert_eq!(spec.training.optimizer, OptimizerKind::Adam);
        assert_eq!(spec.training.learning_rate, 0.001);
        assert_eq!(spec.task, Task::Regression);
        assert_eq!(spec.dataset.format, Some(DatasetFormat::Csv));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |doc: &str| {
            JobSpec::from_json(doc.as_bytes())
                .and_then(JobSpec::resolved)
                .expect_err(doc)
                .to_string()
        };
        assert!(
            err(r#"{"model": "m", "dataset": {"key": "d.csv", "target": "y"}, "trainin": {}}"#)
                .contains("unknown field `trainin`")
        );
        assert!(
            err(r#"{"model": "../x", "dataset": {"key": "d.csv", "target": "y"}}"#)
                .contains("model")
        );
        assert!(
            err(r#"{"model": "m", "dataset": {"key": "d.parquet", "target": "y"}}"#)
                .contains("dataset.format")
        );
        assert!(err(r#"{"model": "m", "dataset": {"key": "d.csv", "target": "y"}, "training": {"learning_rate": -1}}"#).contains("learning_rate"));
        assert!(err(r#"{"model": "m", "dataset": {"key": "d.csv", "target": "y"}, "training": {"optimizer": "rmsprop"}}"#).contains("rmsprop"));
        assert!(err(r#"{"model": "m", "dataset": {"key": "d.csv", "target": "y"}, "promotion": {"alias": "production", "metric": "val_accuracy"}}"#).contains("not a metric"));
        assert!(err(r#"{"model": "m", "dataset": {"key": "d.csv", "target": "y"}, "promotion": {"alias": "latest"}}"#).contains("promotion.alias"));
    }

    #[test]
    fn promotion_defaults_follow_the_task() {
        let spec = JobSpec::from_json(br#"{"model": "m", "task": "binary", "dataset": {"key": "d.jsonl", "target": "y"}, "promotion": {"alias": "production"}}"#)
            .and_then(JobSpec::resolved)
            .expect("valid");
        let policy = spec.promotion.expect("policy");
        assert_eq!(policy.metric.as_deref(), Some("val_log_loss"));
        assert_eq!(policy.direction, Some(Direction::Lower));
        assert_eq!(Direction::of_metric("val_auc"), Direction::Higher);
    }
}
