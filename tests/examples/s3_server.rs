//! Serves a folder as an S3 API on 127.0.0.1 (s3s-fs with SigV4), for running the Lambda
//! binaries and the CLI against "S3" by hand or from scripts:
//!
//! ```sh
//! cargo run --release -p maas-tests --example s3_server -- DIR BUCKET [ADDR]
//! ```
//!
//! Prints the environment that points the AWS chain at it (`export` lines), then serves until
//! killed.

use maas_tests::S3Endpoint;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(bucket)) = (args.first(), args.get(1)) else {
        eprintln!("usage: s3_server DIR BUCKET [127.0.0.1:PORT]");
        std::process::exit(2);
    };
    let addr = args.get(2).map(String::as_str).unwrap_or("127.0.0.1:0");
    let endpoint = S3Endpoint::serve(std::path::Path::new(dir), bucket, addr).await;
    for (k, v) in endpoint.env() {
        println!("export {k}={v}");
    }
    let _ = tokio::signal::ctrl_c().await;
}
