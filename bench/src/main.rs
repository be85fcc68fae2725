//! `maas-bench`: prints one engine's in-process measurements as JSON (see the library docs).
//! `bench/run` calls it next to the Python measurements of onnxruntime and PyTorch.

use std::path::PathBuf;

use clap::Parser;
use maas_bench::{EnginePlan, load, measure};

/// Engine latency and throughput on one model file.
#[derive(Debug, Parser)]
#[command(name = "maas-bench", about)]
struct Args {
    /// The model: .onnx or .safetensors, served as `maas serve` would (set MAAS_DENSE_KERNELS=off
    /// for tract's or candle's own path where the dense kernels would run it).
    model: PathBuf,
    /// Threads per prediction. candle takes its count from RAYON_NUM_THREADS, which this sets
    /// nothing for: run with RAYON_NUM_THREADS=N.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Single-row predictions to time.
    #[arg(long, default_value_t = 3000)]
    latency_iterations: usize,
    /// Batch sizes for throughput.
    #[arg(long, value_delimiter = ',', default_value = "1,32,256,4096")]
    batches: Vec<usize>,
    /// Timed runs per batch size (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Minimum seconds per run.
    #[arg(long, default_value_t = 1.0)]
    min_seconds: f64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    maas_engine::threads::set_threads(args.threads);
    let model = load(&args.model).await?;
    // What serves the model: tract, candle or the dense kernels (MAAS_DENSE_KERNELS=off keeps
    // the engines' own paths).
    let engine = model.executor();
    let threads = if engine == "candle" {
        maas_engine::threads::candle_threads()
    } else {
        args.threads
    };
    let report = measure(
        &model,
        engine,
        &EnginePlan {
            threads,
            latency_iterations: args.latency_iterations,
            batches: args.batches,
            runs: args.runs,
            min_seconds: args.min_seconds,
        },
    )?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
