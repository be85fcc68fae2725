//! [`LoadedModel`]: one model version ready to predict, whatever its format. It checks requests
//! against the manifest's tensor metadata, applies the manifest's preprocessing and
//! postprocessing, and hands the engine tensors in the order and types it expects.

use std::sync::Arc;
use std::time::Instant;

use maas_core::{Manifest, ModelFormat, Postprocess, Preprocess, TensorSpec};

use crate::EngineError;
use crate::answer::{ClassLabel, ClassifierOutputs, RowAnswers};
use crate::mlp::MlpPredictor;
use crate::onnx::OnnxPredictor;
use crate::tensor::{Tensor, TensorData};
use crate::trees::TreePredictor;

/// What every engine implements. Inputs arrive validated, ordered and cast to the declared types.
pub(crate) trait Predictor: Send + Sync + std::fmt::Debug {
    /// Input metadata as the engine sees it.
    fn inputs(&self) -> &[TensorSpec];
    /// Output metadata as the engine sees it.
    fn outputs(&self) -> &[TensorSpec];
    /// Runs one batch.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError>;
    /// What runs the graph: `tract`, `candle` or `dense-avx512` / `dense-avx2`.
    fn executor(&self) -> &'static str;
    /// Where a classifier's label and probabilities are among the outputs, when the model
    /// itself says (a graph's classifier node, a booster's objective).
    fn classifier(&self) -> Option<ClassifierOutputs> {
        None
    }
}

/// Timings of loading one version, for cold-start reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadTimings {
    /// Reading manifest and artifact from the store, in milliseconds.
    pub fetch_ms: f64,
    /// Parsing, checking and optimising the model, in milliseconds.
    pub build_ms: f64,
}

/// A model version ready to serve.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    manifest: Arc<Manifest>,
    predictor: Arc<dyn Predictor>,
    classifier: Option<Arc<ClassifierOutputs>>,
    artifact_bytes: usize,
    timings: LoadTimings,
}

impl LoadedModel {
    /// Builds the engine for `manifest` from the bytes of its primary artifact.
    pub fn from_artifact(manifest: Manifest, artifact: &[u8]) -> Result<Self, EngineError> {
        let started = Instant::now();
        let predictor: Arc<dyn Predictor> = match manifest.format {
            ModelFormat::Onnx => Arc::new(OnnxPredictor::load(artifact)?),
            ModelFormat::Safetensors => {
                let arch = manifest.architecture.as_ref().ok_or_else(|| {
                    EngineError::UnsupportedModel {
                        message: "the manifest of this safetensors version has no architecture"
                            .into(),
                    }
                })?;
                Arc::new(MlpPredictor::load(
                    artifact,
                    arch,
                    manifest.inputs.clone(),
                    manifest.outputs.clone(),
                )?)
            }
            format @ (ModelFormat::XgboostJson
            | ModelFormat::XgboostUbj
            | ModelFormat::LightgbmText) => Arc::new(TreePredictor::load(format, artifact)?),
        };
        check_preprocess(&manifest)?;
        let classifier = predictor
            .classifier()
            .or_else(|| labels_from_manifest(&manifest))
            .map(Arc::new);
        Ok(Self {
            manifest: Arc::new(manifest),
            predictor,
            classifier,
            artifact_bytes: artifact.len(),
            timings: LoadTimings {
                fetch_ms: 0.0,
                build_ms: started.elapsed().as_secs_f64() * 1e3,
            },
        })
    }

    /// The same model with `fetch_ms` recorded as the time its artifact took to read (the
    /// caller that fetched it knows; [`LoadedModel::from_artifact`] measures only the build).
    pub fn with_fetch_ms(mut self, fetch_ms: f64) -> Self {
        self.timings.fetch_ms = fetch_ms;
        self
    }

    /// The version's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Input metadata (from the manifest).
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.manifest.inputs
    }

    /// Output metadata (from the manifest).
    pub fn outputs(&self) -> &[TensorSpec] {
        &self.manifest.outputs
    }

    /// Size of the artifact the engine was built from, for cache accounting.
    pub fn artifact_bytes(&self) -> usize {
        self.artifact_bytes
    }

    /// The classes of a classifier, in the order of its probabilities: from the model itself
    /// (a graph's classifier node, a booster's objective) or from the manifest's `labels`.
    pub fn classes(&self) -> Option<&[ClassLabel]> {
        self.classifier.as_deref().map(|c| c.classes.as_slice())
    }

    /// How long fetching and building took.
    pub fn timings(&self) -> LoadTimings {
        self.timings
    }

    /// What runs this version: `tract`, `candle`, or maas's dense kernels (`dense-avx512`,
    /// `dense-avx2`) for a chain of dense layers in either format.
    pub fn executor(&self) -> &'static str {
        self.predictor.executor()
    }

    /// Runs a batch. Inputs are matched to the model's by name (a lone input may have any name),
    /// checked for shape and finiteness, converted to the declared types, preprocessed; outputs
    /// are postprocessed.
    pub fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        let ordered = self.order_inputs(inputs)?;
        let mut outputs = self.predictor.run(ordered)?;
        if let Some(first) = outputs.first_mut() {
            postprocess(&self.manifest.postprocess, first);
        }
        // Engines may name outputs differently from the manifest's (overridden) names.
        for (tensor, spec) in outputs.iter_mut().zip(&self.manifest.outputs) {
            tensor.name = spec.name.clone();
        }
        Ok(outputs)
    }

    /// Runs a batch of `rows` rows (see [`LoadedModel::predict`]) and reads the answer row by
    /// row: the first output, and a classifier's labels and probabilities.
    pub fn answer(&self, inputs: Vec<Tensor>, rows: usize) -> Result<RowAnswers, EngineError> {
        let outputs = self.predict(inputs)?;
        RowAnswers::read(outputs, rows, self.classifier.as_deref()).ok_or_else(|| {
            EngineError::Inference {
                message: "the model produced no output".into(),
            }
        })
    }

    /// Convenience for row-shaped models: `rows` rows of `width` features in, one `Vec<f32>`
    /// of first-output values per row out.
    pub fn predict_rows(
        &self,
        values: Vec<f32>,
        rows: usize,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let spec = self
            .manifest
            .inputs
            .first()
            .ok_or_else(|| EngineError::UnsupportedModel {
                message: "the model declares no inputs".into(),
            })?;
        let width = spec.row_width();
        let mut shape = vec![rows];
        shape.extend(
            spec.shape
                .iter()
                .skip(1)
                .map(|&d| usize::try_from(d).unwrap_or(1)),
        );
        if rows.checked_mul(width) != Some(values.len()) {
            return Err(EngineError::InvalidInput {
                message: format!(
                    "each row needs {width} values for input {:?} of shape {}",
                    spec.name,
                    spec.shape_string()
                ),
            });
        }
        let input = Tensor::new(spec.name.clone(), shape, TensorData::F32(values))?;
        let outputs = self.predict(vec![input])?;
        let first = outputs
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::Inference {
                message: "the model produced no output".into(),
            })?;
        let values = first.data.to_f32_vec();
        let per_row = values.len().checked_div(rows).unwrap_or(0);
        Ok(values.chunks(per_row.max(1)).map(<[f32]>::to_vec).collect())
    }

    fn order_inputs(&self, mut given: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        let specs = &self.manifest.inputs;
        if given.len() != specs.len() {
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            return Err(EngineError::InvalidInput {
                message: format!(
                    "the model takes {} input(s) ({}) but {} were given",
                    specs.len(),
                    names.join(", "),
                    given.len()
                ),
            });
        }
        let mut ordered = Vec::with_capacity(specs.len());
        for (ix, spec) in specs.iter().enumerate() {
            let pos = given.iter().position(|t| t.name == spec.name);
            let tensor = match pos {
                Some(p) => given.swap_remove(p),
                None if specs.len() == 1 => given.swap_remove(0),
                None => {
                    return Err(EngineError::InvalidInput {
                        message: format!("missing input {:?}", spec.name),
                    });
                }
            };
            let mut tensor = self.check_input(spec, tensor)?;
            if ix == 0 {
                preprocess(&self.manifest.preprocess, &mut tensor);
            }
            ordered.push(tensor);
        }
        Ok(ordered)
    }

    fn check_input(&self, spec: &TensorSpec, tensor: Tensor) -> Result<Tensor, EngineError> {
        let fits = tensor.shape.len() == spec.shape.len()
            && tensor
                .shape
                .iter()
                .zip(&spec.shape)
                .all(|(&got, &want)| want < 0 || got as i64 == want);
        if !fits {
            return Err(EngineError::InvalidInput {
                message: format!(
                    "input {:?} has shape {:?} but the model expects {} (-1: any size)",
                    spec.name,
                    tensor.shape,
                    spec.shape_string()
                ),
            });
        }
        if tensor.rows() == 0 {
            return Err(EngineError::InvalidInput {
                message: format!("input {:?} has no rows", spec.name),
            });
        }
        if !self.manifest.allow_non_finite
            && let Some(ix) = tensor.data.first_non_finite()
        {
            let width = spec.row_width().max(1);
            return Err(EngineError::NonFiniteInput {
                input: spec.name.clone(),
                row: ix / width,
                column: ix % width,
            });
        }
        let data = tensor
            .data
            .cast(spec.datatype)
            .map_err(|e| EngineError::InvalidInput {
                message: format!(
                    "input {:?}: {e}; the model expects {}",
                    spec.name, spec.datatype
                ),
            })?;
        Ok(Tensor { data, ..tensor })
    }
}

/// A network whose manifest names labels: its first output holds the probabilities (softmax),
/// or one sigmoid column for two labels.
fn labels_from_manifest(manifest: &Manifest) -> Option<ClassifierOutputs> {
    let labels = match &manifest.postprocess {
        Postprocess::Softmax { labels: Some(l) } | Postprocess::Sigmoid { labels: Some(l) } => l,
        _ => return None,
    };
    Some(ClassifierOutputs {
        classes: labels.iter().cloned().map(ClassLabel::Text).collect(),
        label: None,
        probabilities: 0,
    })
}

fn check_preprocess(manifest: &Manifest) -> Result<(), EngineError> {
    if let Preprocess::Standardize { mean, std } = &manifest.preprocess {
        let width = manifest.inputs.first().map_or(0, TensorSpec::row_width);
        if mean.len() != width || std.len() != width {
            return Err(EngineError::UnsupportedModel {
                message: format!(
                    "standardisation has {} means and {} deviations for {width} features",
                    mean.len(),
                    std.len()
                ),
            });
        }
        if std.iter().any(|s| !s.is_finite() || *s == 0.0) {
            return Err(EngineError::UnsupportedModel {
                message: "standardisation deviations must be finite and non-zero".into(),
            });
        }
    }
    Ok(())
}

fn preprocess(pre: &Preprocess, tensor: &mut Tensor) {
    if let (Preprocess::Standardize { mean, std }, TensorData::F32(values)) =
        (pre, &mut tensor.data)
    {
        let width = mean.len().max(1);
        for row in values.chunks_mut(width) {
            for ((x, m), s) in row.iter_mut().zip(mean).zip(std) {
                *x = (*x - m) / s;
            }
        }
    }
}

fn postprocess(post: &Postprocess, tensor: &mut Tensor) {
    let TensorData::F32(values) = &mut tensor.data else {
        return;
    };
    match post {
        Postprocess::Identity => {}
        Postprocess::Sigmoid { .. } => {
            for v in values.iter_mut() {
                *v = 1.0 / (1.0 + (-*v).exp());
            }
        }
        Postprocess::Softmax { .. } => {
            let width = tensor.shape.last().copied().unwrap_or(1).max(1);
            for row in values.chunks_mut(width) {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for v in row.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                for v in row.iter_mut() {
                    *v /= sum;
                }
            }
        }
    }
}
