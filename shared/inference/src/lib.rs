//! The inference service: the Open Inference Protocol (KServe v2 / Triton REST, with the binary
//! tensor data extension) and the V1 `:predict` form, as one axum [`Router`](axum::Router) that
//! the Lambda function runs through `lambda_http` and `maas serve` runs on localhost.
//!
//! It owns warm-container state (loaded models, alias resolutions), request decoding, the HTTP
//! error mapping and request metrics. It knows nothing about Lambda: the binaries wire it up.

pub mod cache;
pub mod config;
mod error;
pub mod metrics;
pub mod protocol;
mod router;
mod v1;

use std::sync::Arc;
use std::time::Instant;

pub use cache::{CacheConfig, ModelCache};
pub use config::{InferenceConfig, LAMBDA_PAYLOAD_LIMIT, PreloadSpec};
pub use error::InferenceError;
pub use metrics::MetricsSink;
pub use router::{ALIAS_HEADER, AppState, app};
use tracing::{info, warn};

/// Builds the service state for `config`: opens the store and loads every `MAAS_PRELOAD` model.
/// A model that fails to preload is logged and skipped: the others still serve, and the failed
/// one answers 503 until it can be loaded.
pub async fn build_state(config: &InferenceConfig) -> Result<Arc<AppState>, InferenceError> {
    let store = maas_store::open(&config.store)
        .await
        .map_err(|e| InferenceError::Config(format!("MAAS_STORE: {e}")))?;
    let state = Arc::new(AppState::new(config, maas_registry::Registry::new(store)));
    preload(&state, &config.preload).await;
    Ok(state)
}

/// Loads `specs` into the cache, logging and emitting timings for each.
pub async fn preload(state: &AppState, specs: &[PreloadSpec]) {
    for spec in specs {
        let started = Instant::now();
        let loaded = async {
            let version = state.cache.resolve(&spec.model, &spec.selector).await?;
            state.cache.get(&spec.model, version).await.map_err(|e| {
                maas_models::ModelsError::Interrupted {
                    what: "the preload",
                    message: e.to_string(),
                }
            })
        }
        .await;
        match loaded {
            Ok(model) => {
                let timings = model.timings();
                info!(
                    model = %spec.model,
                    version = %model.manifest().version,
                    fetch_ms = timings.fetch_ms,
                    build_ms = timings.build_ms,
                    total_ms = started.elapsed().as_secs_f64() * 1e3,
                    "preloaded"
                );
                state.metrics.emit(
                    &[("model", spec.model.as_str())],
                    &[
                        ("model_fetch_ms", "Milliseconds", timings.fetch_ms),
                        ("model_build_ms", "Milliseconds", timings.build_ms),
                    ],
                );
            }
            Err(e) => {
                warn!(model = %spec.model, error = %e, "preload failed; the model will answer 503 until it loads")
            }
        }
    }
}
