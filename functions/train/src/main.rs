//! The training Lambda function: opens the store named by `MAAS_STORE` and runs the job each
//! invocation names, stopping cleanly before the invocation's deadline.

use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};
use maas_store::StoreUrl;
use maas_train_function::{TrainFunctionError, deadline_instant, handle};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let url = std::env::var("MAAS_STORE").map_err(|_| {
        TrainFunctionError::Config("MAAS_STORE is not set; set it to s3://bucket[/prefix]".into())
    })?;
    let prefix = StoreUrl::parse(&url)?.bucket_prefix().to_string();
    let store = maas_store::open(&url).await?;
    let actor = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .map(|f| format!("lambda:{f}"))
        .unwrap_or_else(|_| "lambda:train".into());
    run(service_fn(|event: LambdaEvent<Value>| {
        let store = store.clone();
        let prefix = prefix.clone();
        let actor = actor.clone();
        async move {
            let deadline = deadline_instant(event.context.deadline);
            Ok::<_, Error>(handle(store, &prefix, event.payload, deadline, &actor).await?)
        }
    }))
    .await
}
