//! `maas train --remote`: hands a job to the deployed training function and follows it.
//!
//! The spec is uploaded as `jobs/requests/{job-id}.json`; the bucket's upload event invokes the
//! function (the same path a scheduled or scripted submission takes, so there is one way in).
//! The CLI then reads `jobs/{id}/status.json` until the job succeeds or fails. When the function
//! stops at its time limit the job is `paused`; the CLI uploads the request again, whose event
//! resumes the job from its last checkpoint.

use std::time::{Duration, Instant};

use bytes::Bytes;
use maas_core::ModelName;
use maas_registry::Registry;
use maas_store::{ETag, PutCondition, SharedStore};
use maas_train::{JobSpec, JobState, JobStatus};
use serde_json::json;

use super::TrainArgs;
use crate::{CliError, Rendered};

/// Where the training function's S3 trigger listens.
const REQUESTS_PREFIX: &str = "jobs/requests/";

/// How long a submitted job may go without any status before the CLI says the deployment
/// doesn't seem to be listening.
const FIRST_STATUS_PATIENCE: Duration = Duration::from_secs(180);

/// The key a job's request is uploaded to.
pub(crate) fn request_key(job_id: &str) -> String {
    format!("{REQUESTS_PREFIX}{job_id}.json")
}

/// Uploads the request and, unless `--no-wait`, follows the job to its end.
pub(crate) async fn submit_and_follow(
    store_url: &str,
    store: SharedStore,
    mut spec: JobSpec,
    args: &TrainArgs,
    json: bool,
) -> Result<Rendered, CliError> {
    if !store_url.starts_with("s3://") {
        return Err(CliError::Input(format!(
            "--remote trains in a deployment: give its bucket with --store s3://<bucket> (the stack's Bucket output), not {store_url:?}"
        )));
    }
    let job_id = spec
        .job_id
        .clone()
        .unwrap_or_else(|| maas_train::job::generate_job_id(&spec.model));
    maas_train::spec::validate_job_id(&job_id)?;
    spec.job_id = Some(job_id.clone());
    let request = serde_json::to_vec_pretty(&spec)
        .map_err(|e| CliError::Input(format!("the spec does not serialise: {e}")))?;
    let request = Bytes::from(request);
    let status_key = maas_train::job::status_key(&job_id);
    // A status left by an earlier run of this id is not news about this submission.
    let stale = match store.get(&status_key).await {
        Ok(object) => Some(object.etag),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    store
        .put(&request_key(&job_id), request.clone(), PutCondition::None)
        .await?;
    if args.no_wait {
        return Ok(Rendered(if json {
            json!({ "job_id": job_id, "request": request_key(&job_id), "status": status_key })
                .to_string()
        } else {
            format!(
                "submitted job {job_id} ({}); follow it with `maas train {} --remote --job-id {job_id}` or read {status_key}",
                request_key(&job_id),
                args.spec.display()
            )
        }));
    }
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    let submitted = format!(
        "job {job_id} submitted as {}; waiting for the training function",
        request_key(&job_id)
    );
    if bar.is_hidden() && !json {
        eprintln!("{submitted}");
    }
    bar.set_message(submitted);
    bar.enable_steady_tick(Duration::from_millis(200));
    let followed = follow(&store, &job_id, stale, &request, args, &bar, json).await;
    bar.finish_and_clear();
    let status = followed?;
    render_remote(&store, status, json).await
}

/// Reads the status until the job succeeds or fails, resubmitting it when it pauses.
async fn follow(
    store: &SharedStore,
    job_id: &str,
    mut stale: Option<ETag>,
    request: &Bytes,
    args: &TrainArgs,
    bar: &indicatif::ProgressBar,
    quiet: bool,
) -> Result<JobStatus, CliError> {
    let say = |bar: &indicatif::ProgressBar, line: String| {
        if bar.is_hidden() {
            if !quiet {
                eprintln!("{line}");
            }
        } else {
            bar.println(line);
        }
    };
    let started = Instant::now();
    let give_up = started + Duration::from_secs_f64(args.wait_minutes.max(0.0) * 60.0);
    let poll = Duration::from_secs_f64(args.poll_seconds.clamp(0.05, 60.0));
    let status_key = maas_train::job::status_key(job_id);
    let mut seen_any = false;
    let mut unreadable = 0;
    loop {
        let status = match store.get(&status_key).await {
            Ok(object) if stale.as_ref() != Some(&object.etag) => {
                seen_any = true;
                match serde_json::from_slice::<JobStatus>(&object.body) {
                    Ok(status) => {
                        unreadable = 0;
                        Some((status, object.etag))
                    }
                    // A store without atomic writes (s3s-fs in tests) can show a half-written
                    // file; only a status that stays unreadable is an error.
                    Err(e) if unreadable >= 10 => {
                        return Err(CliError::Remote(format!(
                            "{status_key} does not parse: {e}"
                        )));
                    }
                    Err(_) => {
                        unreadable += 1;
                        None
                    }
                }
            }
            Ok(_) => None,
            Err(e) if e.is_not_found() => None,
            // A poll that fails (a dropped connection, a throttled request) is retried; only a
            // store that keeps failing ends the wait.
            Err(e) if unreadable >= 10 => return Err(e.into()),
            Err(_) => {
                unreadable += 1;
                None
            }
        };
        if let Some((status, etag)) = status {
            let last = status
                .history
                .last()
                .map(|r| format!(", validation loss {:.6}", r.val_loss))
                .unwrap_or_default();
            let line = format!(
                "job {job_id}: {:?}, epoch {}/{}{last}",
                status.state, status.epoch, status.epochs
            );
            if bar.message() != line {
                if bar.is_hidden() && !quiet {
                    eprintln!("{line}"); // not a terminal: plain lines for logs
                }
                bar.set_message(line);
            }
            match status.state {
                JobState::Succeeded | JobState::Failed => return Ok(status),
                JobState::Paused => {
                    say(
                        bar,
                        format!(
                            "job {job_id} paused after epoch {}/{} at the function's time limit; resubmitting to continue",
                            status.epoch, status.epochs
                        ),
                    );
                    // Anything but this paused status is news.
                    stale = Some(etag);
                    store
                        .put(&request_key(job_id), request.clone(), PutCondition::None)
                        .await?;
                }
                JobState::Queued | JobState::Running => {}
            }
        } else if !seen_any && started.elapsed() > FIRST_STATUS_PATIENCE {
            return Err(CliError::Remote(format!(
                "no status for job {job_id} after {}s: is the stack deployed on this bucket? The request is at {}; check the training function's logs and its failure queue (stack output TrainFailureQueue)",
                FIRST_STATUS_PATIENCE.as_secs(),
                request_key(job_id)
            )));
        }
        if Instant::now() > give_up {
            return Err(CliError::Remote(format!(
                "stopped waiting for job {job_id} after {} minutes; it keeps running: follow it with --job-id {job_id}, or read {status_key}",
                args.wait_minutes
            )));
        }
        tokio::time::sleep(poll).await;
    }
}

/// A finished job: the version's metrics for a success, the reason for a failure.
async fn render_remote(
    store: &SharedStore,
    status: JobStatus,
    json: bool,
) -> Result<Rendered, CliError> {
    if status.state == JobState::Failed {
        return Err(CliError::Remote(format!(
            "job {} failed: {}",
            status.job_id,
            status.reason.as_deref().unwrap_or("no reason recorded")
        )));
    }
    let (Some(version), Ok(model)) = (status.version, ModelName::new(status.model.clone())) else {
        return Err(CliError::Remote(format!(
            "job {} says it succeeded but names no version",
            status.job_id
        )));
    };
    let manifest = Registry::new(store.clone())
        .manifest(&model, version)
        .await?;
    super::render(
        maas_train::JobOutcome::Succeeded {
            status,
            manifest: Box::new(manifest),
        },
        json,
    )
}
