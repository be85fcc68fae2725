//! Soak: `maas serve` under a mixed load from a real load generator (wrk, one process per kind of
//! request, all at once) for a bounded time — valid rows (JSON, binary tensors, V1), malformed
//! bodies, unknown models and versions, hostile names and shapes, NaN. Every valid request must
//! succeed (no 5xx, no 4xx), every bad one must be a 4xx, and the server's resident memory must
//! stay flat after warm-up.
//!
//! `MAAS_SOAK_SECS` sets the duration (default 20 s in CI); `MAAS_SOAK_SECS=600 cargo test -p
//! maas-cli --test integration soak -- --nocapture` is the long run. Needs `wrk` on the PATH
//! (`apt-get install wrk`).

use std::path::Path;
use std::time::Duration;

use maas_tests::fixtures::{seed_dir, seed_reference};

/// One kind of request and the status class every answer to it must have.
struct Kind {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    expect: u16,
}

fn kinds() -> Vec<Kind> {
    let reference = seed_reference();
    let row: Vec<f32> = reference.inputs[0].clone();
    let json_infer = serde_json::json!({
        "inputs": [{"name": "input", "shape": [1, 1000], "datatype": "FP32", "data": row}]
    })
    .to_string();
    let header = serde_json::json!({
        "inputs": [{"name": "input", "shape": [8, 1000], "datatype": "FP32", "parameters": {"binary_data_size": 8 * 1000 * 4}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut binary = header.clone().into_bytes();
    for v in reference.inputs.iter().flatten() {
        binary.extend_from_slice(&v.to_le_bytes());
    }
    let v1 = serde_json::json!({ "instances": [row] }).to_string();
    let mut nan_binary = serde_json::json!({
        "inputs": [{"name": "input", "shape": [1, 1000], "datatype": "FP32", "parameters": {"binary_data_size": 4000}}]
    })
    .to_string()
    .into_bytes();
    let nan_header_len = nan_binary.len();
    for i in 0..1000 {
        let v = if i == 17 { f32::NAN } else { 0.5f32 };
        nan_binary.extend_from_slice(&v.to_le_bytes());
    }
    let json = |s: &str| vec![("Content-Type", s.to_string())];
    vec![
        Kind {
            name: "infer-json",
            method: "POST",
            path: "/v2/models/seed/infer".into(),
            headers: json("application/json"),
            body: json_infer.clone().into_bytes(),
            expect: 200,
        },
        Kind {
            name: "infer-binary",
            method: "POST",
            path: "/v2/models/seed/versions/1/infer".into(),
            headers: vec![
                ("Content-Type", "application/octet-stream".into()),
                ("Inference-Header-Content-Length", header.len().to_string()),
            ],
            body: binary,
            expect: 200,
        },
        Kind {
            name: "v1-predict",
            method: "POST",
            path: "/v1/models/seed:predict".into(),
            headers: json("application/json"),
            body: v1.into_bytes(),
            expect: 200,
        },
        Kind {
            name: "malformed-json",
            method: "POST",
            path: "/v2/models/seed/infer".into(),
            headers: json("application/json"),
            body: b"{\"inputs\": [{\"name\": \"input\", \"shape\": [1, 10".to_vec(),
            expect: 400,
        },
        Kind {
            name: "unknown-model",
            method: "POST",
            path: "/v2/models/nosuchmodel/infer".into(),
            headers: json("application/json"),
            body: json_infer.clone().into_bytes(),
            expect: 404,
        },
        Kind {
            name: "unknown-version",
            method: "POST",
            path: "/v2/models/seed/versions/987654/infer".into(),
            headers: json("application/json"),
            body: json_infer.into_bytes(),
            expect: 404,
        },
        Kind {
            name: "hostile-name",
            method: "GET",
            path: "/v2/models/..%2F..%2Fetc/ready".into(),
            headers: Vec::new(),
            body: Vec::new(),
            expect: 400,
        },
        Kind {
            name: "hostile-shape",
            method: "POST",
            path: "/v2/models/seed/infer".into(),
            headers: json("application/json"),
            body: br#"{"inputs": [{"name": "input", "shape": [4611686018427387904, 0], "datatype": "FP32", "data": []}]}"#.to_vec(),
            expect: 400,
        },
        Kind {
            name: "nan-binary",
            method: "POST",
            path: "/v2/models/seed/infer".into(),
            headers: vec![
                ("Content-Type", "application/octet-stream".into()),
                ("Inference-Header-Content-Length", nan_header_len.to_string()),
            ],
            body: nan_binary,
            expect: 400,
        },
    ]
}

/// A wrk script that sends `kind` over and over and counts answers by status.
fn script(kind: &Kind, body_path: &Path) -> String {
    let headers: String = kind
        .headers
        .iter()
        .map(|(k, v)| format!("wrk.headers[\"{k}\"] = \"{v}\"\n"))
        .collect();
    format!(
        r#"
local f = assert(io.open("{body}", "rb"))
wrk.body = f:read("*all")
f:close()
wrk.method = "{method}"
wrk.path = "{path}"
{headers}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {{}} end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {{}}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("counts")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {{}}
  for status, n in pairs(total) do table.insert(parts, '"' .. status .. '": ' .. n) end
  io.write("STATUS {{" .. table.concat(parts, ", ") .. "}}\n")
end
"#,
        body = body_path.display(),
        method = kind.method,
        path = kind.path,
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the server's /proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_under_a_mixed_load_answers_every_request_rightly_with_flat_memory() {
    let secs: u64 = std::env::var("MAAS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    assert!(
        std::process::Command::new("wrk")
            .arg("--version")
            .output()
            .is_ok(),
        "the soak test needs wrk: apt-get install wrk"
    );
    let work = tempfile::tempdir().expect("dir");
    let store = work.path().join("store");
    let store_s = store.to_str().expect("utf-8");
    let onnx = seed_dir().join("model.onnx");
    let push = std::process::Command::new(env!("CARGO_BIN_EXE_maas"))
        .args([
            "--store",
            store_s,
            "push",
            "seed",
            onnx.to_str().expect("utf-8"),
        ])
        .env_remove("MAAS_STORE")
        .output()
        .expect("push");
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_maas"))
        .args([
            "--store",
            store_s,
            "serve",
            "--addr",
            &addr,
            "--batch-watch",
            "never",
        ])
        .env_remove("MAAS_STORE")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("maas serve");
    let pid = server.id().expect("pid");
    crate::cli::wait_for_port(&addr).await;

    // Warm-up: a fifth of the time (at least 3 s), then the RSS baseline, then the rest.
    let kinds = kinds();
    let mut runs = Vec::new();
    for kind in &kinds {
        let body = work.path().join(format!("{}.body", kind.name));
        std::fs::write(&body, &kind.body).expect("body");
        let lua = work.path().join(format!("{}.lua", kind.name));
        std::fs::write(&lua, script(kind, &body)).expect("script");
        let child = tokio::process::Command::new("wrk")
            .args(["-t1", "-c2", "--timeout", "5s"])
            .arg(format!("-d{secs}s"))
            .arg("-s")
            .arg(&lua)
            .arg(format!("http://{addr}"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("wrk");
        runs.push((kind, child));
    }
    let warm = Duration::from_secs((secs / 5).max(3));
    tokio::time::sleep(warm).await;
    let rss_after_warmup = rss_kib(pid);
    let mut failures = Vec::new();
    let mut total = 0u64;
    for (kind, child) in runs {
        let out = child.wait_with_output().await.expect("wrk ran");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("STATUS "))
            .unwrap_or_else(|| panic!("{}: no status line in {stdout}", kind.name));
        let counts: std::collections::BTreeMap<String, u64> =
            serde_json::from_str(line).expect("status counts");
        let answered: u64 = counts.values().sum();
        total += answered;
        let wrong: Vec<_> = counts
            .iter()
            .filter(|(status, _)| **status != kind.expect.to_string())
            .collect();
        eprintln!("soak {:<16} {answered:>7} answers {counts:?}", kind.name);
        if answered == 0 || !wrong.is_empty() {
            failures.push(format!(
                "{}: expected {} only, got {counts:?}",
                kind.name, kind.expect
            ));
        }
    }
    let rss_end = rss_kib(pid);
    server.kill().await.expect("stop");
    eprintln!(
        "soak: {total} requests in {secs} s; RSS {rss_after_warmup} KiB after warm-up, {rss_end} KiB at the end"
    );
    assert!(failures.is_empty(), "{failures:#?}");
    // Flat: allocator noise only, not growth with the requests served.
    assert!(
        rss_end <= rss_after_warmup + rss_after_warmup / 10 + 8 * 1024,
        "RSS grew from {rss_after_warmup} KiB to {rss_end} KiB"
    );
}
