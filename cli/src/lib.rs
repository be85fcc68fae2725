//! The `maas` command line: push, list, promote and predict models in any store — the embedded
//! local default (`./maas-data`), a directory, or `s3://bucket/prefix`.
//!
//! `main.rs` only parses arguments and reports errors; every command is a function here that
//! returns what to print, so tests can call them and the binary stays thin.

mod demo;
mod input;
mod output;
pub mod remote;
mod score;
mod server;
pub mod train;

use std::path::PathBuf;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use maas_core::{AliasName, ManifestTemplate, ModelName, Version};
use maas_models::PushRequest;
use maas_registry::{Registry, VersionSelector};

pub use output::Rendered;

/// The store used when neither `--store` nor `MAAS_STORE` says otherwise.
pub const DEFAULT_STORE: &str = "./maas-data";

/// Serve models from a bucket: push, version, promote and predict.
#[derive(Debug, Parser)]
#[command(name = "maas", version, about, long_about = None)]
pub struct Cli {
    /// Where models live: a directory, file:///abs/path, s3://bucket[/prefix] or memory://.
    #[arg(long, global = true, env = "MAAS_STORE", default_value = DEFAULT_STORE)]
    pub store: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a model file (ONNX or safetensors) and store it as the model's next version.
    Push(PushArgs),
    /// List models.
    Models,
    /// List a model's versions with format, date, source and aliases.
    Versions {
        /// Model name.
        model: String,
    },
    /// Point an alias (e.g. production) at a version, recording who and why.
    Promote(PromoteArgs),
    /// Predict rows from a JSON or CSV file (or stdin) with a model version.
    Predict(PredictArgs),
    /// Show a model's audit trail (versions written, aliases moved).
    Audit {
        /// Model name.
        model: String,
    },
    /// Serve the Open Inference Protocol (and V1 :predict) on localhost until Ctrl-C.
    Serve(ServeArgs),
    /// Score a local CSV (with a header) or JSON-lines file: OUTPUT gets the rows with
    /// predictions, OUTPUT.errors.jsonl the rejected rows, OUTPUT.report.json the counts.
    Score(ScoreArgs),
    /// Train a new version from a job spec (JSON) with candle, on this machine; prints the
    /// version, its metrics and the promotion decision.
    Train(train::TrainArgs),
    /// The whole loop on this machine: generate data, train the seed MLP, serve it, predict over
    /// HTTP, score a dropped file; then keep serving until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Time training of the seed workload (samples/s at each batch size).
    BenchTrain(train::BenchTrainArgs),
    /// Write a generated dataset (CSV or JSON lines) with a known structure, for trying
    /// `maas train`.
    GenerateDataset(train::GenerateDatasetArgs),
}

/// `maas score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Model name.
    pub model: String,
    /// Input file (.csv with a header, or .jsonl).
    pub input: PathBuf,
    /// Output file (same format as the input).
    pub output: PathBuf,
    /// Use exactly this version.
    #[arg(long, conflicts_with = "alias")]
    pub version: Option<String>,
    /// Use the version this alias points at.
    #[arg(long)]
    pub alias: Option<String>,
}

/// `maas serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Models to load before accepting requests: model, model@alias or model:version.
    #[arg(long, value_delimiter = ',')]
    pub preload: Vec<String>,
    /// Score files that appear under the store's batch/input/, as the scoring function does on
    /// S3 events. `auto`: only for a local or in-memory store (in AWS the function does it).
    #[arg(long, value_enum, default_value_t = BatchWatch::Auto)]
    pub batch_watch: BatchWatch,
    /// Seconds between two listings of batch/input/.
    #[arg(long, default_value_t = 2.0)]
    pub batch_interval: f64,
}

/// When `maas serve` watches `batch/input/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BatchWatch {
    /// For local and in-memory stores.
    Auto,
    /// For any store, S3 too.
    Always,
    /// Never.
    Never,
}

/// `maas push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Model name: 1-64 characters of a-z, 0-9, '.', '_', '-'.
    pub model: String,
    /// The model file: .onnx or .safetensors.
    pub file: PathBuf,
    /// JSON with manifest parts: features, architecture, preprocess, postprocess, card, ...
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Also point this alias at the new version.
    #[arg(long)]
    pub alias: Option<String>,
    /// Why (recorded with the alias move).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `maas promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Model name.
    pub model: String,
    /// Version to point the alias at.
    pub version: String,
    /// The alias to move (e.g. production, staging).
    #[arg(long)]
    pub alias: String,
    /// Why: recorded in the audit trail.
    #[arg(long)]
    pub reason: Option<String>,
}

/// `maas predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model name.
    pub model: String,
    /// Use exactly this version.
    #[arg(long, conflicts_with = "alias")]
    pub version: Option<String>,
    /// Use the version this alias points at (`latest` is the newest).
    #[arg(long)]
    pub alias: Option<String>,
    /// Rows as JSON (a list of rows, or of objects keyed by feature) or CSV with a header; `-`
    /// for stdin.
    #[arg(long, short)]
    pub input: String,
    /// Call a deployment instead of the store: the stack's ApiUrl (or InferFunctionUrl) output.
    /// Requests are signed with SigV4 using the standard AWS credential chain.
    #[arg(long)]
    pub url: Option<String>,
    /// Region to sign for (default: from the URL's host name, else the AWS configuration).
    #[arg(long, requires = "url")]
    pub region: Option<String>,
    /// Service name to sign for (default: `execute-api`, or `lambda` for a function URL).
    #[arg(long, requires = "url")]
    pub sign_service: Option<String>,
    /// Send the request unsigned (a local `maas serve`, or an API without IAM authorisation).
    #[arg(long, requires = "url")]
    pub unsigned: bool,
}

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad name or version on the command line.
    #[error(transparent)]
    Invalid(#[from] maas_core::CoreError),
    /// The store could not be opened or failed.
    #[error(transparent)]
    Store(#[from] maas_store::StoreError),
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] maas_registry::RegistryError),
    /// The engine refused the model or the input.
    #[error(transparent)]
    Engine(#[from] maas_engine::EngineError),
    /// The model could not be pushed or loaded.
    #[error(transparent)]
    Models(#[from] maas_models::ModelsError),
    /// A local file could not be read.
    #[error("cannot read {path}: {message}")]
    File {
        /// The path.
        path: String,
        /// The OS's reason.
        message: String,
    },
    /// Input rows that can't be used.
    #[error("{0}")]
    Input(String),
    /// The inference server failed to start or run.
    #[error(transparent)]
    Serve(#[from] maas_inference::InferenceError),
    /// A training job failed (boxed: candle's errors are large).
    #[error(transparent)]
    Train(Box<maas_train::TrainError>),
    /// A deployment could not be called, or refused the request.
    #[error("{0}")]
    Remote(String),
    /// The listening socket failed.
    #[error("cannot listen on {addr}: {message}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS's reason.
        message: String,
    },
}

/// Who is acting: `MAAS_ACTOR`, else `USER@HOSTNAME`, else `unknown`.
pub fn actor() -> String {
    if let Ok(actor) = std::env::var("MAAS_ACTOR")
        && !actor.is_empty()
    {
        return actor;
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

impl From<maas_train::TrainError> for CliError {
    fn from(e: maas_train::TrainError) -> Self {
        Self::Train(Box::new(e))
    }
}

/// Runs one command against the store the arguments name.
pub async fn run(cli: Cli) -> Result<Rendered, CliError> {
    // Commands that never touch a store don't open (or create) one.
    match cli.command {
        Command::BenchTrain(args) => return train::bench(args, cli.json).await,
        Command::GenerateDataset(args) => return train::generate_dataset(args),
        Command::Predict(args) if args.url.is_some() => return predict_remote(args).await,
        _ => {}
    }
    let store = maas_store::open(&cli.store).await?;
    let registry = Registry::new(store);
    let json = cli.json;
    match cli.command {
        Command::Push(args) => push(&registry, args, json).await,
        Command::Models => output::models(&registry, json).await,
        Command::Versions { model } => {
            output::versions(&registry, &ModelName::new(model)?, json).await
        }
        Command::Promote(args) => promote(&registry, args, json).await,
        Command::Predict(args) => predict(&registry, args).await,
        Command::Audit { model } => output::audit(&registry, &ModelName::new(model)?, json).await,
        Command::Serve(args) => serve(&cli.store, args).await,
        Command::Score(args) => {
            let model = ModelName::new(args.model)?;
            let selector = selector(args.version, args.alias)?;
            score::score_files(&registry, &model, &selector, args.input, args.output, json).await
        }
        Command::Train(args) => {
            train::train(&cli.store, registry.store().clone(), args, actor(), json).await
        }
        Command::Demo(args) => {
            demo::demo(&cli.store, registry.store().clone(), args, actor()).await
        }
        Command::BenchTrain(_) | Command::GenerateDataset(_) => {
            unreachable!("handled before the store is opened")
        }
    }
}

/// Runs the same router as the Lambda function on `args.addr`, over the store the CLI names.
async fn serve(store: &str, args: ServeArgs) -> Result<Rendered, CliError> {
    let server = server::start(store, &args).await?;
    eprintln!(
        "maas serving {store} on http://{} (Ctrl-C to stop)",
        server.addr
    );
    server.until_ctrl_c().await?;
    Ok(Rendered("stopped".into()))
}

async fn push(registry: &Registry, args: PushArgs, json: bool) -> Result<Rendered, CliError> {
    let model = ModelName::new(args.model)?;
    let alias = args.alias.map(AliasName::new).transpose()?;
    let template = match &args.manifest {
        Some(path) => {
            serde_json::from_slice::<ManifestTemplate>(&read_file(path)?).map_err(|e| {
                CliError::Input(format!(
                    "manifest {} is not valid: {e}; see README.md for the fields you can set",
                    path.display()
                ))
            })?
        }
        None => ManifestTemplate::default(),
    };
    let bytes = read_file(&args.file)?;
    let outcome = maas_models::push(
        registry,
        PushRequest {
            model,
            file_name: args.file.display().to_string(),
            bytes: Bytes::from(bytes),
            template,
            actor: actor(),
            alias,
            reason: args.reason,
        },
    )
    .await?;
    Ok(output::pushed(&outcome, json))
}

async fn promote(registry: &Registry, args: PromoteArgs, json: bool) -> Result<Rendered, CliError> {
    let model = ModelName::new(args.model)?;
    let version: Version = args.version.parse()?;
    let alias = AliasName::new(args.alias)?;
    let who = actor();
    let reason = args
        .reason
        .unwrap_or_else(|| format!("promoted by {who} with `maas promote`"));
    let moved = registry
        .set_alias(
            &model,
            &alias,
            version,
            &who,
            Some(reason),
            serde_json::Value::Null,
        )
        .await?;
    Ok(output::promoted(&model, &alias, &moved, json))
}

fn selector(version: Option<String>, alias: Option<String>) -> Result<VersionSelector, CliError> {
    Ok(match (version, alias) {
        (Some(v), _) => VersionSelector::Version(v.parse()?),
        (None, Some(a)) => VersionSelector::Alias(a),
        (None, None) => VersionSelector::Default,
    })
}

/// Reads `--input`: a file, or stdin for `-`.
fn read_input(input: &str) -> Result<Vec<u8>, CliError> {
    if input == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|e| {
            CliError::File {
                path: "stdin".into(),
                message: e.to_string(),
            }
        })?;
        Ok(buf)
    } else {
        read_file(std::path::Path::new(input))
    }
}

async fn predict(registry: &Registry, args: PredictArgs) -> Result<Rendered, CliError> {
    let model = ModelName::new(args.model)?;
    let selector = selector(args.version, args.alias)?;
    let raw = read_input(&args.input)?;
    let loaded = maas_models::load(registry, &model, &selector).await?;
    let (inputs, rows) = input::tensors_for(&loaded, &args.input, &raw)?;
    let answers = loaded.answer(inputs, rows)?;
    Ok(output::predictions(&loaded, &answers))
}

/// `maas predict --url`: the same rows, sent to a deployment's V1 predict route.
async fn predict_remote(args: PredictArgs) -> Result<Rendered, CliError> {
    let model = ModelName::new(args.model)?;
    let version = args
        .version
        .map(|v| v.parse::<Version>().map(|v| v.to_string()))
        .transpose()?;
    // `latest` selects but can't be moved, so it isn't an `AliasName`.
    let alias = match args.alias {
        Some(a) if a == "latest" => Some(a),
        Some(a) => Some(AliasName::new(a)?.as_str().to_string()),
        None => None,
    };
    let url = args.url.unwrap_or_default();
    let target =
        remote::resolve_target(&url, args.region, args.sign_service, args.unsigned).await?;
    let raw = read_input(&args.input)?;
    remote::predict(
        &target,
        remote::RemotePredict {
            model: model.as_str(),
            version: version.as_deref(),
            alias: alias.as_deref(),
            source: &args.input,
            raw: &raw,
        },
    )
    .await
}
