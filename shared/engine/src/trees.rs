//! Tree ensembles read from the boosters' own files (XGBoost JSON / UBJSON, LightGBM text),
//! served by `maas-trees`.
//!
//! One input, `input` (`FP32 [-1, features]`, NaN for a missing value, as the libraries take
//! it). Outputs as the ONNX exporters name them, so a booster answers the same whichever way it
//! was pushed: a regressor's `variable` (`FP32 [-1, targets]`); a classifier's `label`
//! (`INT64 [-1]`) and `probabilities` (`FP32 [-1, classes]`).

use maas_core::{DataType, ModelFormat, TensorSpec};
use maas_trees::{ClassLabels, Task, TreeModel, TreesError};

use crate::EngineError;
use crate::answer::{ClassLabel, ClassifierOutputs};
use crate::predictor::Predictor;
use crate::tensor::{Tensor, TensorData};

/// A booster ready to serve.
#[derive(Debug)]
pub(crate) struct TreePredictor {
    model: TreeModel,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl From<TreesError> for EngineError {
    fn from(e: TreesError) -> Self {
        match e {
            TreesError::Invalid(message) => EngineError::CorruptFile { message },
            TreesError::Unsupported(message) => EngineError::UnsupportedModel { message },
            e @ TreesError::InputSize { .. } => EngineError::InvalidInput {
                message: e.to_string(),
            },
        }
    }
}

impl TreePredictor {
    /// Reads a booster file of `format`.
    pub(crate) fn load(format: ModelFormat, bytes: &[u8]) -> Result<Self, EngineError> {
        let model = match format {
            ModelFormat::XgboostJson => maas_trees::xgboost::from_json(bytes)?,
            ModelFormat::XgboostUbj => maas_trees::xgboost::from_ubjson(bytes)?,
            ModelFormat::LightgbmText => maas_trees::lightgbm::from_text(bytes)?,
            other => {
                return Err(EngineError::UnsupportedModel {
                    message: format!("{other} is not a tree-ensemble format"),
                });
            }
        };
        Ok(Self::new(model))
    }

    pub(crate) fn new(model: TreeModel) -> Self {
        let inputs = vec![TensorSpec {
            name: "input".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, model.n_features() as i64],
        }];
        let outputs = match model.task() {
            Task::Regression => vec![TensorSpec {
                name: "variable".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, model.width() as i64],
            }],
            Task::Classification { labels, .. } => vec![
                TensorSpec {
                    name: "label".into(),
                    datatype: match labels {
                        ClassLabels::Int(_) => DataType::Int64,
                        ClassLabels::Str(_) => DataType::Bytes,
                    },
                    shape: vec![-1],
                },
                TensorSpec {
                    name: "probabilities".into(),
                    datatype: DataType::Fp32,
                    shape: vec![-1, model.width() as i64],
                },
            ],
        };
        Self {
            model,
            inputs,
            outputs,
        }
    }

    /// Feature names the file carries (empty when it has none).
    pub(crate) fn feature_names(&self) -> &[String] {
        self.model.feature_names()
    }
}

impl Predictor for TreePredictor {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn executor(&self) -> &'static str {
        "trees"
    }

    fn classifier(&self) -> Option<ClassifierOutputs> {
        match self.model.task() {
            Task::Regression => None,
            Task::Classification { labels, .. } => Some(ClassifierOutputs {
                classes: class_labels(labels),
                label: Some(0),
                probabilities: 1,
            }),
        }
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::InvalidInput {
                message: "the model takes one input".into(),
            })?;
        let rows = input.rows();
        let TensorData::F32(values) = input.data else {
            return Err(EngineError::InvalidInput {
                message: "the model takes FP32 features".into(),
            });
        };
        let prediction = self.model.predict(&values, rows)?;
        let scores = Tensor::new(
            self.outputs.last().map_or("variable", |s| s.name.as_str()),
            vec![rows, prediction.width],
            TensorData::F32(prediction.values),
        )?;
        match (prediction.classes, self.model.task()) {
            (Some(classes), Task::Classification { labels, .. }) => {
                let labels = match labels {
                    ClassLabels::Int(ids) => {
                        TensorData::I64(classes.iter().map(|&c| ids[c]).collect())
                    }
                    ClassLabels::Str(names) => {
                        TensorData::Bytes(classes.iter().map(|&c| names[c].clone()).collect())
                    }
                };
                let label = Tensor::new("label", vec![rows], labels)?;
                Ok(vec![label, scores])
            }
            _ => Ok(vec![scores]),
        }
    }
}

/// The classes of a tree model, as answers carry them.
pub(crate) fn class_labels(labels: &ClassLabels) -> Vec<ClassLabel> {
    match labels {
        ClassLabels::Int(ids) => ids.iter().copied().map(ClassLabel::Int).collect(),
        ClassLabels::Str(names) => names.iter().cloned().map(ClassLabel::Text).collect(),
    }
}
