//! [`LocalFsStore`]: objects as files under a root directory, with S3's guarantees.
//!
//! - Whole writes go to a temporary file under `.maas-tmp/` which is fsynced and then renamed into
//!   place, so readers never see half an object and a crash leaves at most a stray temp file.
//! - Create-only writes hard-link the finished temp file to the key: `link(2)` fails if the name
//!   exists, so exactly one of several concurrent creators wins, across processes too.
//! - Compare-and-swap writes hold an exclusive lock on a per-key lock file under `.maas-locks/`
//!   while they compare the current tag and rename the new content in.
//! - The ETag of a small object (the JSON documents compare-and-swap guards) is a hash of its
//!   content, like S3's MD5: file timestamps are only as fine as the kernel's clock tick and inode
//!   numbers are reused, so metadata alone could repeat a tag within milliseconds. Large objects
//!   (artifacts, datasets) get a tag from inode, modification time and size, so listing and heads
//!   never hash megabytes.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::key::{validate_key, validate_prefix};
use crate::{ETag, ObjectMeta, ObjectStore, ObjectWriter, PutCondition, StoreError, StoredObject};

const TMP_DIR: &str = ".maas-tmp";
const LOCK_DIR: &str = ".maas-locks";

/// A store in a local directory (the embedded default, `./maas-data`).
#[derive(Debug, Clone)]
pub struct LocalFsStore {
    root: PathBuf,
}

impl LocalFsStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let shown = root.display().to_string();
        for dir in [root.clone(), root.join(TMP_DIR), root.join(LOCK_DIR)] {
            std::fs::create_dir_all(&dir).map_err(|e| {
                StoreError::backend("create the store directory", &dir.display().to_string(), e)
            })?;
        }
        let root = root
            .canonicalize()
            .map_err(|e| StoreError::backend("open", &shown, e))?;
        Ok(Self { root })
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    async fn blocking<T, F>(&self, op: &'static str, key: &str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, StoreError> + Send + 'static,
    {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(|e| StoreError::backend(op, key, e))?
    }
}

/// Objects up to this size get content-hash tags.
const CONTENT_TAG_LIMIT: u64 = 256 * 1024;

fn content_tag(body: &[u8]) -> ETag {
    ETag(hex::encode(&Sha256::digest(body)[..16]))
}

fn metadata_tag(meta: &std::fs::Metadata) -> ETag {
    let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
    ETag(format!("{:x}-{:x}-{:x}", meta.ino(), mtime_ns, meta.len()))
}

/// The tag of the file at `path`, whose metadata is `meta`.
fn etag_of(path: &Path, meta: &std::fs::Metadata, key: &str) -> Result<ETag, StoreError> {
    if meta.len() <= CONTENT_TAG_LIMIT {
        let body = std::fs::read(path).map_err(|e| io_error("head", key, e))?;
        Ok(content_tag(&body))
    } else {
        Ok(metadata_tag(meta))
    }
}

fn io_error(op: &'static str, key: &str, err: std::io::Error) -> StoreError {
    if err.kind() == ErrorKind::NotFound {
        StoreError::NotFound {
            key: key.to_string(),
        }
    } else {
        StoreError::backend(op, key, err)
    }
}

/// Writes `body` to a fresh, fsynced temp file and returns its path.
fn write_temp(root: &Path, key: &str, body: &[u8]) -> Result<PathBuf, StoreError> {
    let tmp = root
        .join(TMP_DIR)
        .join(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| StoreError::backend("put", key, e))?;
    let written = file.write_all(body).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::backend("put", key, e));
    }
    Ok(tmp)
}

fn ensure_parent(path: &Path, key: &str) -> Result<(), StoreError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::backend("put", key, e))?;
    }
    Ok(())
}

fn meta_of(path: &Path, key: &str) -> Result<std::fs::Metadata, StoreError> {
    let meta = std::fs::metadata(path).map_err(|e| io_error("head", key, e))?;
    if !meta.is_file() {
        return Err(StoreError::NotFound {
            key: key.to_string(),
        });
    }
    Ok(meta)
}

fn put_blocking(
    root: &Path,
    key: &str,
    body: &[u8],
    condition: &PutCondition,
) -> Result<ETag, StoreError> {
    let dest = root.join(key);
    ensure_parent(&dest, key)?;
    let tmp = write_temp(root, key, body)?;
    let result = match condition {
        PutCondition::None => {
            std::fs::rename(&tmp, &dest).map_err(|e| StoreError::backend("put", key, e))
        }
        PutCondition::IfNoneMatch => {
            let linked = std::fs::hard_link(&tmp, &dest);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                }),
                Err(e) => Err(StoreError::backend("put", key, e)),
            }
        }
        PutCondition::IfMatch(expected) => {
            let lock_name = hex::encode(Sha256::digest(key.as_bytes()));
            let lock_path = root.join(LOCK_DIR).join(lock_name);
            let swap = || -> Result<(), StoreError> {
                let lock = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .map_err(|e| StoreError::backend("lock", key, e))?;
                lock.lock()
                    .map_err(|e| StoreError::backend("lock", key, e))?;
                let current = match meta_of(&dest, key).and_then(|m| etag_of(&dest, &m, key)) {
                    Ok(tag) => Some(tag),
                    Err(StoreError::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                };
                if current.as_ref() != Some(expected) {
                    return Err(StoreError::PreconditionFailed {
                        key: key.to_string(),
                    });
                }
                std::fs::rename(&tmp, &dest).map_err(|e| StoreError::backend("put", key, e))
                // the lock is released when `lock` drops
            };
            let swapped = swap();
            if swapped.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            swapped
        }
    };
    if let PutCondition::None = condition
        && result.is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    if body.len() as u64 <= CONTENT_TAG_LIMIT {
        return Ok(content_tag(body));
    }
    Ok(metadata_tag(&meta_of(&dest, key)?))
}

fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
    // Walk only the deepest directory the prefix names, not the whole tree.
    let start_rel = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    let start = if start_rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(start_rel)
    };
    let mut out = Vec::new();
    let mut stack = vec![start];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                continue;
            }
            Err(e) => return Err(StoreError::backend("list", prefix, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::backend("list", prefix, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(".maas-") {
                continue;
            }
            let path = entry.path();
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                // Deleted while we walked: it is simply not there any more.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::backend("list", prefix, e)),
            };
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let Some(rel) = rel.to_str() else { continue };
            if meta.is_dir() {
                let as_dir = format!("{rel}/");
                if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                    stack.push(path);
                }
            } else if meta.is_file() && rel.starts_with(prefix) {
                let etag = match etag_of(&path, &meta, rel) {
                    Ok(tag) => tag,
                    Err(StoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                out.push(ObjectMeta {
                    key: rel.to_string(),
                    size: meta.len(),
                    etag,
                });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

#[async_trait]
impl ObjectStore for LocalFsStore {
    async fn get(&self, key: &str) -> Result<StoredObject, StoreError> {
        let path = self.path_of(key)?;
        let owned = key.to_string();
        self.blocking("get", key, move |_| {
            let mut file = std::fs::File::open(&path).map_err(|e| io_error("get", &owned, e))?;
            let meta = file.metadata().map_err(|e| io_error("get", &owned, e))?;
            if !meta.is_file() {
                return Err(StoreError::NotFound { key: owned });
            }
            let mut body = Vec::with_capacity(meta.len() as usize);
            std::io::Read::read_to_end(&mut file, &mut body)
                .map_err(|e| io_error("get", &owned, e))?;
            let etag = if body.len() as u64 <= CONTENT_TAG_LIMIT {
                content_tag(&body)
            } else {
                metadata_tag(&meta)
            };
            Ok(StoredObject {
                body: Bytes::from(body),
                etag,
            })
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let path = self.path_of(key)?;
        let owned = key.to_string();
        self.blocking("head", key, move |_| {
            let meta = meta_of(&path, &owned)?;
            Ok(ObjectMeta {
                size: meta.len(),
                etag: etag_of(&path, &meta, &owned)?,
                key: owned,
            })
        })
        .await
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<ETag, StoreError> {
        validate_key(key)?;
        let owned = key.to_string();
        self.blocking("put", key, move |root| {
            put_blocking(root, &owned, &body, &condition)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        validate_prefix(prefix)?;
        let owned = prefix.to_string();
        self.blocking("list", prefix, move |root| list_blocking(root, &owned))
            .await
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let owned = prefix.to_string();
        self.blocking("list", prefix, move |root| {
            let dir = if owned.is_empty() {
                ""
            } else if let Some(dir) = owned.strip_suffix('/') {
                dir
            } else {
                return Err(StoreError::InvalidKey {
                    key: owned.clone(),
                    why: "a folder listing needs a prefix that ends with '/'",
                });
            };
            let entries = match std::fs::read_dir(root.join(dir)) {
                Ok(entries) => entries,
                Err(e)
                    if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory =>
                {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(StoreError::backend("list", &owned, e)),
            };
            let mut out = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::backend("list", &owned, e))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if name.starts_with(".maas-") {
                    continue;
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(name);
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let owned = key.to_string();
        self.blocking("delete", key, move |_| match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::backend("delete", &owned, e)),
        })
        .await
    }

    async fn get_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
        expected: Option<&ETag>,
    ) -> Result<Bytes, StoreError> {
        let path = self.path_of(key)?;
        let owned = key.to_string();
        let expected = expected.cloned();
        self.blocking("get", key, move |_| {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = std::fs::File::open(&path).map_err(|e| io_error("get", &owned, e))?;
            // Writes replace the file by renaming a new one over it, so the open handle holds
            // one version whole: its tag, checked here, is the tag of the bytes read below.
            let meta = file.metadata().map_err(|e| io_error("get", &owned, e))?;
            if !meta.is_file() {
                return Err(StoreError::NotFound { key: owned });
            }
            let len = meta.len();
            let start = start.min(len);
            let end = end.min(len).max(start);
            if let Some(expected) = &expected {
                if len <= CONTENT_TAG_LIMIT {
                    // The tag is the content's hash: read the file once, check it, slice it.
                    let mut whole = Vec::with_capacity(len as usize);
                    file.read_to_end(&mut whole)
                        .map_err(|e| io_error("get", &owned, e))?;
                    if content_tag(&whole) != *expected {
                        return Err(StoreError::PreconditionFailed { key: owned });
                    }
                    return Ok(Bytes::from(whole).slice(start as usize..end as usize));
                }
                if metadata_tag(&meta) != *expected {
                    return Err(StoreError::PreconditionFailed { key: owned });
                }
            }
            file.seek(SeekFrom::Start(start))
                .map_err(|e| io_error("get", &owned, e))?;
            let mut body = vec![0u8; (end - start) as usize];
            file.read_exact(&mut body)
                .map_err(|e| io_error("get", &owned, e))?;
            Ok(Bytes::from(body))
        })
        .await
    }

    async fn start_upload(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let dest = self.path_of(key)?;
        let tmp = self
            .root
            .join(TMP_DIR)
            .join(format!("{}.upload", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| StoreError::backend("upload", key, e))?;
        Ok(Box::new(FsWriter {
            key: key.to_string(),
            dest,
            tmp,
            file: Some(file),
        }))
    }

    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

/// An upload to a [`LocalFsStore`]: a temp file, fsynced and renamed into place on completion.
struct FsWriter {
    key: String,
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<tokio::fs::File>,
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        // Abandoned (neither completed nor aborted): leave no temp file behind.
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[async_trait]
impl ObjectWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        use tokio::io::AsyncWriteExt;
        let file = self.file.as_mut().ok_or_else(|| {
            StoreError::backend("upload", &self.key, "the upload is already finished")
        })?;
        file.write_all(&chunk)
            .await
            .map_err(|e| StoreError::backend("upload", &self.key, e))
    }

    async fn complete(mut self: Box<Self>) -> Result<ETag, StoreError> {
        use tokio::io::AsyncWriteExt;
        let Some(mut file) = self.file.take() else {
            return Err(StoreError::backend(
                "upload",
                &self.key,
                "the upload is already finished",
            ));
        };
        let key = self.key.clone();
        let finish = async {
            file.flush().await?;
            file.sync_all().await?;
            drop(file);
            if let Some(parent) = self.dest.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::rename(&self.tmp, &self.dest).await
        };
        if let Err(e) = finish.await {
            let _ = tokio::fs::remove_file(&self.tmp).await;
            return Err(StoreError::backend("upload", &key, e));
        }
        let dest = self.dest.clone();
        tokio::task::spawn_blocking(move || {
            let meta = meta_of(&dest, &key)?;
            etag_of(&dest, &meta, &key)
        })
        .await
        .map_err(|e| StoreError::backend("upload", &self.key, e))?
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        self.file.take();
        match tokio::fs::remove_file(&self.tmp).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::backend("upload", &self.key, e)),
        }
    }
}
