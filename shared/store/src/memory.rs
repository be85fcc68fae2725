//! [`MemoryStore`]: a process-local store for unit tests and throwaway demos. One mutex makes every
//! conditional write atomic.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::key::{validate_key, validate_prefix};
use crate::{ETag, ObjectMeta, ObjectStore, ObjectWriter, PutCondition, StoreError, StoredObject};

/// Key → (content, tag).
type Objects = BTreeMap<String, (Bytes, ETag)>;

/// An in-memory object store.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: std::sync::Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    objects: Mutex<Objects>,
    next_tag: AtomicU64,
}

/// An upload to a [`MemoryStore`]: buffered, inserted whole on completion.
struct MemoryWriter {
    store: MemoryStore,
    key: String,
    buffer: Vec<u8>,
}

#[async_trait]
impl ObjectWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.buffer.extend_from_slice(&chunk);
        Ok(())
    }

    async fn complete(self: Box<Self>) -> Result<ETag, StoreError> {
        let MemoryWriter { store, key, buffer } = *self;
        store
            .put(&key, Bytes::from(buffer), PutCondition::None)
            .await
    }

    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> Result<std::sync::MutexGuard<'_, Objects>, StoreError> {
        self.inner
            .objects
            .lock()
            .map_err(|_| StoreError::backend("lock", "memory store", "a writer panicked"))
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<StoredObject, StoreError> {
        validate_key(key)?;
        let objects = self.objects()?;
        let (body, etag) = objects.get(key).ok_or_else(|| StoreError::NotFound {
            key: key.to_string(),
        })?;
        Ok(StoredObject {
            body: body.clone(),
            etag: etag.clone(),
        })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let obj = self.get(key).await?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: obj.body.len() as u64,
            etag: obj.etag,
        })
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<ETag, StoreError> {
        validate_key(key)?;
        let mut objects = self.objects()?;
        let current = objects.get(key).map(|(_, tag)| tag);
        match (&condition, current) {
            (PutCondition::IfNoneMatch, Some(_)) => {
                return Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            (PutCondition::IfMatch(expected), current) if current != Some(expected) => {
                return Err(StoreError::PreconditionFailed {
                    key: key.to_string(),
                });
            }
            _ => {}
        }
        let tag = ETag(format!(
            "m{}",
            self.inner.next_tag.fetch_add(1, Ordering::Relaxed)
        ));
        objects.insert(key.to_string(), (body, tag.clone()));
        Ok(tag)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        validate_prefix(prefix)?;
        let objects = self.objects()?;
        Ok(objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (body, etag))| ObjectMeta {
                key: k.clone(),
                size: body.len() as u64,
                etag: etag.clone(),
            })
            .collect())
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let objects = self.objects()?;
        let mut out: Vec<String> = objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, _)| {
                k[prefix.len()..]
                    .split_once('/')
                    .map(|(f, _)| f.to_string())
            })
            .collect();
        // Keys sort `a-b/…` before `a/…`; folder names sort `a` first.
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.objects()?.remove(key);
        Ok(())
    }

    async fn get_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
        expected: Option<&ETag>,
    ) -> Result<Bytes, StoreError> {
        let StoredObject { body, etag } = self.get(key).await?;
        if expected.is_some_and(|e| *e != etag) {
            return Err(StoreError::PreconditionFailed {
                key: key.to_string(),
            });
        }
        let len = body.len() as u64;
        let (start, end) = (start.min(len), end.min(len).max(start.min(len)));
        Ok(body.slice(start as usize..end as usize))
    }

    async fn start_upload(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        validate_key(key)?;
        Ok(Box::new(MemoryWriter {
            store: self.clone(),
            key: key.to_string(),
            buffer: Vec::new(),
        }))
    }

    fn location(&self) -> String {
        "memory://".to_string()
    }
}
