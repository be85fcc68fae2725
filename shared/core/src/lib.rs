//! Vocabulary shared by every maas crate: validated model and alias names, the version manifest
//! (the model card that travels with every version), tensor metadata in Open Inference Protocol
//! terms, and the audit record.
//!
//! This crate owns data shapes and their validation only. It knows nothing about storage, HTTP,
//! Lambda, tract or candle, so every other crate can depend on it.

pub mod audit;
pub mod manifest;
pub mod names;
pub mod tensor;

pub use audit::{AuditAction, AuditRecord};
pub use manifest::{
    Activation, Architecture, ArtifactInfo, DenseLayer, FORMAT_VERSION, Lineage, Manifest,
    ManifestTemplate, ModelCard, ModelFormat, Postprocess, Preprocess,
};
pub use names::{AliasName, ModelName, Version};
pub use tensor::{DataType, TensorSpec};

/// Everything that can be wrong with a value handed to this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    /// A model name that is not `[a-z0-9][a-z0-9._-]{0,63}`.
    #[error(
        "invalid model name {name:?}: {why}; use 1-64 characters from a-z, 0-9, '.', '_' and '-', starting with a letter or digit (e.g. \"fraud-detector\")"
    )]
    InvalidModelName {
        /// The rejected name, as given.
        name: String,
        /// What exactly is wrong with it.
        why: &'static str,
    },
    /// An alias name that breaks the same rules, or a reserved one.
    #[error(
        "invalid alias {name:?}: {why}; use 1-64 characters from a-z, 0-9, '.', '_' and '-', starting with a letter or digit (e.g. \"production\")"
    )]
    InvalidAliasName {
        /// The rejected alias, as given.
        name: String,
        /// What exactly is wrong with it.
        why: &'static str,
    },
    /// A version that is not a positive integer.
    #[error("invalid version {given:?}: versions are positive integers (1, 2, 3, ...)")]
    InvalidVersion {
        /// The rejected text.
        given: String,
    },
    /// A datatype name outside the Open Inference Protocol's list.
    #[error(
        "unknown datatype {given:?}: use one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES"
    )]
    UnknownDataType {
        /// The rejected text.
        given: String,
    },
}
