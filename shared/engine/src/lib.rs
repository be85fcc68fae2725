//! Prediction engines behind one interface, [`LoadedModel`]: ONNX through tract, safetensors
//! MLPs through candle, and XGBoost / LightGBM boosters through `maas-trees`. Also [`inspect()`], the check every pushed file passes: it refuses files
//! which can't be served — pickles, unknown operators, truncated files, weights that don't chain
//! — and builds the engine once to prove the rest serves.
//!
//! This crate computes and never touches storage: `maas-models` pushes checked files to the
//! registry and loads versions from it, so the engine can be embedded without a store.
//!
//! Chains of dense layers, in either format, run on this crate's own kernels over weights packed
//! once at load (module `dense`) where the CPU has AVX-512 or AVX2; the engines serve everything else.
//!
//! No tract or candle type appears in this crate's public API: callers exchange [`Tensor`]s
//! and manifests, so engines can change without touching the HTTP layer, the CLI or batch
//! scoring.

mod answer;
mod dense;
mod inspect;
mod layout;
mod mlp;
mod onnx;
mod onnx_ml;
mod onnx_ml_encode;
mod onnx_scan;
mod predictor;
mod tensor;
pub mod threads;
mod trees;

pub use answer::{ClassLabel, Classified, RowAnswers};
pub use inspect::{CODE_VERSION, InspectedModel, detect_format, inspect};
pub use layout::{Field, RowBatch, RowLayout, push_json_row};
pub use predictor::{LoadTimings, LoadedModel};
pub use tensor::{Tensor, TensorData};

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A Python pickle (or a zip holding one). Never unpickled: loading a pickle runs code.
    #[error(
        "{file} is {what}; maas never loads pickles because unpickling runs arbitrary code. {advice}"
    )]
    PickleRefused {
        /// The file's name.
        file: String,
        /// What it was recognised as.
        what: String,
        /// How to export the model in a format maas serves.
        advice: String,
    },
    /// Neither ONNX nor safetensors.
    #[error(
        "{file} is neither an ONNX model nor a safetensors file; push a .onnx or .safetensors file"
    )]
    UnrecognizedFormat {
        /// The file's name.
        file: String,
    },
    /// A truncated or damaged file.
    #[error("{message}")]
    CorruptFile {
        /// What is wrong.
        message: String,
    },
    /// ONNX operators neither tract nor maas implements.
    #[error(
        "the ONNX graph uses operators maas can't run: {}; {advice}",
        ops.join(", ")
    )]
    UnsupportedOperators {
        /// Operator names (domain-qualified when not the default domain).
        ops: Vec<String>,
        /// How to export the model without them.
        advice: String,
    },
    /// A model that parses but can't be served as described.
    #[error("{message}")]
    UnsupportedModel {
        /// What is wrong and what to do.
        message: String,
    },
    /// Weights whose shapes don't fit the architecture.
    #[error("the weights don't form the network: {message}")]
    ShapeMismatch {
        /// Which tensors disagree.
        message: String,
    },
    /// A request the model can't take (wrong shape, type or count).
    #[error("{message}")]
    InvalidInput {
        /// What is wrong and what was expected.
        message: String,
    },
    /// NaN or infinity in a model that doesn't allow them.
    #[error(
        "input {input:?} holds NaN or infinity at row {row}, column {column}; send finite numbers (the model's manifest does not set allow_non_finite)"
    )]
    NonFiniteInput {
        /// The input.
        input: String,
        /// Zero-based row.
        row: usize,
        /// Zero-based position within the row.
        column: usize,
    },
    /// The engine failed on valid input.
    #[error("inference failed: {message}")]
    Inference {
        /// The engine's description.
        message: String,
    },
}

impl EngineError {
    /// True for errors caused by the caller's request rather than the model or the service.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            EngineError::InvalidInput { .. } | EngineError::NonFiniteInput { .. }
        )
    }
}
