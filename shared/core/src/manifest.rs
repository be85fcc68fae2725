//! The version manifest (`manifest.json`): the model card and the contract between the registry,
//! the trainer and the engines. A version exists for readers exactly when its manifest exists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ModelName, TensorSpec, Version};

/// Version of the manifest layout itself, bumped when a reader must behave differently.
pub const FORMAT_VERSION: u32 = 1;

/// The serialisation formats maas can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// An ONNX graph, served by tract (with the tree engine for `ai.onnx.ml` tree ensembles).
    Onnx,
    /// safetensors weights plus an `architecture`, served by candle.
    Safetensors,
    /// An XGBoost booster saved as JSON (`save_model("model.json")`), served by the tree engine.
    #[serde(rename = "xgboost-json")]
    XgboostJson,
    /// An XGBoost booster saved as UBJSON (`save_model("model.ubj")`), served by the tree engine.
    #[serde(rename = "xgboost-ubj")]
    XgboostUbj,
    /// A LightGBM booster saved as text (`booster.save_model("model.txt")`), served by the tree
    /// engine.
    #[serde(rename = "lightgbm-text")]
    LightgbmText,
}

impl ModelFormat {
    /// The artifact file name a version of this format stores its model under.
    pub fn artifact_name(self) -> &'static str {
        match self {
            ModelFormat::Onnx => "model.onnx",
            ModelFormat::Safetensors => "model.safetensors",
            ModelFormat::XgboostJson => "model.json",
            ModelFormat::XgboostUbj => "model.ubj",
            ModelFormat::LightgbmText => "model.txt",
        }
    }

    /// The Open Inference Protocol `platform` string.
    pub fn platform(self) -> &'static str {
        match self {
            ModelFormat::Onnx => "onnx",
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::XgboostJson | ModelFormat::XgboostUbj => "xgboost",
            ModelFormat::LightgbmText => "lightgbm",
        }
    }

    /// The name manifests use (`onnx`, `xgboost-json`, …).
    pub fn name(self) -> &'static str {
        match self {
            ModelFormat::Onnx => "onnx",
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::XgboostJson => "xgboost-json",
            ModelFormat::XgboostUbj => "xgboost-ubj",
            ModelFormat::LightgbmText => "lightgbm-text",
        }
    }
}

impl std::fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.platform())
    }
}

/// Integrity record of one artifact, checked whenever it is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Activation applied after a dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// No activation (the output layer of a regression or a logit layer).
    #[default]
    None,
    /// max(0, x).
    Relu,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// tanh(x).
    Tanh,
    /// Gaussian error linear unit (erf form, as PyTorch's default).
    Gelu,
}

/// One fully connected layer: `y = activation(x · Wᵀ + b)` with PyTorch's weight layout
/// `[out_features, in_features]` stored under `{name}.weight` and `{name}.bias`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenseLayer {
    /// Tensor-name prefix in the weights file (`layer1`, `0`, `net.2`, ...).
    pub name: String,
    /// Width of the layer's input.
    pub in_features: usize,
    /// Width of the layer's output.
    pub out_features: usize,
    /// Whether `{name}.bias` exists.
    #[serde(default = "default_true")]
    pub bias: bool,
    /// Activation applied to this layer's output.
    #[serde(default)]
    pub activation: Activation,
}

fn default_true() -> bool {
    true
}

/// The network a safetensors file holds weights for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Architecture {
    /// A chain of dense layers.
    Mlp {
        /// Layers in evaluation order.
        layers: Vec<DenseLayer>,
        /// True when maas inferred the chain from tensor names and shapes rather than being told.
        #[serde(default)]
        inferred: bool,
    },
}

impl Architecture {
    /// Width of the network's input.
    pub fn input_width(&self) -> usize {
        match self {
            Architecture::Mlp { layers, .. } => layers.first().map_or(0, |l| l.in_features),
        }
    }

    /// Width of the network's output.
    pub fn output_width(&self) -> usize {
        match self {
            Architecture::Mlp { layers, .. } => layers.last().map_or(0, |l| l.out_features),
        }
    }
}

/// Transformation applied to input features before the network sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Preprocess {
    /// Features go in as given.
    #[default]
    None,
    /// `(x - mean) / std` per feature, with the statistics of the training set.
    Standardize {
        /// Per-feature mean.
        mean: Vec<f32>,
        /// Per-feature standard deviation (never zero: constant features get 1).
        std: Vec<f32>,
    },
}

/// Transformation applied to the network's raw outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Postprocess {
    /// Outputs as computed (regression).
    #[default]
    Identity,
    /// Logistic function on each output (binary classification); optional labels for 0 and 1.
    Sigmoid {
        /// Class names for negative and positive, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<Vec<String>>,
    },
    /// Softmax across each row (multiclass); optional label per class.
    Softmax {
        /// Class names in output order, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<Vec<String>>,
    },
}

/// Where a version came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Lineage {
    /// A file pushed by a person or a pipeline.
    Pushed {
        /// File name as given to `maas push` (no directories).
        file_name: String,
        /// SHA-256 of the pushed file.
        sha256: String,
        /// Highest version that existed when this one was written.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_version: Option<Version>,
        /// maas version that validated and wrote it.
        code_version: String,
    },
    /// A training job's result.
    Trained {
        /// The job id.
        job_id: String,
        /// Dataset key in the bucket.
        dataset_key: String,
        /// ETag of the dataset object that was read.
        dataset_etag: String,
        /// SHA-256 of the dataset bytes.
        dataset_sha256: String,
        /// Rows used (after any dropped rows).
        rows: u64,
        /// The full training spec, with defaults filled in.
        spec: serde_json::Value,
        /// Highest version that existed when training started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_version: Option<Version>,
        /// maas version that trained it.
        code_version: String,
    },
}

/// Free-text model card fields a team fills in for reviewers and regulators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ModelCard {
    /// What the model does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What it may be used for, and what not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intended_use: Option<String>,
    /// Known limitations and risks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limitations: Option<String>,
    /// Who answers for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Licence of the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

/// `manifest.json` of one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of this document ([`FORMAT_VERSION`]).
    pub manifest_version: u32,
    /// Model name.
    pub name: ModelName,
    /// This version's number.
    pub version: Version,
    /// Primary artifact format; its file is `format.artifact_name()`.
    pub format: ModelFormat,
    /// When the version was written (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Who wrote it (user, role or job).
    pub created_by: String,
    /// Artifact file name → integrity record. Every file of the version is listed.
    pub artifacts: BTreeMap<String, ArtifactInfo>,
    /// Model inputs (one row per batch element along the first dimension).
    pub inputs: Vec<TensorSpec>,
    /// Model outputs.
    pub outputs: Vec<TensorSpec>,
    /// Column names of the first input's features, for CSV and JSON records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    /// The network, for safetensors models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    /// Applied to inputs before the network.
    #[serde(default)]
    pub preprocess: Preprocess,
    /// Applied to outputs after the network.
    #[serde(default)]
    pub postprocess: Postprocess,
    /// Whether NaN and infinite inputs are passed through instead of refused.
    #[serde(default)]
    pub allow_non_finite: bool,
    /// Human-written model card.
    #[serde(default)]
    pub card: ModelCard,
    /// Where the version came from.
    pub lineage: Lineage,
    /// Evaluation results (`val_mse`, `accuracy`, per-epoch losses, ...).
    #[serde(default)]
    pub metrics: BTreeMap<String, serde_json::Value>,
}

/// The parts of a manifest a user may supply at push time (`maas push --manifest FILE`).
/// Everything maas computes itself (name, version, artifacts, lineage) is not in here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ManifestTemplate {
    /// Override the input metadata read from the model.
    #[serde(default)]
    pub inputs: Option<Vec<TensorSpec>>,
    /// Override the output metadata read from the model.
    #[serde(default)]
    pub outputs: Option<Vec<TensorSpec>>,
    /// Feature column names.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// The network, for safetensors weights whose layout can't be inferred.
    #[serde(default)]
    pub architecture: Option<Architecture>,
    /// Input preprocessing.
    #[serde(default)]
    pub preprocess: Option<Preprocess>,
    /// Output postprocessing.
    #[serde(default)]
    pub postprocess: Option<Postprocess>,
    /// Let NaN and infinities through.
    #[serde(default)]
    pub allow_non_finite: Option<bool>,
    /// Model card text.
    #[serde(default)]
    pub card: Option<ModelCard>,
    /// Metrics measured elsewhere.
    #[serde(default)]
    pub metrics: Option<BTreeMap<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataType;

    fn sample() -> Manifest {
        Manifest {
            manifest_version: FORMAT_VERSION,
            name: ModelName::new("seed").expect("valid"),
            version: Version::FIRST,
            format: ModelFormat::Safetensors,
            created_at: OffsetDateTime::UNIX_EPOCH,
            created_by: "tester".into(),
            artifacts: BTreeMap::from([(
                "model.safetensors".into(),
                ArtifactInfo {
                    sha256: "00".into(),
                    size: 3,
                },
            )]),
            inputs: vec![TensorSpec {
                name: "input".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, 2],
            }],
            outputs: vec![],
            features: Some(vec!["a".into(), "b".into()]),
            architecture: Some(Architecture::Mlp {
                layers: vec![DenseLayer {
                    name: "layer1".into(),
                    in_features: 2,
                    out_features: 1,
                    bias: true,
                    activation: Activation::None,
                }],
                inferred: true,
            }),
            preprocess: Preprocess::Standardize {
                mean: vec![0.0, 1.0],
                std: vec![1.0, 2.0],
            },
            postprocess: Postprocess::Softmax {
                labels: Some(vec!["x".into()]),
            },
            allow_non_finite: false,
            card: ModelCard::default(),
            lineage: Lineage::Pushed {
                file_name: "m.safetensors".into(),
                sha256: "00".into(),
                parent_version: None,
                code_version: "0.1.0".into(),
            },
            metrics: BTreeMap::new(),
        }
    }

    #[test]
    fn manifest_round_trips_through_json() {
        let m = sample();
        let json = serde_json::to_string_pretty(&m).expect("serialises");
        assert!(json.contains("\"format\": \"safetensors\""));
        assert!(json.contains("\"source\": \"pushed\""));
        assert!(json.contains("\"type\": \"standardize\""));
        let back: Manifest = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, m);
    }

    #[test]
    fn template_rejects_fields_maas_computes_itself() {
        let err = serde_json::from_str::<ManifestTemplate>(r#"{"version": 3}"#)
            .expect_err("version is not user-settable");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
