//! `maas-bench`: prints one engine's in-process measurements as JSON (see the library docs).
//! `bench/run` calls it next to the Python measurements of onnxruntime and PyTorch.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use maas_bench::{EnginePlan, load, measure};

/// Engine latency and throughput on one model file.
#[derive(Debug, Parser)]
#[command(name = "maas-bench", about)]
struct Args {
    /// The model: .onnx (served by tract) or .safetensors (served by candle).
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
    /// What to report as the engine's name.
    #[arg(long, value_enum)]
    engine: Option<EngineName>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EngineName {
    Tract,
    Candle,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    maas_engine::threads::set_threads(args.threads);
    let model = load(&args.model).await?;
    let engine = match args.engine {
        Some(EngineName::Tract) => "tract",
        Some(EngineName::Candle) => "candle",
        None if args.model.extension().is_some_and(|e| e == "onnx") => "tract",
        None => "candle",
    };
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
