//! The object-store conformance suite: the behaviour the registry relies on, checked the same way
//! against every backend.

use std::sync::Arc;

use bytes::Bytes;
use maas_store::{ObjectStore, PutCondition, StoreError};

fn body(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Runs every single-writer check against `store`, which must be empty.
pub async fn run_single_writer_suite(store: &dyn ObjectStore) {
    missing_objects_are_not_found(store).await;
    round_trip_keeps_bytes_and_tags(store).await;
    create_only_refuses_existing(store).await;
    compare_and_swap_follows_the_tag(store).await;
    listing_is_prefix_filtered_and_sorted(store).await;
    delete_is_idempotent(store).await;
    hostile_keys_are_refused(store).await;
    ranges_read_parts_of_objects(store).await;
    folders_list_one_entry_per_folder(store).await;
    uploads_appear_whole_on_completion(store).await;
}

async fn ranges_read_parts_of_objects(store: &dyn ObjectStore) {
    let content: Vec<u8> = (0..100u8).collect();
    store
        .put(
            "range/obj",
            Bytes::from(content.clone()),
            PutCondition::None,
        )
        .await
        .expect("put");
    assert_eq!(
        &store
            .get_range("range/obj", 10, 20, None)
            .await
            .expect("middle")[..],
        &content[10..20]
    );
    assert_eq!(
        &store
            .get_range("range/obj", 90, 200, None)
            .await
            .expect("tail")[..],
        &content[90..]
    );
    assert!(
        store
            .get_range("range/obj", 150, 200, None)
            .await
            .expect("past the end")
            .is_empty()
    );
    assert!(
        store
            .get_range("range/obj", 5, 5, None)
            .await
            .expect("empty")
            .is_empty()
    );
    assert!(
        store
            .get_range("range/none", 0, 10, None)
            .await
            .expect_err("missing")
            .is_not_found()
    );

    // A read pinned to the tag the reader saw succeeds while the object is unchanged...
    let tag = store.head("range/obj").await.expect("head").etag;
    assert_eq!(
        &store
            .get_range("range/obj", 0, 10, Some(&tag))
            .await
            .expect("pinned")[..],
        &content[..10]
    );
    // ...and fails, returning none of the new bytes, once it is overwritten.
    let replaced: Vec<u8> = (100..200u8).collect();
    store
        .put("range/obj", Bytes::from(replaced), PutCondition::None)
        .await
        .expect("overwrite");
    for (start, end) in [(10, 20), (0, 0)] {
        let err = store
            .get_range("range/obj", start, end, Some(&tag))
            .await
            .expect_err("the object changed");
        assert!(
            matches!(err, StoreError::PreconditionFailed { .. }),
            "{start}..{end}: {err}"
        );
    }
}

async fn uploads_appear_whole_on_completion(store: &dyn ObjectStore) {
    // Small: fewer bytes than one part.
    let mut writer = store.start_upload("up/small.csv").await.expect("start");
    for chunk in ["a,b\n", "1,2\n", "3,4\n"] {
        writer.write(body(chunk)).await.expect("write");
    }
    assert!(
        store
            .head("up/small.csv")
            .await
            .expect_err("invisible until complete")
            .is_not_found()
    );
    writer.complete().await.expect("complete");
    assert_eq!(
        &store.get("up/small.csv").await.expect("get").body[..],
        b"a,b\n1,2\n3,4\n"
    );

    // Large: several multipart parts, written in uneven chunks.
    let total = maas_store::MULTIPART_PART_SIZE * 2 + 12_345;
    let expected: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let mut writer = store.start_upload("up/large.bin").await.expect("start");
    for chunk in expected.chunks(3_000_001) {
        writer
            .write(Bytes::copy_from_slice(chunk))
            .await
            .expect("write");
    }
    writer.complete().await.expect("complete");
    let got = store.get("up/large.bin").await.expect("get");
    assert_eq!(got.body.len(), total);
    assert!(got.body[..] == expected[..], "multipart content intact");
    let head = store.head("up/large.bin").await.expect("head");
    assert_eq!(head.size, total as u64);

    // Overwrite by upload; and an aborted upload leaves nothing behind.
    let mut writer = store.start_upload("up/small.csv").await.expect("start");
    writer.write(body("new")).await.expect("write");
    writer.complete().await.expect("complete");
    assert_eq!(
        &store.get("up/small.csv").await.expect("get").body[..],
        b"new"
    );
    let mut writer = store.start_upload("up/aborted").await.expect("start");
    writer.write(body("partial")).await.expect("write");
    writer.abort().await.expect("abort");
    assert!(
        store
            .head("up/aborted")
            .await
            .expect_err("aborted")
            .is_not_found()
    );
    let keys: Vec<String> = store
        .list("up/")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["up/large.bin", "up/small.csv"]);
}

async fn missing_objects_are_not_found(store: &dyn ObjectStore) {
    let get = store
        .get("nothing/here.json")
        .await
        .expect_err("missing object");
    assert!(get.is_not_found(), "get of a missing key: {get:?}");
    let head = store
        .head("nothing/here.json")
        .await
        .expect_err("missing object");
    assert!(head.is_not_found(), "head of a missing key: {head:?}");
}

async fn round_trip_keeps_bytes_and_tags(store: &dyn ObjectStore) {
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let tag = store
        .put(
            "rt/binary.bin",
            Bytes::from(all_bytes.clone()),
            PutCondition::None,
        )
        .await
        .expect("put binary");
    let got = store.get("rt/binary.bin").await.expect("get binary");
    assert_eq!(
        &got.body[..],
        &all_bytes[..],
        "bytes survive the round trip"
    );
    assert_eq!(got.etag, tag, "get reports the tag put returned");
    let head = store.head("rt/binary.bin").await.expect("head");
    assert_eq!(head.size, 70_000);
    assert_eq!(head.etag, tag);

    store
        .put("rt/empty", Bytes::new(), PutCondition::None)
        .await
        .expect("empty object");
    assert!(
        store
            .get("rt/empty")
            .await
            .expect("get empty")
            .body
            .is_empty()
    );

    let t2 = store
        .put("rt/binary.bin", body("replaced"), PutCondition::None)
        .await
        .expect("overwrite");
    assert_ne!(t2, tag, "an overwrite changes the tag");
    assert_eq!(
        &store.get("rt/binary.bin").await.expect("get").body[..],
        b"replaced"
    );
}

async fn create_only_refuses_existing(store: &dyn ObjectStore) {
    store
        .put("co/key", body("first"), PutCondition::IfNoneMatch)
        .await
        .expect("create a new key");
    let err = store
        .put("co/key", body("second"), PutCondition::IfNoneMatch)
        .await
        .expect_err("second create");
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(
        &store.get("co/key").await.expect("get").body[..],
        b"first",
        "the losing create changed nothing"
    );
}

async fn compare_and_swap_follows_the_tag(store: &dyn ObjectStore) {
    let t1 = store
        .put("cas/alias.json", body("v1"), PutCondition::None)
        .await
        .expect("initial");
    let t2 = store
        .put(
            "cas/alias.json",
            body("v2"),
            PutCondition::IfMatch(t1.clone()),
        )
        .await
        .expect("swap with the current tag");
    let stale = store
        .put("cas/alias.json", body("v3"), PutCondition::IfMatch(t1))
        .await
        .expect_err("swap with a stale tag");
    assert!(
        matches!(stale, StoreError::PreconditionFailed { .. }),
        "{stale:?}"
    );
    assert_eq!(
        &store.get("cas/alias.json").await.expect("get").body[..],
        b"v2"
    );
    let missing = store
        .put("cas/none.json", body("x"), PutCondition::IfMatch(t2))
        .await
        .expect_err("swap on a missing key");
    assert!(
        matches!(missing, StoreError::PreconditionFailed { .. }),
        "{missing:?}"
    );
    assert!(
        store
            .get("cas/none.json")
            .await
            .expect_err("still missing")
            .is_not_found()
    );
}

async fn listing_is_prefix_filtered_and_sorted(store: &dyn ObjectStore) {
    for key in ["ls/b/2", "ls/a/1", "ls/a/10", "ls/ab", "lsx/other"] {
        store
            .put(key, body(key), PutCondition::None)
            .await
            .expect("put");
    }
    let keys = |v: Vec<maas_store::ObjectMeta>| v.into_iter().map(|o| o.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.list("ls/").await.expect("list ls/")),
        ["ls/a/1", "ls/a/10", "ls/ab", "ls/b/2"]
    );
    assert_eq!(
        keys(store.list("ls/a").await.expect("list ls/a")),
        ["ls/a/1", "ls/a/10", "ls/ab"],
        "a prefix need not end at a slash"
    );
    assert!(store.list("nope/").await.expect("empty list").is_empty());
    let sized = store.list("ls/b/").await.expect("list");
    assert_eq!(sized[0].size, 6);
}

async fn delete_is_idempotent(store: &dyn ObjectStore) {
    store
        .put("del/x", body("x"), PutCondition::None)
        .await
        .expect("put");
    store.delete("del/x").await.expect("delete");
    assert!(store.get("del/x").await.expect_err("gone").is_not_found());
    store
        .delete("del/x")
        .await
        .expect("deleting a missing key is fine");
}

async fn hostile_keys_are_refused(store: &dyn ObjectStore) {
    for key in ["../escape", "a/../../b", "/abs", "", "a//b"] {
        let err = store
            .put(key, body("x"), PutCondition::None)
            .await
            .expect_err("hostile key");
        assert!(
            matches!(err, StoreError::InvalidKey { .. }),
            "{key:?}: {err:?}"
        );
        let err = store.get(key).await.expect_err("hostile key");
        assert!(
            matches!(err, StoreError::InvalidKey { .. }),
            "{key:?}: {err:?}"
        );
    }
}

/// `writers` tasks race to create one key: exactly one must win, the rest see `AlreadyExists`.
pub async fn concurrent_creates_have_one_winner(store: Arc<dyn ObjectStore>, writers: usize) {
    for round in 0..5 {
        let key = format!("race/{round}");
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = store.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .put(
                        &key,
                        Bytes::from(format!("writer {w}")),
                        PutCondition::IfNoneMatch,
                    )
                    .await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => winners += 1,
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(other) => panic!("unexpected error: {other:?}"),
            }
        }
        assert_eq!(winners, 1, "round {round}: exactly one create wins");
    }
}

/// `writers` tasks each increment a counter object by compare-and-swap `rounds` times; no
/// increment may be lost.
pub async fn concurrent_swaps_lose_nothing(
    store: Arc<dyn ObjectStore>,
    writers: usize,
    rounds: usize,
) {
    store
        .put("counter", body("0"), PutCondition::None)
        .await
        .expect("counter");
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                loop {
                    let cur = store.get("counter").await.expect("read counter");
                    let n: u64 = std::str::from_utf8(&cur.body)
                        .expect("utf8")
                        .parse()
                        .expect("number");
                    match store
                        .put(
                            "counter",
                            Bytes::from((n + 1).to_string()),
                            PutCondition::IfMatch(cur.etag),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::PreconditionFailed { .. }) => continue,
                        Err(other) => panic!("unexpected error: {other:?}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let end = store.get("counter").await.expect("counter");
    assert_eq!(
        std::str::from_utf8(&end.body).expect("utf8"),
        (writers * rounds).to_string(),
        "every increment survived"
    );
}

async fn folders_list_one_entry_per_folder(store: &dyn ObjectStore) {
    for key in [
        "tree/a/1.json",
        "tree/a-b/1.json",
        "tree/a/2.json",
        "tree/a/deep/3.json",
        "tree/b/1.json",
        "tree/top.json",
        "treeless/x.json",
    ] {
        store
            .put(key, Bytes::from_static(b"{}"), PutCondition::None)
            .await
            .expect("put");
    }
    assert_eq!(
        store.list_folders("tree/").await.expect("folders"),
        ["a", "a-b", "b"]
    );
    assert_eq!(
        store.list_folders("tree/a/").await.expect("folders"),
        ["deep"]
    );
    assert!(
        store
            .list_folders("nothing/")
            .await
            .expect("an empty listing")
            .is_empty()
    );
}
