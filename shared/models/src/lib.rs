//! Models kept in the registry: [`push()`] checks a file with the engine and writes it as the
//! model's next version; [`load()`] and [`load_version()`] read a version back, verify its
//! artifact and build its engine.
//!
//! This is the one crate that joins the compute crate (`maas-engine`, which never touches
//! storage) to the registry: the engine can be embedded without a store, and the registry knows
//! nothing of model formats beyond their names.

mod load;
mod push;

pub use load::{load, load_version};
pub use push::{PushOutcome, PushRequest, push};

use maas_engine::EngineError;
use maas_registry::RegistryError;

/// Everything that can go wrong pushing or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// The file or artifact can't be served (see [`EngineError`]).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The registry failed (missing model, version or alias, corrupted artifact, storage).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A blocking task that checks or builds the model did not finish (it panicked or the
    /// runtime is shutting down).
    #[error("{what} did not finish: {message}")]
    Interrupted {
        /// Which step.
        what: &'static str,
        /// Why.
        message: String,
    },
}

impl ModelsError {
    /// True for errors caused by the caller's request rather than the model or the service.
    pub fn is_client_error(&self) -> bool {
        matches!(self, ModelsError::Engine(e) if e.is_client_error())
    }
}
