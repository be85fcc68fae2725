//! The object-store conformance suite against every backend: memory, the local filesystem, and
//! S3 (s3s-fs on 127.0.0.1; moto for concurrent conditional writes, which s3s-fs doesn't lock).

use std::sync::Arc;

use maas_store::{LocalFsStore, MemoryStore, ObjectStore};
use maas_tests::conformance::{
    concurrent_creates_have_one_winner, concurrent_swaps_lose_nothing, run_single_writer_suite,
};
use maas_tests::{MotoServer, S3Endpoint};

#[tokio::test]
async fn memory_store_conforms() {
    run_single_writer_suite(&MemoryStore::new()).await;
}

#[tokio::test]
async fn local_fs_store_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    run_single_writer_suite(&LocalFsStore::open(dir.path()).expect("open")).await;
}

#[tokio::test]
async fn s3_store_conforms_against_s3s_fs() {
    let s3 = S3Endpoint::start("conformance").await;
    run_single_writer_suite(s3.store("").as_ref()).await;
    // The same again under a prefix: keys must come back relative to it.
    run_single_writer_suite(s3.store("team/maas").as_ref()).await;
    let raw = s3
        .client()
        .head_object()
        .bucket("conformance")
        .key("team/maas/co/key")
        .send()
        .await;
    assert!(
        raw.is_ok(),
        "prefixed keys land under the prefix in the bucket"
    );
}

#[tokio::test]
async fn local_fs_store_never_exposes_temp_or_lock_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalFsStore::open(dir.path()).expect("open");
    store
        .put(
            "a/b",
            bytes::Bytes::from_static(b"x"),
            maas_store::PutCondition::None,
        )
        .await
        .expect("put");
    let tag = store.head("a/b").await.expect("head").etag;
    store
        .put(
            "a/b",
            bytes::Bytes::from_static(b"y"),
            maas_store::PutCondition::IfMatch(tag),
        )
        .await
        .expect("swap");
    let keys: Vec<String> = store
        .list("")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["a/b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_writes_on_memory() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    concurrent_creates_have_one_winner(store.clone(), 16).await;
    concurrent_swaps_lose_nothing(store, 8, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_writes_on_local_fs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFsStore::open(dir.path()).expect("open"));
    concurrent_creates_have_one_winner(store.clone(), 16).await;
    concurrent_swaps_lose_nothing(store, 8, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_writes_on_s3_via_moto() {
    let moto = MotoServer::start("races").await;
    let store: Arc<dyn ObjectStore> = moto.store("");
    concurrent_creates_have_one_winner(store.clone(), 16).await;
    concurrent_swaps_lose_nothing(store, 8, 5).await;
}
