//! The training function's event handling. It accepts three kinds of invocation:
//!
//! - a job spec (JSON, as `maas train` takes) by direct invocation — EventBridge, Step Functions
//!   or `aws lambda invoke`;
//! - `{"resume": "JOB_ID"}`, which continues a paused job from its stored spec and checkpoint;
//! - an S3 `ObjectCreated` event for `jobs/requests/{job_id}.json`: each request object is read
//!   as a spec whose job id defaults to the file's stem. Keys outside `jobs/requests/` are
//!   skipped with a log line; the function never writes under that prefix.
//!
//! Each job runs until done or until the Lambda deadline is near (it then checkpoints and
//! reports `paused`; invoking it again with the same job id resumes it). A failed job fails the
//! invocation with the job's reason, so Lambda's retries and failure destination apply.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::s3::S3Event;
use maas_store::SharedStore;
use maas_train::{JobOutcome, JobSpec, RunOptions, TrainingJob};
use serde_json::{Value, json};
use tracing::{error, info, warn};

/// Where training requests are uploaded.
pub const REQUESTS_PREFIX: &str = "jobs/requests/";

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainFunctionError {
    /// The event is neither a spec, a resume request nor an S3 event.
    #[error("unrecognised event: {0}")]
    Event(String),
    /// A job failed.
    #[error(transparent)]
    Job(#[from] maas_train::TrainError),
    /// Some requests of a multi-record S3 event failed (the others ran; a retry of the event
    /// finds them succeeded and does not train them again).
    #[error("{failed} of {total} training requests failed: {}", .reasons.join("; "))]
    Requests {
        /// How many failed.
        failed: usize,
        /// How many the event held.
        total: usize,
        /// `key: reason` for each failure.
        reasons: Vec<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] maas_store::StoreError),
    /// The function's configuration is wrong.
    #[error("configuration: {0}")]
    Config(String),
}

/// Converts Lambda's deadline (milliseconds since the epoch) to an [`Instant`]. A deadline that
/// has already passed when the invocation starts can't come from Lambda (cargo-lambda's
/// emulator sends a fixed `600000`, i.e. 1970): it is ignored with a warning, and the job runs
/// without one.
pub fn deadline_instant(deadline_ms: u64) -> Option<Instant> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if deadline_ms <= now_ms {
        warn!(
            deadline_ms,
            now_ms, "the invocation's deadline has already passed; running without a deadline"
        );
        return None;
    }
    Some(Instant::now() + Duration::from_millis(deadline_ms - now_ms))
}

fn summary(outcome: &JobOutcome) -> Value {
    match outcome {
        JobOutcome::Succeeded { status, manifest } => json!({
            "job_id": status.job_id,
            "state": status.state,
            "model": manifest.name,
            "version": manifest.version,
            "metrics": manifest.metrics,
            "promotion": status.promotion,
        }),
        JobOutcome::Busy(status) => json!({
            "job_id": status.job_id,
            "state": "busy",
            "note": "another invocation holds this job; it was left alone",
            "lease_expires_at": status.lease_expires_at.map(|t| t.unix_timestamp()),
        }),
        JobOutcome::Paused(status) => json!({
            "job_id": status.job_id,
            "state": status.state,
            "epoch": status.epoch,
            "epochs": status.epochs,
            "resume_with": {"resume": status.job_id},
        }),
    }
}

/// Handles one invocation. `store_prefix` is the store's key prefix inside its bucket.
pub async fn handle(
    store: SharedStore,
    store_prefix: &str,
    event: Value,
    deadline: Option<Instant>,
    actor: &str,
) -> Result<Value, TrainFunctionError> {
    let jobs = TrainingJob::new(store.clone());
    let options = || RunOptions {
        deadline,
        actor: actor.to_string(),
        ..RunOptions::default()
    };
    if event.get("Records").is_some() {
        let event: S3Event = serde_json::from_value(event).map_err(|e| {
            TrainFunctionError::Event(format!("an S3 event that does not parse: {e}"))
        })?;
        let mut results = Vec::new();
        let mut reasons = Vec::new();
        let total = event.records.len();
        for record in event.records {
            let Some(raw) = record.s3.object.key else {
                continue;
            };
            let full_key = maas_store::decode_event_key(&raw);
            let Some(key) = maas_store::store_key_in_bucket(&full_key, store_prefix)
                .filter(|k| k.starts_with(REQUESTS_PREFIX) && k.ends_with(".json"))
            else {
                warn!(key = %full_key, "not a training request under {REQUESTS_PREFIX}; skipped");
                continue;
            };
            match run_request(&jobs, &store, key, options()).await {
                Ok(outcome) => results.push(summary(&outcome)),
                Err(e) => {
                    error!(key, error = %e, "training request failed");
                    reasons.push(format!("{key}: {e}"));
                }
            }
        }
        if !reasons.is_empty() {
            return Err(TrainFunctionError::Requests {
                failed: reasons.len(),
                total,
                reasons,
            });
        }
        return Ok(json!({ "jobs": results }));
    }
    if let Some(id) = event.get("resume").and_then(Value::as_str) {
        let spec_key = maas_train::job::spec_key(id);
        maas_train::spec::validate_job_id(id)?;
        let body = store.get(&spec_key).await.map_err(|e| {
            if e.is_not_found() {
                TrainFunctionError::Event(format!("no job {id:?} to resume (no {spec_key})"))
            } else {
                e.into()
            }
        })?;
        let spec = JobSpec::from_json(&body.body)?;
        return Ok(summary(&jobs.run(spec, options()).await?));
    }
    if event.get("model").is_some() && event.get("dataset").is_some() {
        let spec: JobSpec = serde_json::from_value(event)
            .map_err(|e| maas_train::TrainError::Spec(e.to_string()))?;
        return Ok(summary(&jobs.run(spec, options()).await?));
    }
    Err(TrainFunctionError::Event(
        "expected a job spec ({\"model\", \"dataset\", ...}), {\"resume\": JOB_ID}, or an S3 event for jobs/requests/*.json".into(),
    ))
}

/// Runs the request stored at `key` (under [`REQUESTS_PREFIX`]); its job id defaults to the
/// file's stem, so a redelivered event finds the job done instead of training it again.
async fn run_request(
    jobs: &TrainingJob,
    store: &SharedStore,
    key: &str,
    options: RunOptions<'_>,
) -> Result<JobOutcome, TrainFunctionError> {
    let body = store.get(key).await?.body;
    let mut spec = JobSpec::from_json(&body)?;
    if spec.job_id.is_none() {
        let stem = key
            .trim_start_matches(REQUESTS_PREFIX)
            .trim_end_matches(".json")
            .replace('/', "-");
        spec.job_id = Some(stem);
    }
    info!(key, job = ?spec.job_id, "training request");
    Ok(jobs.run(spec, options).await?)
}
