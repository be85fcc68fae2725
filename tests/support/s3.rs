//! A real S3 API on 127.0.0.1: s3s-fs over a temporary directory, with SigV4 authentication,
//! served by hyper on an ephemeral port for the lifetime of the [`S3Endpoint`].

use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_s3::config::{Credentials, Region};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use maas_store::S3Store;
use tokio::net::TcpListener;

/// Access key the endpoint accepts.
pub const ACCESS_KEY: &str = "maas-test-access";
/// Secret key the endpoint accepts.
pub const SECRET_KEY: &str = "maas-test-secret";
/// Region clients sign for.
pub const REGION: &str = "us-east-1";

/// An SDK client for a local S3 API at `url` (path-style, static test credentials).
fn client_for(url: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new(REGION))
        .endpoint_url(url)
        .force_path_style(true)
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A running s3s-fs endpoint with one bucket.
pub struct S3Endpoint {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bucket created for the test.
    pub bucket: String,
    /// The directory holding the bucket's files.
    pub root: PathBuf,
    _temp: Option<tempfile::TempDir>,
    server: tokio::task::JoinHandle<()>,
}

impl S3Endpoint {
    /// Starts s3s-fs on an ephemeral port with an empty bucket named `bucket`.
    pub async fn start(bucket: &str) -> Self {
        let temp = tempfile::tempdir().expect("temp dir for s3s-fs");
        let mut endpoint = Self::serve(temp.path(), bucket, "127.0.0.1:0").await;
        endpoint._temp = Some(temp);
        endpoint
    }

    /// Serves the files under `root` (one folder per bucket; `bucket` is created if missing) on
    /// `addr` until dropped.
    pub async fn serve(root: &std::path::Path, bucket: &str, addr: &str) -> Self {
        std::fs::create_dir_all(root.join(bucket)).expect("bucket directory");
        let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs over the directory");
        let service = {
            let mut builder = s3s::service::S3ServiceBuilder::new(fs);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            builder.build()
        };
        let listener = TcpListener::bind(addr).await.expect("bind the S3 address");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http.serve_connection(TokioIo::new(socket), service.clone());
                let conn = conn.into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            bucket: bucket.to_string(),
            root: root.to_path_buf(),
            _temp: None,
            server,
        }
    }

    /// An SDK client for the endpoint (path-style, static test credentials).
    pub fn client(&self) -> aws_sdk_s3::Client {
        client_for(&self.url)
    }

    /// A maas store on the bucket under `prefix`.
    pub fn store(&self, prefix: &str) -> Arc<S3Store> {
        Arc::new(S3Store::new(self.client(), &self.bucket, prefix))
    }

    /// Environment variables that point the AWS chain (and so the `maas` binary) at the endpoint.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_S3", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }
}

impl Drop for S3Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// moto's S3 server, for tests of concurrent conditional writes (s3s-fs checks conditions
/// without a lock, so only one-at-a-time behaviour can be tested against it).
pub struct MotoServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bucket created for the test.
    pub bucket: String,
    child: std::process::Child,
}

/// Where the `moto_server` executable is: `$MOTO_SERVER`, the workspace's `.venv`, or `PATH`.
fn moto_executable() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

impl MotoServer {
    /// Starts moto on a free port and creates `bucket`.
    pub async fn start(bucket: &str) -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().expect("addr").port()
        };
        // moto's own server is threaded and can let two compare-and-swaps on one ETag both
        // win; `moto_serial.py` runs the same app one request at a time, as atomic as S3. It
        // runs on the Python that has moto: the one beside `moto_server`.
        let exe = moto_executable();
        let python = exe
            .parent()
            .map(|dir| dir.join("python"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("python3"));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/moto_serial.py");
        let child = std::process::Command::new(&python)
            .arg(&script)
            .args(["127.0.0.1", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start moto with {} ({e}); install moto with `pip install 'moto[server]'` or run scripts/test, which sets up .venv",
                    python.display()
                )
            });
        let server = Self {
            url: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_string(),
            child,
        };
        let client = server.client();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match client.create_bucket().bucket(bucket).send().await {
                Ok(_) => break,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("moto did not come up on {}: {e:?}", server.url)
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        server
    }

    /// An SDK client for moto.
    pub fn client(&self) -> aws_sdk_s3::Client {
        client_for(&self.url)
    }

    /// A maas store on the bucket under `prefix`.
    pub fn store(&self, prefix: &str) -> Arc<S3Store> {
        Arc::new(S3Store::new(self.client(), &self.bucket, prefix))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
