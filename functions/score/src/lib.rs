//! The scoring function's event handling: every record of an S3 `ObjectCreated` event is decoded
//! (S3 URL-encodes keys: `+` for space, `%XX` for the rest), checked against the trigger prefix,
//! and scored. A record outside `batch/input/` is skipped with a log line. If any record fails
//! (missing model, unreadable file, storage), the invocation fails after trying the others, so
//! Lambda retries it and the failure destination catches what keeps failing; records that already
//! succeeded are not rescored on retry (scoring is idempotent).

use aws_lambda_events::event::s3::S3Event;
use maas_batch::{BatchScorer, INPUT_PREFIX, ScoreOutcome};
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
        let Some(key) = maas_store::store_key_in_bucket(&full_key, store_prefix)
            .filter(|k| k.starts_with(INPUT_PREFIX))
        else {
            warn!(key = %full_key, "object is outside the trigger prefix {INPUT_PREFIX}; skipped");
            summary.skipped.push(full_key);
            continue;
        };
        match scorer.score(key).await {
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
            Err(e) => {
                error!(key, error = %e, "scoring failed");
                failures.push(format!("{key}: {e}"));
            }
        }
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
