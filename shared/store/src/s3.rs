//! [`S3Store`]: a bucket (optionally a prefix in it) through aws-sdk-s3.
//!
//! Credentials and region come from the standard AWS chain. Any endpoint override (an explicit
//! one, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`) switches to path-style addressing, which every
//! S3-compatible server (s3s, moto, MinIO) understands. Conditional writes use S3's own
//! `If-None-Match: *` and `If-Match`, so the bucket itself arbitrates races.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::key::{validate_key, validate_prefix};
use crate::{
    ETag, MULTIPART_PART_SIZE, ObjectMeta, ObjectStore, ObjectWriter, PutCondition, StoreError,
    StoredObject,
};

/// How to reach a bucket.
#[derive(Debug, Clone, Default)]
pub struct S3StoreOptions {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), `""` for none.
    pub prefix: String,
    /// Endpoint override (e.g. `http://127.0.0.1:9000`); the environment's is used when `None`.
    pub endpoint: Option<String>,
}

/// A store in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

/// The endpoint override the environment asks for, if any.
fn endpoint_from_env() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
}

impl S3Store {
    /// Builds a client from the standard AWS configuration chain and wraps it.
    pub async fn connect(options: S3StoreOptions) -> Result<Self, StoreError> {
        let sdk = aws_config::load_from_env().await;
        let mut config = aws_sdk_s3::config::Builder::from(&sdk);
        if sdk.region().is_none() {
            // S3 needs a region to sign with; us-east-1 is what S3-compatible servers expect.
            config = config.region(aws_sdk_s3::config::Region::from_static("us-east-1"));
        }
        let endpoint = options
            .endpoint
            .clone()
            .or_else(endpoint_from_env)
            .or_else(|| sdk.endpoint_url().map(str::to_string));
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        Ok(Self::new(
            Client::from_conf(config.build()),
            options.bucket,
            options.prefix,
        ))
    }

    /// Wraps an existing client.
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        let prefix: String = prefix.into();
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{}", self.prefix, key)
        }
    }

    fn relative_key<'a>(&self, full: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(&self.prefix)?.strip_prefix('/')
        }
    }
}

/// Maps an SDK failure to "not found", "condition failed" or "backend failed" by HTTP status.
fn classify<E, R>(op: &'static str, key: &str, err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    let status = err.raw_response().map(HttpStatus::status_code);
    let key = key.to_string();
    match status {
        // S3 answers a swap on a missing key with 404; the store contract calls that a failed
        // precondition, as the other backends do.
        Some(404) if op == "swap" => StoreError::PreconditionFailed { key },
        Some(404) => StoreError::NotFound { key },
        // 409 is S3's "a conflicting conditional write is in progress": the other writer wins.
        Some(412) | Some(409) if op == "create" => StoreError::AlreadyExists { key },
        Some(412) | Some(409) => StoreError::PreconditionFailed { key },
        _ => StoreError::Backend {
            op,
            key,
            message: DisplayErrorContext(&err).to_string(),
        },
    }
}

/// The HTTP status of a raw SDK response.
trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &str) -> Result<StoredObject, StoreError> {
        validate_key(key)?;
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| classify("get", key, e))?;
        let etag = ETag(resp.e_tag().unwrap_or_default().to_string());
        let body = resp
            .body
            .collect()
            .await
            .map_err(|e| StoreError::backend("get", key, e))?
            .into_bytes();
        Ok(StoredObject { body, etag })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        validate_key(key)?;
        let resp = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| classify("head", key, e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: resp.content_length().unwrap_or(0).max(0) as u64,
            etag: ETag(resp.e_tag().unwrap_or_default().to_string()),
        })
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<ETag, StoreError> {
        validate_key(key)?;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(body));
        let op = match &condition {
            PutCondition::None => "put",
            PutCondition::IfNoneMatch => {
                req = req.if_none_match("*");
                "create"
            }
            PutCondition::IfMatch(tag) => {
                req = req.if_match(&tag.0);
                "swap"
            }
        };
        let resp = req.send().await.map_err(|e| classify(op, key, e))?;
        Ok(ETag(resp.e_tag().unwrap_or_default().to_string()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        validate_prefix(prefix)?;
        let full_prefix = if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{}", self.prefix, prefix)
        };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(full_prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("list", prefix, e))?;
            for object in page.contents() {
                let Some(rel) = object.key().and_then(|k| self.relative_key(k)) else {
                    continue;
                };
                out.push(ObjectMeta {
                    key: rel.to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    etag: ETag(object.e_tag().unwrap_or_default().to_string()),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let full_prefix = self.full_key(prefix);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("list", prefix, e))?;
            for common in page.common_prefixes() {
                if let Some(folder) = common
                    .prefix()
                    .and_then(|p| p.strip_prefix(full_prefix.as_str()))
                    .and_then(|p| p.strip_suffix('/'))
                {
                    out.push(folder.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify("delete", key, e) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn get_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
        expected: Option<&ETag>,
    ) -> Result<Bytes, StoreError> {
        validate_key(key)?;
        if end <= start {
            // An empty range: still say whether the object exists (and is the expected one).
            let meta = self.head(key).await?;
            if expected.is_some_and(|e| *e != meta.etag) {
                return Err(StoreError::PreconditionFailed {
                    key: key.to_string(),
                });
            }
            return Ok(Bytes::new());
        }
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .range(format!("bytes={start}-{}", end - 1))
            .set_if_match(expected.map(|e| e.0.clone()))
            .send()
            .await;
        let resp = match resp {
            Ok(resp) => resp,
            // 416: the range starts past the end of the object — nothing to read there.
            Err(e) if e.raw_response().map(HttpStatus::status_code) == Some(416) => {
                return Ok(Bytes::new());
            }
            Err(e) => return Err(classify("get", key, e)),
        };
        // S3 answers If-Match itself (412); an S3-compatible server that ignores the header is
        // caught by the ETag it returns with the bytes.
        if let Some(expected) = expected
            && resp.e_tag().is_some_and(|tag| tag != expected.0)
        {
            return Err(StoreError::PreconditionFailed {
                key: key.to_string(),
            });
        }
        Ok(resp
            .body
            .collect()
            .await
            .map_err(|e| StoreError::backend("get", key, e))?
            .into_bytes())
    }

    async fn start_upload(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        validate_key(key)?;
        Ok(Box::new(S3Writer {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            full_key: self.full_key(key),
            key: key.to_string(),
            upload_id: None,
            buffer: Vec::new(),
            parts: Vec::new(),
        }))
    }

    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// A multipart upload that starts only once a full part is buffered: objects smaller than one
/// part go up as a single `PutObject`. An abandoned upload stays invisible (S3 keeps its parts
/// until aborted or until a lifecycle rule clears incomplete uploads).
struct S3Writer {
    client: Client,
    bucket: String,
    full_key: String,
    key: String,
    upload_id: Option<String>,
    buffer: Vec<u8>,
    parts: Vec<aws_sdk_s3::types::CompletedPart>,
}

impl S3Writer {
    async fn flush_part(&mut self) -> Result<(), StoreError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let created = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.full_key)
                    .send()
                    .await
                    .map_err(|e| classify("upload", &self.key, e))?;
                let id = created.upload_id().unwrap_or_default().to_string();
                self.upload_id = Some(id.clone());
                id
            }
        };
        let part_number = self.parts.len() as i32 + 1;
        let body = Bytes::from(std::mem::take(&mut self.buffer));
        let uploaded = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.full_key)
            .upload_id(&upload_id)
            .part_number(part_number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| classify("upload", &self.key, e))?;
        self.parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(uploaded.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.buffer.extend_from_slice(&chunk);
        if self.buffer.len() >= MULTIPART_PART_SIZE {
            self.flush_part().await?;
        }
        Ok(())
    }

    async fn complete(mut self: Box<Self>) -> Result<ETag, StoreError> {
        let Some(upload_id) = self.upload_id.clone() else {
            let body = Bytes::from(std::mem::take(&mut self.buffer));
            let resp = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.full_key)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| classify("put", &self.key, e))?;
            return Ok(ETag(resp.e_tag().unwrap_or_default().to_string()));
        };
        if !self.buffer.is_empty() {
            self.flush_part().await?;
        }
        let parts = std::mem::take(&mut self.parts);
        let done = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.full_key)
            .upload_id(&upload_id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("upload", &self.key, e))?;
        Ok(ETag(done.e_tag().unwrap_or_default().to_string()))
    }

    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        if let Some(upload_id) = &self.upload_id {
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.full_key)
                .upload_id(upload_id)
                .send()
                .await
                .map_err(|e| classify("upload", &self.key, e))?;
        }
        Ok(())
    }
}
