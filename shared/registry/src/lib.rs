//! The model registry: immutable, numbered versions of each model with their manifests, aliases
//! that move by compare-and-swap, and an append-only audit trail — all as objects in one store.
//!
//! Layout (relative to the store's root or prefix):
//!
//! ```text
//! models/{model}/versions/{version}/claim.json      who claimed the number (conditional create)
//! models/{model}/versions/{version}/{artifact}      artifacts, written after the claim
//! models/{model}/versions/{version}/manifest.json   written last: the version now exists
//! models/{model}/aliases/{alias}.json               {"version": N, ...}, moved with If-Match
//! models/{model}/audit/{timestamp}-{id}.json        one object per governance event
//! ```
//!
//! A writer that crashes after its claim leaves a gap in the numbering, never a half-version:
//! readers only see versions whose manifest exists. The registry knows nothing about model
//! formats or engines; it stores bytes and checks their SHA-256.

mod keys;
mod registry;

pub use registry::{
    AliasMove, AliasRecord, Registry, VersionDraft, VersionSelector, VersionSummary,
};

use maas_core::{CoreError, ModelName, Version};
use maas_store::StoreError;

/// Everything that can go wrong in the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A name or version that fails validation.
    #[error(transparent)]
    Invalid(#[from] CoreError),
    /// No complete version of the model exists.
    #[error(
        "model \"{model}\" not found; push it first (maas push {model} FILE) or check the name with `maas models`"
    )]
    ModelNotFound {
        /// The model asked for.
        model: ModelName,
    },
    /// The model exists but not this version.
    #[error(
        "model \"{model}\" has no version {version}; `maas versions {model}` lists the versions it has"
    )]
    VersionNotFound {
        /// The model.
        model: ModelName,
        /// The missing version.
        version: Version,
    },
    /// The model exists but not this alias.
    #[error(
        "model \"{model}\" has no alias \"{alias}\"; create it with `maas promote {model} VERSION --alias {alias}`"
    )]
    AliasNotFound {
        /// The model.
        model: ModelName,
        /// The missing alias.
        alias: String,
    },
    /// An artifact whose bytes no longer match the manifest.
    #[error(
        "artifact {artifact} of {model} version {version} is corrupted (expected sha256 {expected}, size {expected_size}; found sha256 {actual}, size {actual_size}); push the model again as a new version"
    )]
    CorruptArtifact {
        /// The model.
        model: ModelName,
        /// The version.
        version: Version,
        /// Artifact file name.
        artifact: String,
        /// SHA-256 recorded in the manifest.
        expected: String,
        /// Size recorded in the manifest.
        expected_size: u64,
        /// SHA-256 of what was read.
        actual: String,
        /// Size of what was read.
        actual_size: u64,
    },
    /// A manifest, alias or audit document that can't be parsed.
    #[error("registry document {key} is unreadable: {message}")]
    CorruptDocument {
        /// Its key.
        key: String,
        /// The parser's complaint.
        message: String,
    },
    /// A version draft that the registry refuses to write.
    #[error("invalid version draft: {0}")]
    InvalidDraft(String),
    /// Too many concurrent writers kept winning.
    #[error(
        "gave up after {attempts} attempts to write {key} because other writers kept changing it; retry"
    )]
    Contention {
        /// The contested key.
        key: String,
        /// How often it was tried.
        attempts: u32,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
