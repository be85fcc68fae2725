//! [`FaultyStore`]: an [`ObjectStore`] wrapper that injects a fault into chosen calls — a failure
//! before the call reaches the store, a call that succeeds but whose answer is lost (what a
//! timeout looks like to the caller), a read cut short — so tests can run an operation with a
//! fault at every call and check what the store holds afterwards.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use maas_store::{
    ETag, ObjectMeta, ObjectStore, ObjectWriter, PutCondition, SharedStore, StoreError,
    StoredObject,
};

/// What a call to the store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `get`.
    Get,
    /// `head`.
    Head,
    /// `put`, with any condition.
    Put,
    /// `list` or `list_folders`.
    List,
    /// `delete`.
    Delete,
    /// `get_range`.
    GetRange,
    /// `start_upload`.
    StartUpload,
    /// An upload's `write`.
    UploadWrite,
    /// An upload's `complete`.
    UploadComplete,
}

impl Op {
    /// Whether the call changes what the store holds.
    pub fn writes(self) -> bool {
        matches!(
            self,
            Op::Put | Op::Delete | Op::UploadWrite | Op::UploadComplete
        )
    }
}

/// One call, as the hook sees it.
#[derive(Debug, Clone)]
pub struct Call {
    /// 0-based index among all calls through this wrapper.
    pub index: usize,
    /// What it is.
    pub op: Op,
    /// The key (or prefix, for `list`).
    pub key: String,
}

/// The fault to inject into one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails before it reaches the store (nothing happens).
    Fail,
    /// The call reaches the store and takes effect, but the caller gets an error (a timeout,
    /// a connection cut before the answer).
    LoseResponse,
    /// A read (`get`, `get_range`) returns only the first half of its bytes, as a body cut
    /// short; other calls fail as [`Fault::Fail`].
    Truncate,
}

/// Decides, per call, whether to inject a fault; it may also act on the store first (e.g.
/// overwrite the object a reader is streaming).
pub type Hook = Arc<dyn Fn(Call) -> BoxFuture<'static, Option<Fault>> + Send + Sync>;

/// The wrapper.
#[derive(Clone)]
pub struct FaultyStore {
    inner: SharedStore,
    calls: Arc<AtomicUsize>,
    hook: Hook,
    log: Arc<Mutex<Vec<Call>>>,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .finish()
    }
}

impl FaultyStore {
    /// Wraps `inner`; `hook` is asked before every call.
    pub fn new(inner: SharedStore, hook: Hook) -> Self {
        Self {
            inner,
            calls: Arc::new(AtomicUsize::new(0)),
            hook,
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Injects `fault` into the call with index `k` (counting every call) and no other.
    pub fn at_call(inner: SharedStore, k: usize, fault: Fault) -> Self {
        Self::new(
            inner,
            Arc::new(move |call: Call| Box::pin(async move { (call.index == k).then_some(fault) })),
        )
    }

    /// Injects `fault` into the `k`-th call that changes the store (0-based) and no other.
    pub fn at_write(inner: SharedStore, k: usize, fault: Fault) -> Self {
        let writes = Arc::new(AtomicUsize::new(0));
        Self::new(
            inner,
            Arc::new(move |call: Call| {
                let hit = call.op.writes() && writes.fetch_add(1, Ordering::SeqCst) == k;
                Box::pin(async move { hit.then_some(fault) })
            }),
        )
    }

    /// A store without faults that counts calls (to learn how many fault points an operation
    /// has).
    pub fn counting(inner: SharedStore) -> Self {
        Self::new(inner, Arc::new(|_| Box::pin(async { None })))
    }

    /// Every call made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Calls made so far that change the store.
    pub fn write_count(&self) -> usize {
        self.calls().iter().filter(|c| c.op.writes()).count()
    }

    /// The wrapped store (no faults).
    pub fn inner(&self) -> &SharedStore {
        &self.inner
    }

    async fn decide(&self, op: Op, key: &str) -> Option<Fault> {
        let call = Call {
            index: self.calls.fetch_add(1, Ordering::SeqCst),
            op,
            key: key.to_string(),
        };
        if let Ok(mut log) = self.log.lock() {
            log.push(call.clone());
        }
        (self.hook)(call).await
    }
}

fn injected(op: Op, key: &str, what: &str) -> StoreError {
    StoreError::Backend {
        op: "injected",
        key: key.to_string(),
        message: format!("{what} injected into {op:?}"),
    }
}

fn halve(body: Bytes) -> Bytes {
    let half = body.len() / 2;
    body.slice(..half)
}

/// Runs one call under a fault: `Fail` before it, `LoseResponse` after it; `Truncate` maps the
/// result with `truncate` when given (reads), and fails otherwise.
async fn with_fault<T, F>(
    fault: Option<Fault>,
    op: Op,
    key: &str,
    call: F,
    truncate: Option<fn(T) -> T>,
) -> Result<T, StoreError>
where
    F: std::future::Future<Output = Result<T, StoreError>>,
{
    match fault {
        None => call.await,
        Some(Fault::Fail) => Err(injected(op, key, "a failure")),
        Some(Fault::LoseResponse) => {
            let _ = call.await;
            Err(injected(op, key, "a lost response"))
        }
        Some(Fault::Truncate) => match truncate {
            Some(cut) => call.await.map(cut),
            None => Err(injected(op, key, "a failure")),
        },
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn get(&self, key: &str) -> Result<StoredObject, StoreError> {
        let fault = self.decide(Op::Get, key).await;
        with_fault(
            fault,
            Op::Get,
            key,
            self.inner.get(key),
            Some(|o: StoredObject| StoredObject {
                body: halve(o.body),
                etag: o.etag,
            }),
        )
        .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let fault = self.decide(Op::Head, key).await;
        with_fault(fault, Op::Head, key, self.inner.head(key), None).await
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<ETag, StoreError> {
        let fault = self.decide(Op::Put, key).await;
        with_fault(
            fault,
            Op::Put,
            key,
            self.inner.put(key, body, condition),
            None,
        )
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let fault = self.decide(Op::List, prefix).await;
        with_fault(
            fault,
            Op::List,
            prefix,
            self.inner.list(prefix),
            // A listing is whole or an error (pages are checked by continuation tokens).
            None,
        )
        .await
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let fault = self.decide(Op::List, prefix).await;
        with_fault(
            fault,
            Op::List,
            prefix,
            self.inner.list_folders(prefix),
            None,
        )
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let fault = self.decide(Op::Delete, key).await;
        with_fault(fault, Op::Delete, key, self.inner.delete(key), None).await
    }

    async fn get_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
        expected: Option<&ETag>,
    ) -> Result<Bytes, StoreError> {
        let fault = self.decide(Op::GetRange, key).await;
        with_fault(
            fault,
            Op::GetRange,
            key,
            self.inner.get_range(key, start, end, expected),
            Some(halve),
        )
        .await
    }

    async fn start_upload(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let fault = self.decide(Op::StartUpload, key).await;
        let writer = with_fault(
            fault,
            Op::StartUpload,
            key,
            self.inner.start_upload(key),
            None,
        )
        .await?;
        Ok(Box::new(FaultyWriter {
            store: self.clone(),
            key: key.to_string(),
            inner: writer,
        }))
    }

    fn location(&self) -> String {
        format!("faulty+{}", self.inner.location())
    }
}

struct FaultyWriter {
    store: FaultyStore,
    key: String,
    inner: Box<dyn ObjectWriter>,
}

#[async_trait]
impl ObjectWriter for FaultyWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let fault = self.store.decide(Op::UploadWrite, &self.key).await;
        with_fault(
            fault,
            Op::UploadWrite,
            &self.key,
            self.inner.write(chunk),
            None,
        )
        .await
    }

    async fn complete(self: Box<Self>) -> Result<ETag, StoreError> {
        let fault = self.store.decide(Op::UploadComplete, &self.key).await;
        let key = self.key.clone();
        with_fault(fault, Op::UploadComplete, &key, self.inner.complete(), None).await
    }

    async fn abort(self: Box<Self>) -> Result<(), StoreError> {
        self.inner.abort().await
    }
}
