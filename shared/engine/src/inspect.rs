//! Inspecting a model file before it becomes a version: recognise its format, refuse what can't
//! be served safely (pickles, unknown operators, truncated files, weights that don't chain,
//! manifest overrides the model contradicts) and build the engine once to prove it serves. Pure
//! compute: nothing here reads or writes storage (`maas-models` writes the version).

use std::collections::BTreeMap;

use maas_core::{
    Architecture, Lineage, Manifest, ManifestTemplate, ModelFormat, ModelName, TensorSpec, Version,
};
use time::OffsetDateTime;

use crate::EngineError;
use crate::mlp::{MlpPredictor, infer_architecture};
use crate::onnx::OnnxPredictor;
use crate::predictor::{LoadedModel, Predictor};
use crate::tensor::{Tensor, TensorData};
use crate::trees::TreePredictor;

/// The version of this crate, recorded as the code version in lineage.
pub const CODE_VERSION: &str = env!("CARGO_PKG_VERSION");

const PICKLE_EXTENSIONS: [&str; 6] = ["pt", "pth", "pkl", "pickle", "ckpt", "joblib"];

/// How PyTorch users export what maas serves.
const TORCH_ADVICE: &str = "Export safetensors or ONNX instead: `safetensors.torch.save_file(model.state_dict(), \"model.safetensors\")` or `torch.onnx.export(model, example_input, \"model.onnx\", dynamic_axes={\"input\": {0: \"batch\"}})`, then push that file";

/// How scikit-learn, XGBoost and LightGBM users export what maas serves.
const TABULAR_ADVICE: &str = "Export ONNX instead: `from skl2onnx import to_onnx; open(\"model.onnx\", \"wb\").write(to_onnx(model, X[:1].astype(\"float32\")).SerializeToString())` for a scikit-learn model or pipeline; an XGBoost or LightGBM model can be pushed as its own file: `model.save_model(\"model.json\")` (XGBoost) or `model.booster_.save_model(\"model.txt\")` (LightGBM); then push that file";

fn refuse_pickle(file_name: &str, what: &str, bytes: &[u8]) -> EngineError {
    let head = &bytes[..bytes.len().min(1 << 16)];
    let tabular = file_name.to_ascii_lowercase().ends_with(".joblib")
        || [&b"sklearn"[..], b"xgboost", b"lightgbm"]
            .iter()
            .any(|module| head.windows(module.len()).any(|w| w == *module));
    EngineError::PickleRefused {
        advice: if tabular {
            TABULAR_ADVICE
        } else {
            TORCH_ADVICE
        }
        .to_string(),
        file: file_name.to_string(),
        what: what.to_string(),
    }
}

/// Recognises a model file's format from its name and first bytes.
pub fn detect_format(file_name: &str, bytes: &[u8]) -> Result<ModelFormat, EngineError> {
    let ext = std::path::Path::new(file_name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    // Content first: a pickle renamed to .onnx is still a pickle.
    if bytes.len() >= 2 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1]) {
        return Err(refuse_pickle(file_name, "a Python pickle", bytes));
    }
    if bytes.starts_with(b"PK\x03\x04") {
        let head = &bytes[..bytes.len().min(1 << 16)];
        let torch = head.windows(8).any(|w| w == b"data.pkl");
        return Err(refuse_pickle(
            file_name,
            if torch {
                "a PyTorch checkpoint (torch.save: a zip archive holding a pickle)"
            } else {
                "a zip archive (PyTorch checkpoints are zipped pickles)"
            },
            bytes,
        ));
    }
    if PICKLE_EXTENSIONS.contains(&ext.as_str()) {
        return Err(refuse_pickle(
            file_name,
            "a pickle-based checkpoint, by its extension",
            bytes,
        ));
    }
    if bytes.is_empty() {
        return Err(EngineError::CorruptFile {
            message: format!("{file_name} is empty"),
        });
    }
    match ext.as_str() {
        "onnx" => return Ok(ModelFormat::Onnx),
        "safetensors" => return Ok(ModelFormat::Safetensors),
        "ubj" => return Ok(ModelFormat::XgboostUbj),
        _ => {}
    }
    if looks_like_safetensors(bytes) {
        return Ok(ModelFormat::Safetensors);
    }
    if maas_trees::xgboost::looks_like_json(bytes) {
        return Ok(ModelFormat::XgboostJson);
    }
    if maas_trees::lightgbm::looks_like_text(bytes) {
        return Ok(ModelFormat::LightgbmText);
    }
    if maas_trees::xgboost::looks_like_ubjson(bytes) {
        return Ok(ModelFormat::XgboostUbj);
    }
    // ONNX has no magic number: a protobuf that parses as a model with a graph is ONNX.
    if OnnxPredictor::load(bytes).is_ok() {
        return Ok(ModelFormat::Onnx);
    }
    Err(EngineError::UnrecognizedFormat {
        file: file_name.to_string(),
    })
}

fn looks_like_safetensors(bytes: &[u8]) -> bool {
    let Some(len_bytes) = bytes.get(..8) else {
        return false;
    };
    let mut len = [0u8; 8];
    len.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(len);
    bytes.get(8) == Some(&b'{') && header_len.saturating_add(8) <= bytes.len() as u64
}

/// A model file checked and ready to become a version.
#[derive(Debug, Clone)]
pub struct InspectedModel {
    /// Detected format.
    pub format: ModelFormat,
    /// Input metadata (from the model, or the template's override).
    pub inputs: Vec<TensorSpec>,
    /// Output metadata.
    pub outputs: Vec<TensorSpec>,
    /// The MLP description for safetensors (given or inferred).
    pub architecture: Option<Architecture>,
    /// Feature names the file itself carries (XGBoost and LightGBM boosters).
    pub features: Option<Vec<String>>,
    /// The model takes NaN as a missing value (tree ensembles, imputers): the manifest lets
    /// non-finite inputs through unless it says otherwise.
    pub takes_missing_values: bool,
}

/// Checks a model file: detects the format, parses it, builds the engine once and runs one
/// all-zero row through it. Returns its metadata; writes nothing.
pub fn inspect(
    file_name: &str,
    bytes: &[u8],
    template: &ManifestTemplate,
) -> Result<InspectedModel, EngineError> {
    let format = detect_format(file_name, bytes)?;
    let mut features = None;
    let mut takes_missing_values = false;
    let (architecture, inputs, outputs) = match format {
        ModelFormat::Onnx => {
            // tract parses the whole file, whatever serves it later: the dense path reads only
            // the graph, and a file only it could read would fail to load where there are no
            // dense kernels (Graviton).
            let predictor = OnnxPredictor::load_with(bytes, false)?;
            takes_missing_values = predictor.takes_missing_values();
            (
                None,
                predictor.inputs().to_vec(),
                predictor.outputs().to_vec(),
            )
        }
        ModelFormat::Safetensors => {
            let arch = match &template.architecture {
                Some(arch) => arch.clone(),
                None => infer_architecture(bytes)?,
            };
            let (inputs, outputs) = MlpPredictor::specs(&arch);
            (Some(arch), inputs, outputs)
        }
        ModelFormat::XgboostJson | ModelFormat::XgboostUbj | ModelFormat::LightgbmText => {
            let predictor = TreePredictor::load(format, bytes)?;
            takes_missing_values = true;
            let names = predictor.feature_names();
            if !names.is_empty() {
                features = Some(names.to_vec());
            }
            (
                None,
                predictor.inputs().to_vec(),
                predictor.outputs().to_vec(),
            )
        }
    };
    let inputs = match &template.inputs {
        Some(given) => check_override("inputs", given, &inputs)?,
        None => inputs,
    };
    let outputs = match &template.outputs {
        Some(given) => check_override("outputs", given, &outputs)?,
        None => outputs,
    };
    let inspected = InspectedModel {
        format,
        inputs,
        outputs,
        architecture,
        features,
        takes_missing_values,
    };
    smoke_test(&inspected, bytes, template)?;
    Ok(inspected)
}

/// Checks a manifest's override of the model's inputs or outputs against the model's own
/// specs: the same number of tensors, each with the same type and rank, and every dimension the
/// model fixes given the same size (a dimension the model leaves open may be fixed; names may
/// change). Serving sizes buffers from these shapes, so a contradicting override is refused.
fn check_override(
    what: &str,
    given: &[TensorSpec],
    own: &[TensorSpec],
) -> Result<Vec<TensorSpec>, EngineError> {
    let refuse = |why: String| EngineError::UnsupportedModel {
        message: format!(
            "the manifest's {what} contradict the model: {why}; remove \"{what}\" from the manifest or make it match the model"
        ),
    };
    if given.len() != own.len() {
        return Err(refuse(format!(
            "it lists {} but the model has {}",
            given.len(),
            own.len()
        )));
    }
    for (g, o) in given.iter().zip(own) {
        if g.datatype != o.datatype {
            return Err(refuse(format!(
                "{:?} is {} but the model's {:?} is {}",
                g.name, g.datatype, o.name, o.datatype
            )));
        }
        // The same rank, and every dimension the model fixes given the same size.
        let same_shape = g.shape.len() == o.shape.len()
            && g.shape
                .iter()
                .zip(&o.shape)
                .all(|(&gd, &od)| (gd == -1 || gd > 0) && (od <= 0 || gd == od));
        if !same_shape {
            return Err(refuse(format!(
                "{:?} has shape {} but the model's {:?} has {}",
                g.name,
                g.shape_string(),
                o.name,
                o.shape_string()
            )));
        }
        let fits = g
            .shape
            .iter()
            .skip(1)
            .try_fold(1usize, |acc, &d| {
                acc.checked_mul(usize::try_from(d).unwrap_or(1))
            })
            .and_then(|w| w.checked_mul(8))
            .is_some_and(|bytes| bytes <= isize::MAX as usize);
        if !fits {
            return Err(refuse(format!(
                "a row of {:?} ({}) is too large to address",
                g.name,
                g.shape_string()
            )));
        }
    }
    Ok(given.to_vec())
}

/// Builds the engine exactly as serving will and predicts one row of zeros.
fn smoke_test(
    inspected: &InspectedModel,
    bytes: &[u8],
    template: &ManifestTemplate,
) -> Result<(), EngineError> {
    if let Some(features) = &template.features {
        // The features name every input's values, input after input.
        let width: usize = inspected.inputs.iter().map(TensorSpec::row_width).sum();
        if features.len() != width {
            return Err(EngineError::UnsupportedModel {
                message: format!(
                    "the manifest names {} features but the model's inputs take {width} values per row",
                    features.len()
                ),
            });
        }
    }
    let provisional = Manifest {
        manifest_version: maas_core::FORMAT_VERSION,
        name: ModelName::new("provisional").map_err(|e| EngineError::Inference {
            message: e.to_string(),
        })?,
        version: Version::FIRST,
        format: inspected.format,
        created_at: OffsetDateTime::UNIX_EPOCH,
        created_by: String::new(),
        artifacts: BTreeMap::new(),
        inputs: inspected.inputs.clone(),
        outputs: inspected.outputs.clone(),
        features: template.features.clone(),
        architecture: inspected.architecture.clone(),
        preprocess: template.preprocess.clone().unwrap_or_default(),
        postprocess: template.postprocess.clone().unwrap_or_default(),
        allow_non_finite: template.allow_non_finite.unwrap_or(false),
        card: Default::default(),
        lineage: Lineage::Pushed {
            file_name: String::new(),
            sha256: String::new(),
            parent_version: None,
            code_version: CODE_VERSION.into(),
        },
        metrics: BTreeMap::new(),
    };
    let model = LoadedModel::from_artifact(provisional, bytes)?;
    let mut probe = Vec::new();
    for spec in model.inputs() {
        let mut shape = vec![1usize];
        shape.extend(
            spec.shape
                .iter()
                .skip(1)
                .map(|&d| usize::try_from(d).unwrap_or(1)),
        );
        let n: usize = shape.iter().product();
        let data = match spec.datatype {
            maas_core::DataType::Fp64 => TensorData::F64(vec![0.0; n]),
            maas_core::DataType::Int32 => TensorData::I32(vec![0; n]),
            maas_core::DataType::Int64 => TensorData::I64(vec![0; n]),
            _ => TensorData::F32(vec![0.0; n]),
        };
        probe.push(Tensor::new(spec.name.clone(), shape, data)?);
    }
    model
        .predict(probe)
        .map_err(|e| EngineError::UnsupportedModel {
            message: format!("a test prediction on one row of zeros failed: {e}"),
        })?;
    Ok(())
}
