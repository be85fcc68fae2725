//! The batch scoring Lambda function: opens the store named by `MAAS_STORE` and scores the
//! objects of each S3 `ObjectCreated` event under `batch/input/`, or the one object a bulk
//! state machine names (`{"key": …}`).

use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};
use maas_batch::BatchScorer;
use maas_score_function::{ScoreFunctionError, handle_payload};
use maas_store::StoreUrl;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    maas_engine::threads::configure_from_env()?;
    let url = std::env::var("MAAS_STORE").map_err(|_| {
        ScoreFunctionError::Config("MAAS_STORE is not set; set it to s3://bucket[/prefix]".into())
    })?;
    let prefix = StoreUrl::parse(&url)?.bucket_prefix().to_string();
    let scorer = BatchScorer::new(maas_store::open(&url).await?);
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let scorer = scorer.clone();
        let prefix = prefix.clone();
        async move {
            let summary = handle_payload(&scorer, &prefix, event.payload).await?;
            Ok::<_, Error>(serde_json::json!({
                "scored": summary.scored,
                "already_scored": summary.already_scored,
                "skipped": summary.skipped,
            }))
        }
    }))
    .await
}
