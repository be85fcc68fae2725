//! Tree-ensemble inference for the tabular models teams serve most: XGBoost and LightGBM boosters
//! read from their own files ([`xgboost`], [`lightgbm`]) and the `ai.onnx.ml` tree operators
//! (built from their attributes, [`onnx`]), all run by one engine.
//!
//! Every format is translated once, at load, into the same layout ([`Ensemble`]): each tree's
//! nodes contiguous in depth-first order (the left child follows its parent, so most steps read
//! the next cache line), every split rewritten as "`x ≤ t` goes left" on an `f32` threshold chosen
//! so that the comparison gives exactly the answer of the format's own test on its own precision,
//! and missing values (NaN) sent the way each split's default says. Rows are scored in blocks so
//! a tree's nodes stay in cache while the block walks it.
//!
//! [`TreeModel`] adds what turns raw scores into answers: the objective's transform (sigmoid,
//! softmax, exp), and for classifiers the class labels.
//!
//! The crate knows nothing of storage or of the HTTP layer; `maas-engine` serves it behind the
//! same `LoadedModel` as tract and candle.

mod build;
pub mod lightgbm;
mod model;
pub mod onnx;
mod predict;
mod transform;
mod ubjson;
pub mod xgboost;

pub use build::{Aggregate, EnsembleSpec, NodeSpec, Split, TreeSpec};
pub use model::{BinaryScore, ClassLabels, Prediction, Task, TreeModel};
pub use predict::Ensemble;
pub use transform::PostTransform;

/// Everything that can go wrong reading or running a tree model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TreesError {
    /// The file is damaged or not what it claims to be.
    #[error("{0}")]
    Invalid(String),
    /// A well-formed model using something this engine does not run.
    #[error("{0}")]
    Unsupported(String),
    /// Rows that don't match the model.
    #[error("the input holds {values} values, not {rows} rows × {features} features")]
    InputSize {
        /// Rows asked for.
        rows: usize,
        /// Features per row the model reads.
        features: usize,
        /// Values given.
        values: usize,
    },
}

impl TreesError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        TreesError::Invalid(message.into())
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        TreesError::Unsupported(message.into())
    }
}
