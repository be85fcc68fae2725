//! `maas train SPEC.json`: runs a training job on this machine with the code the training
//! function runs, with a progress bar (epoch, loss, samples/s); and `maas bench-train`, the seed
//! workload timed at several batch sizes.

use std::path::PathBuf;

use bytes::Bytes;
use clap::Args;
use maas_store::{PutCondition, SharedStore};
use maas_train::{JobOutcome, JobSpec, JobStatus, Progress, RunOptions, TrainingJob};
use serde_json::json;

use crate::{CliError, Rendered};

mod remote;

/// `maas train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The job spec (JSON). See the README for its fields and defaults.
    pub spec: PathBuf,
    /// Job id (overrides the spec's). Running an unfinished job's id again resumes it.
    #[arg(long)]
    pub job_id: Option<String>,
    /// Upload this local file to the spec's dataset.key first.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Train in the deployment instead of on this machine: upload the spec as
    /// `jobs/requests/{job-id}.json` to the `--store s3://bucket`, whose upload event starts the
    /// training function, then follow the job's status (and resubmit it if the function pauses
    /// at its 15-minute limit).
    #[arg(long)]
    pub remote: bool,
    /// With --remote: submit and return at once, printing the job id.
    #[arg(long, requires = "remote")]
    pub no_wait: bool,
    /// With --remote: give up waiting after this many minutes (the job keeps running).
    #[arg(long, requires = "remote", default_value_t = 120.0)]
    pub wait_minutes: f64,
    /// With --remote: seconds between two reads of the job's status.
    #[arg(long, requires = "remote", default_value_t = 3.0)]
    pub poll_seconds: f64,
}

/// `maas bench-train`.
#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "64,256")]
    pub batch: Vec<usize>,
    /// Generated rows per epoch.
    #[arg(long, default_value_t = 8192)]
    pub rows: usize,
    /// Epochs per batch size (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
}

/// `maas generate-dataset`.
#[derive(Debug, Args)]
pub struct GenerateDatasetArgs {
    /// What the target column `y` is: a noisy function of the features (`regression`), a
    /// `yes`/`no` label (`binary`) or one of `red`, `green`, `blue` (`multiclass`).
    #[arg(value_enum)]
    pub task: DatasetTask,
    /// Where to write it: `.jsonl` gives JSON lines, anything else CSV with a header.
    pub output: PathBuf,
    /// Rows.
    #[arg(long, default_value_t = 5000)]
    pub rows: usize,
    /// Feature columns `f0…` (the seed model takes 1000).
    #[arg(long, default_value_t = 1000)]
    pub features: usize,
    /// Random seed (same seed, same file).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The kinds of generated target.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DatasetTask {
    /// Numeric `y`.
    Regression,
    /// `yes` / `no`.
    Binary,
    /// `red` / `green` / `blue`.
    Multiclass,
}

/// Runs `maas generate-dataset`.
pub(crate) fn generate_dataset(args: GenerateDatasetArgs) -> Result<Rendered, CliError> {
    use maas_train::synthetic::{self, Target};
    if args.rows == 0 || args.features == 0 {
        return Err(CliError::Input(
            "--rows and --features must be at least 1".into(),
        ));
    }
    let target = match args.task {
        DatasetTask::Regression => Target::Regression,
        DatasetTask::Binary => Target::Binary,
        DatasetTask::Multiclass => Target::Multiclass,
    };
    let jsonl = args.output.extension().is_some_and(|e| e == "jsonl");
    let body = if jsonl {
        synthetic::jsonl(target, args.rows, args.features, args.seed)
    } else {
        synthetic::csv(target, args.rows, args.features, args.seed)
    };
    std::fs::write(&args.output, body).map_err(|e| file_error(&args.output, e))?;
    Ok(Rendered(format!(
        "wrote {} rows of {} features and target y to {}",
        args.rows,
        args.features,
        args.output.display()
    )))
}

fn file_error(path: &std::path::Path, e: impl std::fmt::Display) -> CliError {
    CliError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Runs `maas train`.
pub(crate) async fn train(
    store_url: &str,
    store: SharedStore,
    args: TrainArgs,
    actor: String,
    json: bool,
) -> Result<Rendered, CliError> {
    let raw = std::fs::read(&args.spec).map_err(|e| file_error(&args.spec, e))?;
    let mut spec = JobSpec::from_json(&raw)
        .map_err(|e| CliError::Input(format!("{}: {e}", args.spec.display())))?;
    if let Some(id) = args.job_id.clone() {
        spec.job_id = Some(id);
    }
    if let Some(path) = &args.dataset {
        let body = std::fs::read(path).map_err(|e| file_error(path, e))?;
        maas_store::validate_key(&spec.dataset.key)?;
        store
            .put(&spec.dataset.key, Bytes::from(body), PutCondition::None)
            .await?;
    }
    if args.remote {
        return remote::submit_and_follow(store_url, store, spec, &args, json).await;
    }
    let outcome = run_with_progress(store, spec, actor, !json).await?;
    render(outcome, json)
}

/// Runs a job from its spec, with a progress bar (plain epoch lines when stderr is not a
/// terminal) unless `show_progress` is false.
pub(crate) async fn run_with_progress(
    store: SharedStore,
    spec: JobSpec,
    actor: String,
    show_progress: bool,
) -> Result<JobOutcome, CliError> {
    let bar = if !show_progress {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} epoch {prefix} {bar:25} {pos}/{len} rows {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let epochs = spec.training.epochs;
    let bar_c = bar.clone();
    let mut report = move |p: Progress<'_>| match p {
        Progress::Batch { epoch, done, total } => {
            bar_c.set_prefix(format!("{epoch}/{epochs}"));
            bar_c.set_length(total as u64);
            bar_c.set_position(done as u64);
        }
        Progress::Epoch(record) => {
            let line = format!(
                "epoch {}/{epochs}: train loss {:.6}, validation loss {:.6}, {:.0} samples/s",
                record.epoch, record.train_loss, record.val_loss, record.samples_per_second
            );
            if show_progress && bar_c.is_hidden() {
                eprintln!("{line}"); // not a terminal: plain lines for logs
            } else {
                bar_c.println(line);
            }
            bar_c.set_message(format!("last val loss {:.6}", record.val_loss));
        }
    };
    let outcome = TrainingJob::new(store)
        .run(
            spec,
            RunOptions {
                actor,
                progress: Some(&mut report),
                ..RunOptions::default()
            },
        )
        .await;
    bar.finish_and_clear();
    Ok(outcome?)
}

/// The error for a job another process holds.
pub(crate) fn busy(status: &JobStatus) -> CliError {
    CliError::Input(format!(
        "job {} is being run by another process (it holds the job until {}); wait for it, or run this again after that time to take over",
        status.job_id,
        status
            .lease_expires_at
            .and_then(|t| t
                .format(&time::format_description::well_known::Rfc3339)
                .ok())
            .unwrap_or_else(|| "unknown".into())
    ))
}

/// Renders a job's outcome as text or JSON; a job another process holds is an error.
fn render(outcome: JobOutcome, json: bool) -> Result<Rendered, CliError> {
    Ok(match outcome {
        JobOutcome::Succeeded { status, manifest } => {
            if json {
                return Ok(Rendered(
                    serde_json::to_string_pretty(&json!({
                        "status": status,
                        "version": manifest.version,
                        "metrics": manifest.metrics,
                    }))
                    .unwrap_or_default(),
                ));
            }
            let mut out = format!(
                "job {} succeeded: {} version {}\n",
                status.job_id, manifest.name, manifest.version
            );
            let shown = [
                "val_mse",
                "val_mse_baseline",
                "val_r2",
                "val_accuracy",
                "val_log_loss",
                "val_auc",
                "samples_per_second",
            ];
            for key in shown {
                if let Some(v) = manifest.metrics.get(key).and_then(|v| v.as_f64()) {
                    out.push_str(&format!("  {key:<20} {v:.6}\n"));
                }
            }
            if let Some(p) = &status.promotion {
                out.push_str(&format!(
                    "  {} {}: {}\n",
                    p.alias,
                    if p.promoted { "moved" } else { "not moved" },
                    p.reason
                ));
            }
            Rendered(out.trim_end().to_string())
        }
        JobOutcome::Busy(status) => return Err(busy(&status)),
        JobOutcome::Paused(status) => Rendered(if json {
            serde_json::to_string_pretty(&status).unwrap_or_default()
        } else {
            format!(
                "job {} paused after epoch {}/{}; run `maas train SPEC --job-id {}` again to resume",
                status.job_id, status.epoch, status.epochs, status.job_id
            )
        }),
    })
}

/// Runs `maas bench-train`.
pub(crate) async fn bench(args: BenchTrainArgs, json: bool) -> Result<Rendered, CliError> {
    let results = tokio::task::spawn_blocking(move || -> Result<Vec<_>, CliError> {
        let data = maas_train::bench::seed_dataset(args.rows)?;
        let mut results = Vec::with_capacity(args.batch.len());
        for &batch in &args.batch {
            results.push(maas_train::bench::run(
                &data,
                batch.max(1),
                args.epochs.max(1),
            )?);
        }
        Ok(results)
    })
    .await
    .map_err(|e| CliError::Input(format!("the benchmark stopped: {e}")))??;
    if json {
        return Ok(Rendered(
            serde_json::to_string_pretty(&results).unwrap_or_default(),
        ));
    }
    let mut out = String::from(
        "seed workload (MLP 1000→500→100→1, ReLU, MSE, Adam lr 0.001), candle with the in-place optimizer\n",
    );
    for r in results {
        let epochs: Vec<String> = r
            .samples_per_second
            .iter()
            .map(|s| format!("{s:.0}"))
            .collect();
        out.push_str(&format!(
            "batch {:>4}: {:>8.0} samples/s (median of epochs: {})\n",
            r.batch_size,
            r.median,
            epochs.join(", ")
        ));
    }
    Ok(Rendered(out.trim_end().to_string()))
}
