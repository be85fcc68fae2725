//! `maas demo`: the whole loop on one machine in a minute or two. It generates the seed
//! workload's data, trains the seed MLP (the spec in `examples/specs/seed.json`), serves it on
//! localhost, sends predictions through the HTTP API, drops a batch file under `batch/input/`
//! and shows its scored output, prints what to try next and keeps serving until Ctrl-C.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use maas_store::{PutCondition, SharedStore};
use maas_train::synthetic::{self, Target};
use maas_train::{JobOutcome, JobSpec};
use serde_json::{Value, json};

use crate::{BatchWatch, CliError, Rendered, ServeArgs, server};

/// The seed workload's spec, shipped with the binary.
const SEED_SPEC: &str = include_str!("../../examples/specs/seed.json");
/// Where the demo puts its data.
const DATASET_KEY: &str = "datasets/demo/seed.csv";
/// The demo's model.
const MODEL: &str = "seed";

/// `maas demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address the server listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Rows of generated training data (1000 features each).
    #[arg(long, default_value_t = 4000)]
    pub rows: usize,
    /// Stop after the walkthrough instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

fn step(n: usize, text: &str) {
    println!("\n[{n}/5] {text}");
}

fn demo_error(message: impl std::fmt::Display) -> CliError {
    CliError::Input(format!("demo: {message}"))
}

/// A tiny client for the local server, over hyper.
struct LocalClient {
    base: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl LocalClient {
    fn new(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .map_err(demo_error)?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| demo_error(format!("{method} {path}: {e}")))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| demo_error(format!("{method} {path}: {e}")))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            demo_error(format!(
                "{method} {path} answered {status} with no JSON: {e}"
            ))
        })?;
        if !status.is_success() {
            return Err(demo_error(format!(
                "{method} {path} answered {status}: {value}"
            )));
        }
        Ok(value)
    }
}

/// Runs `maas demo` against `store` (named `store_url`).
pub(crate) async fn demo(
    store_url: &str,
    store: SharedStore,
    args: DemoArgs,
    actor: String,
) -> Result<Rendered, CliError> {
    let started = Instant::now();
    let rows = args.rows.max(100);

    step(
        1,
        &format!("generating the seed workload's data: {rows} rows of 1000 features and y"),
    );
    let table = synthetic::csv(Target::Regression, rows, 1000, 7);
    store
        .put(DATASET_KEY, Bytes::from(table.clone()), PutCondition::None)
        .await?;
    println!("      stored as {DATASET_KEY} in {store_url}");

    step(
        2,
        "training the seed MLP 1000→500→100→1 (ReLU, MSE, Adam, lr 0.001) with candle",
    );
    let mut spec = JobSpec::from_json(SEED_SPEC.as_bytes())?;
    spec.model = MODEL.into();
    spec.dataset.key = DATASET_KEY.into();
    spec.description = Some("The seed workload, trained by `maas demo`".into());
    let (status, manifest) =
        match crate::train::run_with_progress(store.clone(), spec, actor, true).await? {
            JobOutcome::Succeeded { status, manifest } => (status, manifest),
            JobOutcome::Busy(status) => return Err(crate::train::busy(&status)),
            JobOutcome::Paused(status) => {
                return Err(demo_error(format!(
                    "training job {} paused after epoch {}",
                    status.job_id, status.epoch
                )));
            }
        };
    let version = manifest.version.get();
    let metric = |name: &str| {
        manifest
            .metrics
            .get(name)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    println!(
        "      version {version}: validation MSE {:.4} (predicting the mean: {:.4}), R² {:.3}, {:.0} samples/s",
        metric("val_mse"),
        metric("val_mse_baseline"),
        metric("val_r2"),
        metric("samples_per_second")
    );
    if let Some(p) = &status.promotion {
        println!("      {}: {}", p.alias, p.reason);
    }

    step(3, "serving it over the Open Inference Protocol");
    let server = server::start(
        store_url,
        &ServeArgs {
            addr: args.addr,
            preload: vec![format!("{MODEL}:{version}")],
            batch_watch: BatchWatch::Always,
            batch_interval: 0.5,
        },
    )
    .await?;
    let addr = server.addr;
    println!("      http://{addr}  (the same router the Lambda function runs)");
    let client = LocalClient::new(addr);
    let samples: Vec<(Vec<f64>, f64)> = table
        .lines()
        .skip(1)
        .take(3)
        .map(|line| {
            let mut cells: Vec<f64> = line.split(',').filter_map(|c| c.parse().ok()).collect();
            let y = cells.pop().unwrap_or(f64::NAN);
            (cells, y)
        })
        .collect();
    let data: Vec<f64> = samples
        .iter()
        .flat_map(|(x, _)| x.iter().copied())
        .collect();
    let answer = client
        .call(
            "POST",
            &format!("/v2/models/{MODEL}/versions/{version}/infer"),
            Some(json!({
                "id": "demo",
                "inputs": [{"name": "input", "shape": [samples.len(), 1000], "datatype": "FP32", "data": data}]
            })),
        )
        .await?;
    let predictions = answer["outputs"][0]["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    println!("      POST /v2/models/{MODEL}/versions/{version}/infer with 3 rows of the dataset:");
    for ((_, y), p) in samples.iter().zip(&predictions) {
        println!(
            "        prediction {:>9.4}   target {y:>9.4}",
            p.as_f64().unwrap_or(f64::NAN)
        );
    }

    step(
        4,
        "scoring a file dropped under batch/input/ (as an S3 event would in AWS)",
    );
    let mut batch = table
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches(",y")
        .to_string();
    for (i, line) in table.lines().skip(1).take(1000).enumerate() {
        batch.push('\n');
        if i == 500 {
            batch.push_str("this row is malformed on purpose\n");
        }
        batch.push_str(line.rsplit_once(',').map_or(line, |(x, _)| x));
    }
    let input_key = format!("batch/input/{MODEL}:{version}/demo.csv");
    store
        .put(&input_key, Bytes::from(batch), PutCondition::None)
        .await?;
    println!("      put {input_key}");
    let target = maas_batch::BatchTarget::parse(&input_key)
        .map_err(|e| demo_error(format!("the demo's batch key: {e}")))?;
    let report_key = target.report_key.clone();
    let deadline = Instant::now() + Duration::from_secs(180);
    let report: Value = loop {
        if let Ok(object) = store.get(&report_key).await
            && let Ok(report) = serde_json::from_slice::<Value>(&object.body)
            && report["model_version"].as_u64() == Some(version)
        {
            break report;
        }
        if Instant::now() > deadline {
            server.stop().await?;
            return Err(demo_error(format!(
                "no {report_key} for version {version} after 3 minutes"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "      {report_key}: {} rows read, {} scored, {} rejected ({:.0} rows/s)",
        report["rows_read"],
        report["rows_scored"],
        report["rows_rejected"],
        report["rows_per_second"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "      the scored rows are in {}, the rejected one in {}",
        target.output_key, target.errors_key
    );

    step(5, "what to try next");
    println!(
        r#"      curl -s http://{addr}/v2/models/{MODEL}
      curl -s -X POST http://{addr}/v1/models/{MODEL}:predict -d '{{"instances": [[0.1, ...1000 values]]}}'
      python: import tritonclient.http as h; c = h.InferenceServerClient("{addr}")
              x = h.InferInput("input", [1, 1000], "FP32"); x.set_data_from_numpy(rows)
              print(c.infer("{MODEL}", [x]).as_numpy("output"))
      maas versions {MODEL}; maas audit {MODEL}; maas score {MODEL} rows.csv scored.csv
      cp rows.csv {store_url}/batch/input/{MODEL}/   (scored while this server runs)
      maas train examples/specs/binary.json --dataset churn.csv   (after maas generate-dataset binary churn.csv)"#
    );
    println!("\n      done in {:.0} s", started.elapsed().as_secs_f64());
    if args.exit {
        server.stop().await?;
        return Ok(Rendered(format!(
            "demo finished; model {MODEL} version {version}"
        )));
    }
    println!("      serving on http://{addr} until Ctrl-C");
    server.until_ctrl_c().await?;
    Ok(Rendered("stopped".into()))
}
