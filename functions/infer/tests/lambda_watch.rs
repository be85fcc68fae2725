//! The real `infer` Lambda binary under `cargo lambda watch` (the Lambda runtime emulator),
//! reading models from s3s-fs on 127.0.0.1 and called through the emulated function URL.
//! Checks PyTorch's reference outputs and that cold-start timings and per-request latency
//! reach the logs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use maas_core::{ManifestTemplate, ModelName};
use maas_engine::{PushRequest, push};
use maas_registry::Registry;
use maas_tests::S3Endpoint;
use maas_tests::fixtures::{assert_matches_reference, seed_file, seed_reference};
use serde_json::{Value, json};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `cargo-lambda` from the workspace's .venv (scripts/test installs it) or PATH.
fn cargo_lambda_path() -> String {
    let venv_bin = workspace_root().join(".venv/bin");
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{}:{path}", venv_bin.display())
}

/// The emulator and everything it started. `cargo lambda watch` puts the function in process
/// groups of its own, so stopping it means walking the process tree.
struct Watch {
    child: std::process::Child,
    log: PathBuf,
}

/// Every descendant of `pid`, children before their parents' siblings, read from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // The command name is in parentheses and may hold spaces: the ppid follows the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (p, pp) in &parent_of {
            if *pp == parent {
                out.push(*p);
                frontier.push(*p);
            }
        }
    }
    out
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut victims = descendants(self.child.id());
        victims.reverse();
        for pid in victims {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watch {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A tiny HTTP/1.1 client over tokio, so the test needs no HTTP client dependency.
mod reqwest_like {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub struct Client {
        pub addr: String,
    }

    impl Client {
        pub async fn request(
            &self,
            method: &str,
            path: &str,
            body: Vec<u8>,
            headers: &[(&str, String)],
        ) -> (u16, Vec<(String, String)>, Vec<u8>) {
            let mut stream = tokio::net::TcpStream::connect(&self.addr)
                .await
                .expect("connect");
            let mut head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
                self.addr,
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await.expect("write head");
            stream.write_all(&body).await.expect("write body");
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.expect("read");
            let split = raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("header end");
            let head = String::from_utf8_lossy(&raw[..split]).to_string();
            let mut lines = head.lines();
            let status: u16 = lines
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|s| s.parse().ok())
                .expect("status");
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let mut body = raw[split + 4..].to_vec();
            if headers
                .iter()
                .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
            {
                body = dechunk(&body);
            }
            (status, headers, body)
        }

        pub async fn post(
            &self,
            path: &str,
            body: Vec<u8>,
            headers: &[(&str, String)],
        ) -> (u16, Vec<(String, String)>, Vec<u8>) {
            self.request("POST", path, body, headers).await
        }
    }

    fn dechunk(mut raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..line_end]).trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
            raw = &raw[line_end + 2 + size + 2..];
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_binary_under_cargo_lambda_watch_against_s3s_fs() {
    // GIVEN the seed model pushed to a bucket on a local S3 endpoint
    let s3 = S3Endpoint::start("lambda-models").await;
    let registry = Registry::new(s3.store("prod"));
    push(
        &registry,
        PushRequest {
            model: ModelName::new("seed").expect("name"),
            file_name: "model.onnx".into(),
            bytes: Bytes::from(seed_file("model.onnx")),
            template: ManifestTemplate::default(),
            actor: "test".into(),
            alias: None,
            reason: None,
        },
    )
    .await
    .expect("push");

    // AND the infer binary running under the Lambda emulator, configured like the template does
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let logs = tempfile::tempdir().expect("log dir outside the watched tree");
    let log = logs.path().join("watch.log");
    let mut env_vars = vec![
        "MAAS_STORE=s3://lambda-models/prod".to_string(),
        "MAAS_PRELOAD=seed".to_string(),
        "MAAS_EMF=1".to_string(),
        "AWS_LAMBDA_LOG_FORMAT=JSON".to_string(),
        "RUST_LOG=info".to_string(),
    ];
    env_vars.extend(s3.env().into_iter().map(|(k, v)| format!("{k}={v}")));
    let venv_cargo_lambda = workspace_root().join(".venv/bin/cargo-lambda");
    let program = if venv_cargo_lambda.exists() {
        venv_cargo_lambda
    } else {
        PathBuf::from("cargo-lambda")
    };
    let mut command = std::process::Command::new(program);
    command
        .current_dir(workspace_root())
        .env("PATH", cargo_lambda_path())
        .args([
            "lambda",
            "watch",
            "--ignore-changes",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .args(["-p", "maas-infer-function", "--bin", "infer"]);
    for var in &env_vars {
        command.args(["--env-var", var]);
    }
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = command
        .stdout(Stdio::from(log_file.try_clone().expect("clone")))
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap_or_else(|e| panic!("could not start `cargo lambda watch` ({e}); install it with `pip install cargo-lambda` or run scripts/test"));
    let watch = Watch { child, log };

    let client = reqwest_like::Client {
        addr: format!("127.0.0.1:{port}"),
    };
    // The first invocation builds (a no-op after `cargo test` built the binary) and starts it.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if tokio::net::TcpStream::connect(&client.addr).await.is_ok() {
            let (status, _, _) = client
                .request("GET", "/lambda-url/infer/v2/health/ready", Vec::new(), &[])
                .await;
            if status == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the function never became ready:\n{}",
            watch.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // WHEN the reference rows are posted through the function URL, as JSON and as binary
    let reference = seed_reference();
    let body = json!({"id": "watch-1", "inputs": [{"name": "input", "shape": [8, 1000], "datatype": "FP32", "data": reference.inputs}]});
    let (status, _, raw) = client
        .post(
            "/lambda-url/infer/v2/models/seed/infer",
            body.to_string().into_bytes(),
            &[("Content-Type", "application/json".into())],
        )
        .await;
    assert_eq!(
        status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&raw),
        watch.log_text()
    );
    let doc: Value = serde_json::from_slice(&raw).expect("JSON response");
    assert_eq!(doc["id"], "watch-1");
    assert_eq!(doc["model_version"], "1");
    let got: Vec<f32> = doc["outputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("n") as f32)
        .collect();
    // THEN PyTorch's outputs come back
    assert_matches_reference(&got, 1e-4);

    let header = json!({
        "inputs": [{"name": "input", "shape": [8, 1000], "datatype": "FP32", "parameters": {"binary_data_size": 32000}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut binary = header.clone().into_bytes();
    for v in reference.inputs.iter().flatten() {
        binary.extend_from_slice(&v.to_le_bytes());
    }
    let (status, headers, raw) = client
        .post(
            "/lambda-url/infer/v2/models/seed/infer",
            binary,
            &[
                ("Content-Type", "application/octet-stream".into()),
                ("Inference-Header-Content-Length", header.len().to_string()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{}", watch.log_text());
    let n: usize = headers
        .iter()
        .find(|(k, _)| k == "inference-header-content-length")
        .map(|(_, v)| v.parse().expect("number"))
        .expect("binary response header");
    let values: Vec<f32> = raw[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_matches_reference(&values, 1e-4);

    let (status, _, raw) = client
        .post(
            "/lambda-url/infer/v2/models/missing/infer",
            b"{}".to_vec(),
            &[],
        )
        .await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&raw));

    // AND the logs carry the cold start (init, fetch, build) and per-request latency, as JSON
    // lines and as CloudWatch EMF metrics.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = watch.log_text();
    let has = |needle: &str| text.lines().any(|l| l.contains(needle));
    assert!(
        has("init complete") && has("\"init_ms\""),
        "init timing missing:\n{text}"
    );
    assert!(
        has("\"fetch_ms\"") && has("\"build_ms\""),
        "load timings missing:\n{text}"
    );
    assert!(
        has("\"latency_ms\"") && has("/v2/models/seed/infer"),
        "request log missing:\n{text}"
    );
    assert!(has("\"CloudWatchMetrics\""), "EMF lines missing:\n{text}");
}
