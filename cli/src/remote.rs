//! Calling a deployed maas: `maas predict --url https://…` sends the rows to the inference API's
//! V1 `:predict` route, signed with AWS Signature Version 4 (credentials from the standard AWS
//! chain), the way API Gateway's and function URLs' IAM authorisation expect.
//!
//! The signature covers the method, path, query, the `host`, `content-type` and `x-amz-*`
//! headers, and the SHA-256 of the body (sent as `x-amz-content-sha256`), so a request changed on
//! the way is refused by the endpoint.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use serde_json::{Map, Value, json};

use crate::{CliError, Rendered};

/// How a request to a deployment is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningScope {
    /// AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// The signing name of the service: `execute-api` for an HTTP API, `lambda` for a function
    /// URL.
    pub service: String,
}

/// The region and service an AWS endpoint's host name implies:
/// `{id}.execute-api.{region}.amazonaws.com` and `{id}.lambda-url.{region}.on.aws`.
pub fn scope_from_host(host: &str) -> Option<SigningScope> {
    let parts: Vec<&str> = host.split('.').collect();
    let find = |marker: &str, service: &str| {
        let at = parts.iter().position(|p| *p == marker)?;
        let region = parts.get(at + 1)?;
        (!region.is_empty()).then(|| SigningScope {
            region: (*region).to_string(),
            service: service.to_string(),
        })
    };
    find("execute-api", "execute-api").or_else(|| find("lambda-url", "lambda"))
}

/// Signs `request` in place: adds `x-amz-date`, `x-amz-content-sha256`, the session token if
/// the credentials have one, and `authorization`.
pub fn sign_request(
    request: &mut Request<Bytes>,
    credentials: &Credentials,
    scope: &SigningScope,
    time: SystemTime,
) -> Result<(), CliError> {
    let signing_error = |e: &dyn std::fmt::Display| CliError::Remote(format!("cannot sign: {e}"));
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&scope.region)
        .name(&scope.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| signing_error(&e))?
        .into();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .map_err(|e| signing_error(&e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| signing_error(&e))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

/// Where and how `maas predict --url` sends its request.
#[derive(Debug, Clone)]
pub struct RemoteTarget {
    /// The deployment's base URL (the stack's `ApiUrl` or `InferFunctionUrl` output).
    pub url: String,
    /// Region and service to sign for; `None` sends the request unsigned.
    pub scope: Option<SigningScope>,
}

/// Works out the signing scope for `url`: explicit `region`/`service` win, then the host name,
/// then the AWS chain's region with `execute-api`.
pub async fn resolve_target(
    url: &str,
    region: Option<String>,
    service: Option<String>,
    unsigned: bool,
) -> Result<RemoteTarget, CliError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| CliError::Input(format!("--url {url:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(CliError::Input(format!(
            "--url {url:?} must be an http(s) URL, e.g. the stack's ApiUrl output"
        )));
    }
    if unsigned {
        return Ok(RemoteTarget {
            url: url.to_string(),
            scope: None,
        });
    }
    let from_host = uri.host().and_then(scope_from_host);
    let region = match region.or_else(|| from_host.as_ref().map(|s| s.region.clone())) {
        Some(r) => r,
        None => aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| {
                CliError::Input(format!(
                    "cannot tell the AWS region to sign for from {url:?}; pass --region (or set AWS_REGION)"
                ))
            })?,
    };
    let service = service
        .or_else(|| from_host.map(|s| s.service))
        .unwrap_or_else(|| "execute-api".to_string());
    Ok(RemoteTarget {
        url: url.to_string(),
        scope: Some(SigningScope { region, service }),
    })
}

/// Credentials from the standard AWS chain (environment, profile, SSO, container, instance).
async fn chain_credentials() -> Result<Credentials, CliError> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let provider = config
        .credentials_provider()
        .ok_or_else(|| CliError::Remote("no AWS credentials provider is configured".to_string()))?;
    provider.provide_credentials().await.map_err(|e| {
        CliError::Remote(format!(
            "no AWS credentials to sign with ({e}); set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or pass --unsigned for a server without IAM authorisation"
        ))
    })
}

/// The V1 predict path for a model, version or alias.
pub fn predict_path(model: &str, version: Option<&str>, alias: Option<&str>) -> String {
    match (version, alias) {
        (Some(v), _) => format!("/v1/models/{model}/versions/{v}:predict"),
        (None, Some(a)) => format!("/v1/models/{model}:predict?alias={a}"),
        (None, None) => format!("/v1/models/{model}:predict"),
    }
}

/// Turns the user's rows into V1 `instances`: JSON passes through (a bare list is wrapped, a
/// single row becomes one instance); CSV rows become objects keyed by the header, so the server
/// picks the model's features by name.
pub fn instances_from(source: &str, raw: &[u8]) -> Result<Value, CliError> {
    let first = raw.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if source.ends_with(".csv") || !matches!(first, Some(b'[' | b'{')) {
        return csv_instances(raw);
    }
    let doc: Value = serde_json::from_slice(raw)
        .map_err(|e| CliError::Input(format!("the input is not valid JSON: {e}")))?;
    let instances = match doc {
        Value::Object(mut map) if map.contains_key("instances") => {
            map.remove("instances").unwrap_or(Value::Null)
        }
        Value::Array(items) if items.first().is_some_and(Value::is_number) => {
            Value::Array(vec![Value::Array(items)])
        }
        Value::Object(map) => Value::Array(vec![Value::Object(map)]),
        other => other,
    };
    match &instances {
        Value::Array(items) if !items.is_empty() => Ok(instances),
        Value::Array(_) => Err(CliError::Input("the input has no rows".into())),
        _ => Err(CliError::Input(
            "expected a list of rows: [[1.0, 2.0, ...], ...] or [{\"feature\": 1.0, ...}, ...]"
                .into(),
        )),
    }
}

fn csv_instances(raw: &[u8]) -> Result<Value, CliError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(raw);
    let headers = reader
        .headers()
        .map_err(|e| CliError::Input(format!("the CSV header can't be read: {e}")))?
        .clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| CliError::Input(format!("the CSV is malformed: {e}")))?;
        let line = record
            .position()
            .map_or(rows.len() + 2, |p| p.line() as usize);
        let mut row = Map::new();
        for (name, cell) in headers.iter().zip(record.iter()) {
            let cell = cell.trim();
            let value = cell
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .and_then(|v| serde_json::Number::from_f64(v).map(Value::Number))
                .ok_or_else(|| {
                    CliError::Input(format!(
                        "line {line}, column {:?}: {cell:?} is not a finite number",
                        name.trim()
                    ))
                })?;
            row.insert(name.trim().to_string(), value);
        }
        rows.push(Value::Object(row));
    }
    if rows.is_empty() {
        return Err(CliError::Input("the input has no rows".into()));
    }
    Ok(Value::Array(rows))
}

/// Sends one request (signed when the target says so) and returns the status and body.
pub async fn send(
    target: &RemoteTarget,
    method: Method,
    path_and_query: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), CliError> {
    let url = format!("{}{path_and_query}", target.url.trim_end_matches('/'));
    let uri: Uri = url
        .parse()
        .map_err(|e| CliError::Input(format!("{url:?} is not a URL: {e}")))?;
    let authority = uri
        .authority()
        .map(|a| a.to_string())
        .ok_or_else(|| CliError::Input(format!("{url:?} has no host")))?;
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| CliError::Input(format!("cannot build the request: {e}")))?;
    if let Some(scope) = &target.scope {
        let credentials = chain_credentials().await?;
        sign_request(&mut request, &credentials, scope, SystemTime::now())?;
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| CliError::Remote(format!("no TLS root certificates: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    let (parts, body) = request.into_parts();
    let response = client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(|e| CliError::Remote(format!("cannot reach {url}: {e}")))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| CliError::Remote(format!("the response from {url} broke off: {e}")))?
        .to_bytes();
    Ok((status, body))
}

/// The arguments of `maas predict` that matter against a deployment.
pub(crate) struct RemotePredict<'a> {
    pub model: &'a str,
    pub version: Option<&'a str>,
    pub alias: Option<&'a str>,
    pub source: &'a str,
    pub raw: &'a [u8],
}

/// `maas predict --url`: the deployment's predictions, printed like local ones.
pub(crate) async fn predict(
    target: &RemoteTarget,
    request: RemotePredict<'_>,
) -> Result<Rendered, CliError> {
    let instances = instances_from(request.source, request.raw)?;
    let body = serde_json::to_vec(&json!({ "instances": instances }))
        .map_err(|e| CliError::Input(e.to_string()))?;
    let path = predict_path(request.model, request.version, request.alias);
    let (status, body) = send(target, Method::POST, &path, Bytes::from(body)).await?;
    let doc: Option<Value> = serde_json::from_slice(&body).ok();
    if !status.is_success() {
        let message = doc
            .as_ref()
            .and_then(|d| d.get("error").or_else(|| d.get("message")))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).to_string());
        // One line: API Gateway appends the canonical request it computed on further lines.
        let message = message
            .trim()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let hint = match status {
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                "; check the credentials (AWS_PROFILE), --region, and that the identity may call execute-api:Invoke / lambda:InvokeFunctionUrl"
            }
            _ => "",
        };
        return Err(CliError::Remote(format!(
            "{} answered {status}: {message}{hint}",
            target.url
        )));
    }
    let doc = doc.ok_or_else(|| {
        CliError::Remote(format!(
            "{} answered {status} but not with JSON: {}",
            target.url,
            String::from_utf8_lossy(&body)
        ))
    })?;
    let mut out = Map::new();
    out.insert("model".into(), Value::String(request.model.to_string()));
    for key in ["model_version", "predictions", "labels"] {
        if let Some(v) = doc.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    Ok(Rendered(
        serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's SigV4 test suite (as shipped in aws-sigv4's `aws-signing-test-suite/v4`), cases
    /// whose settings match ours (body hash sent as `x-amz-content-sha256`).
    fn suite_credentials(token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_string),
            None,
            "test-suite",
        )
    }

    fn suite_time() -> SystemTime {
        // 2015-08-30T12:36:00Z
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160)
    }

    fn suite_scope() -> SigningScope {
        SigningScope {
            region: "us-east-1".into(),
            service: "service".into(),
        }
    }

    #[test]
    fn signs_the_test_suite_form_post() {
        let mut request = Request::builder()
            .method("POST")
            .uri("https://example.amazonaws.com/")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("host", "example.amazonaws.com")
            .header("content-length", "13")
            .body(Bytes::from_static(b"Param1=value1"))
            .expect("request");
        sign_request(
            &mut request,
            &suite_credentials(None),
            &suite_scope(),
            suite_time(),
        )
        .expect("signed");
        let h = request.headers();
        assert_eq!(h["x-amz-date"], "20150830T123600Z");
        assert_eq!(
            h["x-amz-content-sha256"],
            "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert_eq!(
            h["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, \
             Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"
        );
    }

    #[test]
    fn a_changed_body_or_secret_changes_the_signature() {
        let signed = |body: &'static [u8], secret: &str| {
            let mut request = Request::builder()
                .method("POST")
                .uri("https://example.amazonaws.com/v1/models/seed:predict")
                .header("host", "example.amazonaws.com")
                .body(Bytes::from_static(body))
                .expect("request");
            let credentials = Credentials::new("AKIDEXAMPLE", secret, None, None, "t");
            sign_request(&mut request, &credentials, &suite_scope(), suite_time()).expect("signed");
            request.headers()["authorization"].clone()
        };
        let base = signed(b"{\"instances\":[[1]]}", "secret");
        assert_ne!(base, signed(b"{\"instances\":[[2]]}", "secret"));
        assert_ne!(base, signed(b"{\"instances\":[[1]]}", "other"));
    }

    #[test]
    fn session_tokens_are_sent_and_signed() {
        let mut request = Request::builder()
            .method("GET")
            .uri("https://example.amazonaws.com/")
            .header("host", "example.amazonaws.com")
            .body(Bytes::new())
            .expect("request");
        sign_request(
            &mut request,
            &suite_credentials(Some("token-1")),
            &suite_scope(),
            suite_time(),
        )
        .expect("signed");
        let h = request.headers();
        assert_eq!(h["x-amz-security-token"], "token-1");
        let auth = h["authorization"].to_str().expect("ascii");
        assert!(auth.contains("x-amz-security-token"), "{auth}");
    }

    #[test]
    fn the_host_names_the_region_and_service() {
        assert_eq!(
            scope_from_host("abc123.execute-api.eu-west-1.amazonaws.com"),
            Some(SigningScope {
                region: "eu-west-1".into(),
                service: "execute-api".into()
            })
        );
        assert_eq!(
            scope_from_host("xyz.lambda-url.us-east-2.on.aws"),
            Some(SigningScope {
                region: "us-east-2".into(),
                service: "lambda".into()
            })
        );
        assert_eq!(scope_from_host("127.0.0.1"), None);
    }

    #[test]
    fn rows_become_instances() {
        let csv = instances_from("rows.csv", b"a,b\n1,2\n3,4.5\n").expect("valid rows");
        assert_eq!(csv, json!([{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.5}]));
        let err = instances_from("rows.csv", b"a,b\n1,x\n").expect_err("bad cell");
        assert!(err.to_string().contains("line 2"), "{err}");
        assert_eq!(
            instances_from("-", b"[1, 2]").expect("valid rows"),
            json!([[1, 2]]),
            "one row"
        );
        assert_eq!(
            instances_from("-", b"{\"instances\": [[1], [2]]}").expect("valid rows"),
            json!([[1], [2]])
        );
        assert!(instances_from("-", b"[]").is_err());
        assert_eq!(
            predict_path("seed", Some("3"), None),
            "/v1/models/seed/versions/3:predict"
        );
        assert_eq!(
            predict_path("seed", None, Some("production")),
            "/v1/models/seed:predict?alias=production"
        );
    }
}
