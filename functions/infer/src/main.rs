//! The inference Lambda function: reads its configuration, opens the store, preloads the models
//! in `MAAS_PRELOAD` during Lambda's init phase, then serves the maas router through
//! `lambda_http` (API Gateway HTTP API payload 2.0 and function URLs).

use std::time::Instant;

use lambda_http::{Error, run, tracing};
use maas_inference::InferenceConfig;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = Instant::now();
    // Honours the function's log format (AWS_LAMBDA_LOG_FORMAT=JSON gives structured JSON lines).
    tracing::init_default_subscriber();
    maas_engine::threads::configure_from_env()?;
    let config = InferenceConfig::from_lookup(|k| std::env::var(k).ok())?;
    let state = maas_inference::build_state(&config).await?;
    let init_ms = started.elapsed().as_secs_f64() * 1e3;
    tracing::info!(
        init_ms,
        preloaded = config.preload.len(),
        store = %config.store,
        "init complete"
    );
    state.metrics.emit(
        &[("function", "infer")],
        &[("init_ms", "Milliseconds", init_ms)],
    );
    run(maas_inference::app(state)).await
}
