//! The Rust side of `bench/run`: in-process engine measurements on one model file, with the
//! same method as the Python side (`bench/python/engine.py`), so the two can be compared:
//!
//! - **latency**: single-row predictions one after another, after a warm-up; p50 and p99;
//! - **throughput**: rows per second at each batch size, the median of several timed runs of
//!   at least `min_seconds` each.
//!
//! The model goes through the serving path's [`LoadedModel::predict`] (input checks,
//! preprocessing, the engine, postprocessing), pushed to an in-memory store first exactly as
//! `maas push` would.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use maas_core::{ManifestTemplate, ModelName};
use maas_engine::{LoadedModel, Tensor, TensorData};
use maas_models::PushRequest;
use maas_registry::{Registry, VersionSelector};
use serde::Serialize;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The model file could not be read.
    #[error("cannot read {path}: {message}")]
    File {
        /// The path.
        path: String,
        /// The OS's reason.
        message: String,
    },
    /// The engine refused the model or an input.
    #[error(transparent)]
    Engine(#[from] maas_engine::EngineError),
    /// The model could not be pushed or loaded.
    #[error(transparent)]
    Models(#[from] maas_models::ModelsError),
    /// A name was invalid.
    #[error(transparent)]
    Core(#[from] maas_core::CoreError),
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Timed predictions.
    pub iterations: usize,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
}

/// Rows per second at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Rows per call.
    pub batch: usize,
    /// Median rows per second over the runs.
    pub rows_per_second: f64,
    /// Each run's rows per second.
    pub runs: Vec<f64>,
}

/// One engine's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct EngineReport {
    /// `tract` or `candle`.
    pub engine: String,
    /// Threads the engine was allowed.
    pub threads: usize,
    /// Milliseconds to parse, check and optimise the model.
    pub build_ms: f64,
    /// Single-row latency.
    pub latency: Latency,
    /// Throughput per batch size.
    pub throughput: Vec<Throughput>,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct EnginePlan {
    /// Threads (1 = the engine's single-threaded path).
    pub threads: usize,
    /// Single-row predictions to time.
    pub latency_iterations: usize,
    /// Batch sizes for throughput.
    pub batches: Vec<usize>,
    /// Timed runs per batch size.
    pub runs: usize,
    /// Minimum seconds per run.
    pub min_seconds: f64,
}

/// Loads `file` (ONNX or safetensors) the way `maas push` + the server would.
pub async fn load(file: &std::path::Path) -> Result<LoadedModel, BenchError> {
    let bytes = std::fs::read(file).map_err(|e| BenchError::File {
        path: file.display().to_string(),
        message: e.to_string(),
    })?;
    let store: maas_store::SharedStore = Arc::new(maas_store::MemoryStore::new());
    let registry = Registry::new(store);
    let model = ModelName::new("bench")?;
    maas_models::push(
        &registry,
        PushRequest {
            model: model.clone(),
            file_name: file.display().to_string(),
            bytes: Bytes::from(bytes),
            template: ManifestTemplate::default(),
            actor: "bench".into(),
            alias: None,
            reason: None,
        },
    )
    .await?;
    Ok(maas_models::load(&registry, &model, &VersionSelector::Default).await?)
}

/// Deterministic inputs in [-1, 1): `rows × width` values.
pub fn inputs(rows: usize, width: usize) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..rows * width)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn input_tensor(model: &LoadedModel, values: Vec<f32>, rows: usize) -> Result<Tensor, BenchError> {
    let spec = &model.inputs()[0];
    Ok(Tensor::new(
        spec.name.clone(),
        vec![rows, spec.row_width()],
        TensorData::F32(values),
    )?)
}

/// The `q`-quantile (0..=1) of sorted `values`.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// The median of `values`.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    quantile(&values, 0.5)
}

/// Runs the plan on a loaded model.
pub fn measure(
    model: &LoadedModel,
    engine: &str,
    plan: &EnginePlan,
) -> Result<EngineReport, BenchError> {
    let width = model.inputs()[0].row_width();
    // Latency: one row at a time; a fresh tensor each call, as a request would bring.
    let row = inputs(1, width);
    for _ in 0..plan.latency_iterations.min(500) {
        model.predict(vec![input_tensor(model, row.clone(), 1)?])?;
    }
    let mut samples = Vec::with_capacity(plan.latency_iterations);
    for _ in 0..plan.latency_iterations {
        let tensor = input_tensor(model, row.clone(), 1)?;
        let started = Instant::now();
        model.predict(vec![tensor])?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    let latency = Latency {
        iterations: samples.len(),
        p50_us: quantile(&samples, 0.5),
        p99_us: quantile(&samples, 0.99),
    };
    let mut throughput = Vec::new();
    for &batch in &plan.batches {
        let values = inputs(batch, width);
        model.predict(vec![input_tensor(model, values.clone(), batch)?])?;
        let mut runs = Vec::with_capacity(plan.runs);
        for _ in 0..plan.runs.max(1) {
            // Only `predict` is timed, as only `session.run` is on the Python side: building
            // the request's tensor (a 16 MB copy at batch 4096) is the caller's work there too.
            let started = Instant::now();
            let mut busy = 0.0f64;
            let mut rows = 0usize;
            while started.elapsed().as_secs_f64() < plan.min_seconds {
                let tensor = input_tensor(model, values.clone(), batch)?;
                let call = Instant::now();
                model.predict(vec![tensor])?;
                busy += call.elapsed().as_secs_f64();
                rows += batch;
            }
            runs.push(rows as f64 / busy);
        }
        throughput.push(Throughput {
            batch,
            rows_per_second: median(runs.clone()),
            runs,
        });
    }
    Ok(EngineReport {
        engine: engine.to_string(),
        threads: plan.threads,
        build_ms: model.timings().build_ms,
        latency,
        throughput,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_medians() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.5), 51.0);
        assert_eq!(quantile(&sorted, 0.99), 99.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn inputs_are_deterministic_and_bounded() {
        let a = inputs(3, 4);
        assert_eq!(a, inputs(3, 4));
        assert_eq!(a.len(), 12);
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)), "{a:?}");
    }
}
