//! One object-store interface — [`ObjectStore`] — with three backends: [`S3Store`] (aws-sdk-s3),
//! [`LocalFsStore`] (a directory, the embedded default) and [`MemoryStore`] (tests and demos).
//!
//! Every backend gives the same guarantees, which the registry's correctness rests on:
//! - a conditional create ([`PutCondition::IfNoneMatch`], S3's `If-None-Match: *`) succeeds for
//!   exactly one of several concurrent writers of a key;
//! - a compare-and-swap ([`PutCondition::IfMatch`], S3's `If-Match: etag`) succeeds only if the
//!   object still has the ETag the writer read;
//! - a reader never sees a half-written object;
//! - "not found" ([`StoreError::NotFound`]) is distinct from "the backend failed".
//!
//! This crate knows about bytes and keys only: nothing about models, manifests or HTTP.

mod fs;
mod key;
mod memory;
mod s3;
mod url;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use fs::LocalFsStore;
pub use key::validate_key;
pub use memory::MemoryStore;
pub use s3::{S3Store, S3StoreOptions};
pub use url::{StoreUrl, decode_event_key, store_key_in_bucket};

/// An opaque version tag of an object's content, as S3's `ETag`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(pub String);

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Metadata of one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Key relative to the store's root or prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Content tag.
    pub etag: ETag,
}

/// A whole object read from the store.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// The object's content.
    pub body: Bytes,
    /// Its content tag at the time it was read.
    pub etag: ETag,
}

/// When a write may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// Always: create or overwrite.
    None,
    /// Only if no object exists under the key (S3 `If-None-Match: *`).
    IfNoneMatch,
    /// Only if the object exists and still carries this tag (S3 `If-Match`).
    IfMatch(ETag),
}

/// Everything that can go wrong talking to a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object under the key.
    #[error("no object at {key}")]
    NotFound {
        /// The key that was asked for.
        key: String,
    },
    /// A create-only write found an object already there.
    #[error("an object already exists at {key}")]
    AlreadyExists {
        /// The contested key.
        key: String,
    },
    /// A compare-and-swap write found the object changed (or gone) since it was read.
    #[error("the object at {key} changed since it was read; read it again and retry")]
    PreconditionFailed {
        /// The contested key.
        key: String,
    },
    /// A key that could escape the store's root or can't be stored.
    #[error("invalid storage key {key:?}: {why}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A store URL that can't be understood.
    #[error(
        "invalid store {url:?}: {why}; use s3://bucket[/prefix], file:///absolute/path, a directory path, or memory://"
    )]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The backend failed (network, permissions, disk). Often worth retrying.
    #[error("storage backend failed to {op} {key}: {message}")]
    Backend {
        /// The operation (`get`, `put`, `list`, ...).
        op: &'static str,
        /// The key or prefix involved.
        key: String,
        /// The backend's own description.
        message: String,
    },
}

impl StoreError {
    /// True for [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    pub(crate) fn backend(op: &'static str, key: &str, err: impl fmt::Display) -> Self {
        StoreError::Backend {
            op,
            key: key.to_string(),
            message: err.to_string(),
        }
    }
}

/// The capabilities maas needs from an object store.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Reads a whole object.
    async fn get(&self, key: &str) -> Result<StoredObject, StoreError>;

    /// Reads an object's metadata.
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError>;

    /// Writes a whole object under `condition`, returning its new tag.
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<ETag, StoreError>;

    /// Lists every object whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Names of the folders directly under `prefix` (which ends with `/`): the distinct next
    /// path segments of the keys below it, as S3 lists common prefixes with the delimiter `/`.
    /// Sorted; it costs one entry per folder however many objects each holds.
    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Removes an object; removing a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Reads bytes `start..end` of an object (clamped to its size), so large objects can be
    /// streamed in chunks with bounded memory.
    ///
    /// With `expected`, the read is pinned to that content (S3's `If-Match`): if the object was
    /// overwritten since the tag was read, it fails with [`StoreError::PreconditionFailed`]
    /// instead of returning bytes of another version, so a reader that streams an object in
    /// several ranges never mixes two versions of it.
    async fn get_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
        expected: Option<&ETag>,
    ) -> Result<Bytes, StoreError>;

    /// Starts writing an object in pieces (S3 multipart upload). Nothing is visible under `key`
    /// until [`ObjectWriter::complete`]; an aborted or abandoned writer leaves no object.
    async fn start_upload(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError>;

    /// Where the store lives, for messages (`s3://bucket/prefix`, `file:///data`).
    fn location(&self) -> String;
}

/// An object being written in pieces; see [`ObjectStore::start_upload`].
#[async_trait]
pub trait ObjectWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError>;
    /// Makes the object visible, whole, under its key (overwriting any previous one).
    async fn complete(self: Box<Self>) -> Result<ETag, StoreError>;
    /// Discards everything written.
    async fn abort(self: Box<Self>) -> Result<(), StoreError>;
}

/// Smallest part S3 accepts in a multipart upload (except the last); writers buffer to this.
pub const MULTIPART_PART_SIZE: usize = 8 * 1024 * 1024;

/// A shareable store handle.
pub type SharedStore = Arc<dyn ObjectStore>;

/// Opens the store a URL names (see [`StoreUrl`]).
pub async fn open(url: &str) -> Result<SharedStore, StoreError> {
    let parsed = StoreUrl::parse(url)?;
    Ok(match parsed {
        StoreUrl::S3 { bucket, prefix } => Arc::new(
            S3Store::connect(S3StoreOptions {
                bucket,
                prefix,
                endpoint: None,
            })
            .await?,
        ),
        StoreUrl::File(path) => Arc::new(LocalFsStore::open(path)?),
        StoreUrl::Memory => Arc::new(MemoryStore::new()),
    })
}
