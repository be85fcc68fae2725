//! `maas serve` answers NVIDIA's Python `tritonclient[http]` in both its JSON mode (which posts
//! without a Content-Type) and its default binary mode (Inference-Header-Content-Length).

use std::process::Stdio;
use std::time::{Duration, Instant};

use maas_tests::fixtures::seed_dir;

fn python() -> std::path::PathBuf {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_json_and_binary_modes() {
    let work = tempfile::tempdir().expect("temp dir");
    let store = work.path().join("maas-data");
    let maas = env!("CARGO_BIN_EXE_maas");
    let pushed = std::process::Command::new(maas)
        .args(["--store"])
        .arg(&store)
        .args(["push", "seed"])
        .arg(seed_dir().join("model.onnx"))
        .output()
        .expect("push");
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = tokio::process::Command::new(maas)
        .arg("--store")
        .arg(&store)
        .args(["serve", "--addr", &addr, "--preload", "seed"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("maas serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(Instant::now() < deadline, "maas serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let client = tokio::process::Command::new(python())
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/triton_client.py"),
        )
        .arg(&addr)
        .arg("seed")
        .arg(seed_dir().join("reference.json"))
        .output()
        .await
        .expect("run python");
    let stdout = String::from_utf8_lossy(&client.stdout);
    let stderr = String::from_utf8_lossy(&client.stderr);
    assert!(
        client.status.success(),
        "tritonclient failed (install it with scripts/test, which sets up .venv):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("binary_data=False"), "{stdout}");
    assert!(stdout.contains("binary_data=True"), "{stdout}");
    server.kill().await.expect("stop server");
}
