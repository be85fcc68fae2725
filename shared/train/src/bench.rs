//! The training benchmark: the seed workload (MLP 1000→500→100→1, ReLU, MSE, Adam at lr 0.001)
//! on generated rows, timed per epoch, with no store involved. `maas bench-train` prints it;
//! the benchmarks compare it with PyTorch on the same machine.

use crate::TrainError;
use crate::data::{self, Dataset};
use crate::spec::JobSpec;
use crate::synthetic::{self, Target};
use crate::trainer::Trainer;

/// Samples per second of each epoch at one batch size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// Rows per optimizer step.
    pub batch_size: usize,
    /// Training rows per epoch.
    pub rows: usize,
    /// Samples per second, one per epoch.
    pub samples_per_second: Vec<f64>,
    /// Their median.
    pub median: f64,
}

/// The seed workload's dataset: `rows` generated rows of 1000 features.
pub fn seed_dataset(rows: usize) -> Result<Dataset, TrainError> {
    let spec = seed_spec(64, 1);
    let csv = synthetic::csv(Target::Regression, rows, 1000, 7);
    data::parse(csv.as_bytes(), &spec.dataset, spec.task)
}

/// The seed spec at a batch size.
pub fn seed_spec(batch_size: usize, epochs: usize) -> JobSpec {
    let mut spec: JobSpec = serde_json::from_value(serde_json::json!({
        "model": "seed-bench",
        "dataset": {"key": "datasets/seed.csv", "format": "csv", "target": "y"},
    }))
    .unwrap_or_else(|e| unreachable!("the built-in spec parses: {e}"));
    spec.training.batch_size = batch_size;
    spec.training.epochs = epochs;
    spec
}

/// Trains the seed workload on every row of `data` for `epochs` epochs at `batch_size`.
pub fn run(data: &Dataset, batch_size: usize, epochs: usize) -> Result<BenchResult, TrainError> {
    let spec = seed_spec(batch_size, epochs);
    let all: Vec<usize> = (0..data.rows()).collect();
    let mut trainer = Trainer::new(&spec, data, all.clone(), &all[..1], None)?;
    trainer.run(|_| true, |_| {}, |_| Ok(()))?;
    let mut samples: Vec<f64> = trainer
        .state()
        .history
        .iter()
        .map(|h| h.samples_per_second)
        .collect();
    let per_epoch = samples.clone();
    samples.sort_by(f64::total_cmp);
    Ok(BenchResult {
        batch_size,
        rows: data.rows(),
        samples_per_second: per_epoch,
        median: samples[samples.len() / 2],
    })
}
