//! Watches: kube-runtime's watcher in order, relist after 410, and the raw stream shapes.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use machinist_sandbox::Gvr;
use serde_json::{Value, json};

use crate::common;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": "0"}})).expect("cm")
}

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn watcher_sees_add_modify_delete_in_order() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), &ns);
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    // Wait for the initial list to finish before writing.
    tokio::time::timeout(LIMIT, async {
        while let Some(e) = events.try_next().await.expect("watch") {
            if matches!(e, watcher::Event::InitDone) {
                break;
            }
        }
    })
    .await
    .expect("initial list");
    api.create(&PostParams::default(), &cm("w")).await.expect("create");
    api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "1"}}))).await.expect("patch");
    api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "2"}}))).await.expect("patch");
    api.delete("w", &DeleteParams::default()).await.expect("delete");
    let mut seen = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while let Some(e) = events.try_next().await.expect("watch") {
            match e {
                watcher::Event::Apply(o) => seen.push(format!("apply:{}", o.data.unwrap_or_default()["v"])),
                watcher::Event::Delete(o) => {
                    seen.push(format!("delete:{}", o.name_any()));
                    break;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("events arrive");
    assert_eq!(seen, ["apply:0", "apply:1", "apply:2", "delete:w"]);
}

#[tokio::test]
async fn after_compaction_the_watcher_gets_410_relists_and_converges() {
    let (sb, c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), &ns);
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"))).await.expect("create");
    }
    let (reader, writer) = kube::runtime::reflector::store();
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u16>::new()));
    let errs = errors.clone();
    let stream = kube::runtime::reflector(writer, watcher(api.clone(), watcher::Config::default()));
    let task = tokio::spawn(async move {
        let mut s = stream.boxed();
        while let Some(e) = s.next().await {
            if let Err(watcher::Error::WatchError(status)) = e {
                errs.lock().expect("lock").push(status.code);
            }
        }
    });
    tokio::time::timeout(LIMIT, reader.wait_until_ready()).await.expect("ready").expect("store");
    // Forget all history and cut every watch: the watcher resumes from an expired version.
    let url = format!("{}/sandbox/faults", sb.url());
    let r = common::http().post(&url).json(&json!({"compact": true, "close_watches": true})).send().await;
    assert!(r.expect("faults").status().is_success());
    for i in 5..8 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"))).await.expect("create after");
    }
    api.delete("c0", &DeleteParams::default()).await.expect("delete after");
    let want: Vec<String> = (1..8).map(|i| format!("c{i}")).collect();
    tokio::time::timeout(LIMIT, async {
        loop {
            let mut have: Vec<String> = reader.state().iter().map(|o| o.name_any()).collect();
            have.sort();
            if have == want && !errors.lock().expect("lock").is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the reflector converges on the server's set after a 410");
    assert!(errors.lock().expect("lock").contains(&410));
    let server: Vec<String> =
        api.list(&ListParams::default()).await.expect("list").items.iter().map(|o| o.name_any()).collect();
    assert_eq!(server, want);
    task.abort();
}

/// Reads newline-delimited events from a raw watch until `n` arrived.
async fn read_events(url: &str, n: usize) -> Vec<Value> {
    let resp = common::http().get(url).send().await.expect("watch request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while out.len() < n {
            let Some(chunk) = body.next().await else { break };
            buf.extend_from_slice(&chunk.expect("chunk"));
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                out.push(serde_json::from_slice(&line).expect("one JSON event per line"));
            }
        }
    })
    .await
    .expect("events");
    out
}

#[tokio::test]
async fn raw_watch_streams_initial_state_then_changes_and_honours_selectors() {
    let (sb, _c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let store = sb.store.clone();
    // ConfigMaps: no simulated controller writes them, so the stream holds only these changes.
    let cms = Gvr::new("", "v1", "configmaps");
    store.create(&cms, &ns, json!({"metadata": {"name": "a", "labels": {"app": "web"}}})).expect("a");
    store.create(&cms, &ns, json!({"metadata": {"name": "b", "labels": {"app": "db"}}})).expect("b");
    let base = format!("{}/api/v1/namespaces/{ns}/configmaps", sb.url());
    let url = format!("{base}?watch=1&resourceVersion=0&labelSelector=app%3Dweb&timeoutSeconds=20");
    let initial = read_events(&url, 1).await;
    assert_eq!(
        (initial[0]["type"].as_str(), initial[0]["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("a"))
    );
    let rv = store.resource_version();
    let relabel = |app: &'static str| {
        move |o: &mut Value| {
            o["metadata"]["labels"]["app"] = json!(app);
            Ok(())
        }
    };
    // b starts matching (ADDED), c never matches (nothing), a stops matching (DELETED), b goes (DELETED).
    store.update(&cms, &ns, "b", relabel("web")).expect("b");
    store.create(&cms, &ns, json!({"metadata": {"name": "c", "labels": {"app": "db"}}})).expect("c");
    store.update(&cms, &ns, "a", relabel("db")).expect("a");
    store.delete(&cms, &ns, "b").expect("delete b");
    let url = format!("{base}?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb&timeoutSeconds=20");
    let ev = read_events(&url, 3).await;
    let summary: Vec<(String, String)> = ev
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["object"]["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = [("ADDED", "b"), ("DELETED", "a"), ("DELETED", "b")];
    assert_eq!(summary, want.map(|(a, b)| (a.to_string(), b.to_string())));
    assert!(ev.iter().all(|e| e["object"]["metadata"]["resourceVersion"].is_string()));
}

#[tokio::test]
async fn raw_watch_sends_bookmarks_initial_events_end_and_410() {
    let (sb, _c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    sb.store.create(&Gvr::new("", "v1", "configmaps"), &ns, json!({"metadata": {"name": "a"}})).expect("a");
    let base = format!("{}/api/v1/namespaces/{ns}/configmaps", sb.url());
    let url = format!(
        "{base}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=20"
    );
    let ev = read_events(&url, 2).await;
    assert_eq!(ev[0]["type"], "ADDED");
    assert_eq!(ev[1]["type"], "BOOKMARK");
    assert_eq!(ev[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    assert_eq!(ev[1]["object"]["kind"], "ConfigMap");
    let rv = sb.store.resource_version();
    // Bookmarks also come on their own while nothing changes (every 5 s).
    let url = format!("{base}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=20");
    let ev = read_events(&url, 1).await;
    assert_eq!(ev[0]["type"], "BOOKMARK");
    assert_eq!(ev[0]["object"]["metadata"]["resourceVersion"], rv.to_string());
    sb.store.compact();
    let url = format!("{base}?watch=true&resourceVersion={rv}&timeoutSeconds=20");
    let ev = read_events(&url, 1).await;
    assert_eq!(ev[0]["type"], "ERROR");
    assert_eq!(
        (ev[0]["object"]["code"].as_u64(), ev[0]["object"]["reason"].as_str()),
        (Some(410), Some("Expired"))
    );
}

#[tokio::test]
async fn a_watch_is_held_open_until_its_timeout() {
    let (sb, _c) = common::start().await;
    let ns = common::fresh_namespace(&sb);
    let url = format!("{}/api/v1/namespaces/{ns}/configmaps?watch=true&timeoutSeconds=1", sb.url());
    let started = std::time::Instant::now();
    let body = common::http().get(&url).send().await.expect("watch").bytes().await.expect("body");
    let held = started.elapsed();
    assert!(body.is_empty());
    assert!(held >= Duration::from_millis(900), "held {held:?}");
    assert!(held < Duration::from_secs(15), "ended by the timeout, held {held:?}");
}
