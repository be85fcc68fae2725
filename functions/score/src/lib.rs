//! The scoring function's event handling: every record of an S3 `ObjectCreated` event is decoded
//! (S3 URL-encodes keys: `+` for space, `%XX` for the rest), checked against the trigger prefix,
//! and scored. A record outside `batch/input/` is skipped with a log line. If any record fails
//! (missing model, unreadable file, storage), the invocation fails after trying the others, so
//! Lambda retries it and the failure destination catches what keeps failing; records that already
//! succeeded are not rescored on retry (scoring is idempotent).
//!
//! The bulk state machine (a Distributed Map over `batch/bulk/…`) invokes the function with one
//! listed object per call instead: `{"key": "batch/bulk/{model}/{file}"}`, the key exactly as
//! S3 lists it (not URL-encoded).

use aws_lambda_events::event::s3::S3Event;
use maas_batch::{BULK_PREFIX, BatchScorer, INPUT_PREFIX, ScoreOutcome};
use tracing::{error, info, warn};

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum ScoreFunctionError {
    /// Some records could not be scored; each is listed with its reason.
    #[error("{failed} of {total} records failed: {details}")]
    RecordsFailed {
        /// How many failed.
        failed: usize,
        /// How many the event had.
        total: usize,
        /// `key: reason` per failure.
        details: String,
    },
    /// The function's configuration is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The invocation's payload is neither an S3 event nor `{"key": …}`.
    #[error("{0}")]
    Event(String),
}

/// What one invocation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InvocationSummary {
    /// Records scored now.
    pub scored: Vec<String>,
    /// Records already scored by an earlier delivery.
    pub already_scored: Vec<String>,
    /// Records outside the trigger prefix.
    pub skipped: Vec<String>,
    /// Records whose object was overwritten while it was scored: nothing was published, and
    /// the new object's own event scores it.
    pub superseded: Vec<String>,
}

/// Scores every record of `event`. `store_prefix` is the key prefix of the store inside its
/// bucket (`""` for the bucket root).
pub async fn handle_event(
    scorer: &BatchScorer,
    store_prefix: &str,
    event: S3Event,
) -> Result<InvocationSummary, ScoreFunctionError> {
    let total = event.records.len();
    let mut summary = InvocationSummary::default();
    let mut failures = Vec::new();
    for record in event.records {
        let Some(raw) = record.s3.object.key else {
            warn!("event record without an object key; skipped");
            continue;
        };
        let full_key = maas_store::decode_event_key(&raw);
        score_key(scorer, store_prefix, &full_key, &mut summary, &mut failures).await;
    }
    if failures.is_empty() {
        Ok(summary)
    } else {
        Err(ScoreFunctionError::RecordsFailed {
            failed: failures.len(),
            total,
            details: failures.join("; "),
        })
    }
}

/// Handles any payload the function accepts: an S3 event, or `{"key": "<bucket key>"}` from the
/// bulk state machine.
pub async fn handle_payload(
    scorer: &BatchScorer,
    store_prefix: &str,
    payload: serde_json::Value,
) -> Result<InvocationSummary, ScoreFunctionError> {
    if payload.get("Records").is_some() {
        let event: S3Event = serde_json::from_value(payload).map_err(|e| {
            ScoreFunctionError::Event(format!("an S3 event that does not parse: {e}"))
        })?;
        return handle_event(scorer, store_prefix, event).await;
    }
    let Some(key) = payload.get("key").and_then(serde_json::Value::as_str) else {
        return Err(ScoreFunctionError::Event(
            "expected an S3 event or {\"key\": \"batch/bulk/{model}/{file}\"}".into(),
        ));
    };
    let mut summary = InvocationSummary::default();
    let mut failures = Vec::new();
    score_key(scorer, store_prefix, key, &mut summary, &mut failures).await;
    if failures.is_empty() {
        Ok(summary)
    } else {
        Err(ScoreFunctionError::RecordsFailed {
            failed: failures.len(),
            total: 1,
            details: failures.join("; "),
        })
    }
}

/// Scores one object (its key in the bucket), recording the outcome.
async fn score_key(
    scorer: &BatchScorer,
    store_prefix: &str,
    full_key: &str,
    summary: &mut InvocationSummary,
    failures: &mut Vec<String>,
) {
    let Some(key) = maas_store::store_key_in_bucket(full_key, store_prefix)
        .filter(|k| k.starts_with(INPUT_PREFIX) || k.starts_with(BULK_PREFIX))
    else {
        warn!(key = %full_key, "object is outside {INPUT_PREFIX} and {BULK_PREFIX}; skipped");
        summary.skipped.push(full_key.to_string());
        return;
    };
    let mut outcome = scorer.score(key).await;
    if key.starts_with(BULK_PREFIX) && matches!(outcome, Ok(ScoreOutcome::Superseded { .. })) {
        // No event follows an overwrite under batch/bulk/: score the new content now.
        info!(key, "overwritten while scored; scoring its new version");
        outcome = scorer.score(key).await;
    }
    match outcome {
        Ok(ScoreOutcome::Scored(report)) => {
            info!(
                key,
                rows = report.rows_read,
                rejected = report.rows_rejected,
                "scored"
            );
            summary.scored.push(key.to_string());
        }
        Ok(ScoreOutcome::AlreadyScored(_)) => {
            info!(key, "already scored by an earlier delivery");
            summary.already_scored.push(key.to_string());
        }
        Ok(ScoreOutcome::Superseded { .. }) => {
            info!(
                key,
                "overwritten while scored; its new version is scored by its own event"
            );
            summary.superseded.push(key.to_string());
        }
        Err(e) => {
            error!(key, error = %e, "scoring failed");
            failures.push(format!("{key}: {e}"));
        }
    }
}
