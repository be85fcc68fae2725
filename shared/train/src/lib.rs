//! Training jobs: candle-nn MLPs trained from CSV / JSON-lines datasets in the store and written
//! back as new, governed versions (safetensors weights, an ONNX export tract serves, a manifest
//! with lineage and metrics), with a promotion policy that decides whether an alias moves.
//!
//! - [`spec`]: the job spec (JSON) and its defaults;
//! - [`data`]: dataset parsing, the seeded split, standardisation;
//! - [`network`]: the MLP, its losses and exports, its training step's products on the dense
//!   kernels (module `matmul`); [`onnx`]: the ONNX encoder;
//! - [`optim`]: in-place SGD / Adam / AdamW;
//! - [`trainer`]: the epoch loop, early stopping and resumable state;
//! - [`metrics`]: validation metrics; [`synthetic`]: generated datasets;
//! - [`job`]: status, checkpoints, the version and the promotion, against a store;
//! - [`bench`]: the seed workload timed, for `maas bench-train`.

pub mod bench;
pub mod data;
pub mod job;
mod matmul;
pub mod metrics;
pub mod network;
pub mod onnx;
pub mod optim;
pub mod spec;
pub mod synthetic;
pub mod trainer;

pub use job::{JobOutcome, JobState, JobStatus, PromotionDecision, RunOptions, TrainingJob};
pub use spec::JobSpec;
pub use trainer::{EpochRecord, Progress};

/// Everything a training job can fail with. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The job spec is invalid.
    #[error("invalid job spec: {0}")]
    Spec(String),
    /// The dataset can't be used.
    #[error("dataset: {0}")]
    Dataset(String),
    /// The loss became NaN or infinite.
    #[error("training diverged in epoch {epoch} (the loss is not finite); {hint}")]
    Diverged {
        /// The epoch.
        epoch: usize,
        /// What to try.
        hint: String,
    },
    /// The checkpoint can't be used.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Writing the artifacts failed.
    #[error("export: {0}")]
    Export(String),
    /// Another run of the same job took it over (this run's lease had expired) and this run
    /// stopped without writing anything more.
    #[error(
        "job {0} was taken over by another run while this one held it (its lease expired); this run stopped without writing a version"
    )]
    LeaseLost(String),
    /// A job document in the store is unreadable.
    #[error("corrupt job state: {0}")]
    Corrupt(String),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A name failed validation.
    #[error(transparent)]
    Invalid(#[from] maas_core::CoreError),
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] maas_registry::RegistryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] maas_store::StoreError),
    /// The serving engines refused the export.
    #[error(transparent)]
    Engine(#[from] maas_engine::EngineError),
}
