//! The Lambda runtime emulator of `cargo lambda` for end-to-end tests of the function binaries.
//!
//! `cargo lambda watch --only-lambda-apis` serves the Lambda runtime API, the invoke API and the
//! function URL routes without building anything; the test then starts the binary that `cargo
//! test` already built (`CARGO_BIN_EXE_…`) against that runtime API, exactly as Lambda starts a
//! `provided.al2023` bootstrap. `cargo lambda invoke --data-file` drives it. The emulator stops
//! when its standard input closes, so the handle keeps a pipe to it open.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (where `.venv` and `Cargo.toml` live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo-lambda` from the workspace's `.venv` (scripts/test installs it there) or from PATH.
pub fn cargo_lambda() -> PathBuf {
    let venv = workspace_root().join(".venv/bin/cargo-lambda");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("cargo-lambda")
    }
}

/// A running emulator and the function binaries attached to it; everything is killed on drop.
pub struct LambdaEmulator {
    emulator: Child,
    _stdin: ChildStdin,
    functions: Vec<Child>,
    port: u16,
    logs: tempfile::TempDir,
}

/// What `cargo lambda invoke` printed.
#[derive(Debug)]
pub struct Invocation {
    /// Whether the invocation succeeded (the handler returned `Ok`).
    pub ok: bool,
    /// The function's response document (stdout).
    pub stdout: String,
    /// The error report, for a failed invocation (stderr).
    pub stderr: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl LambdaEmulator {
    /// Starts the emulator on a free port of 127.0.0.1 and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = free_port();
        let logs = tempfile::tempdir().expect("log dir");
        let log = std::fs::File::create(logs.path().join("emulator.log")).expect("log file");
        let mut emulator = Command::new(cargo_lambda())
            .current_dir(workspace_root())
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start `cargo lambda watch` ({e}); install it with \
                     `pip install cargo-lambda` or run scripts/test"
                )
            });
        let stdin = emulator.stdin.take().expect("piped stdin");
        let this = Self {
            emulator,
            _stdin: stdin,
            functions: Vec::new(),
            port,
            logs,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(this.addr()).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the emulator never listened:\n{}",
                this.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        this
    }

    /// `127.0.0.1:port` of the emulator (invoke API and function URLs).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts a function binary against the emulator's runtime API, with the environment Lambda
    /// gives a function plus `env`. Its output goes to the log (see [`Self::log_text`]).
    pub fn start_function(&mut self, binary: &Path, env: &[(String, String)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.path().join("function.log"))
            .expect("function log");
        let child = Command::new(binary)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://{}/.rt", self.addr()),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()));
        self.functions.push(child);
    }

    /// `cargo lambda invoke --data-file FILE`: one invocation, its response or its error.
    /// Panics with the logs if a function binary exits or the invocation takes over 5 minutes.
    pub fn invoke_file(&mut self, data_file: &Path) -> Invocation {
        let mut invoke = Command::new(cargo_lambda())
            .current_dir(workspace_root())
            .args(["lambda", "invoke", "-A", "127.0.0.1", "-P"])
            .arg(self.port.to_string())
            .arg("--data-file")
            .arg(data_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cargo lambda invoke");
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if invoke.try_wait().expect("wait for invoke").is_some() {
                break;
            }
            let exited = self
                .functions
                .iter_mut()
                .any(|f| matches!(f.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                let _ = invoke.kill();
                panic!(
                    "{}:\n{}",
                    if exited {
                        "the function binary exited"
                    } else {
                        "the invocation took over 5 minutes"
                    },
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = invoke.wait_with_output().expect("invoke output");
        Invocation {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Everything the emulator and the functions printed so far.
    pub fn log_text(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.logs.path().join(name)).unwrap_or_default();
        format!("{}{}", read("emulator.log"), read("function.log"))
    }
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        for child in self
            .functions
            .iter_mut()
            .chain(std::iter::once(&mut self.emulator))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
