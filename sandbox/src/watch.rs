//! Watches: newline-delimited JSON events over a chunked response, from the store's broadcast.
//!
//! Each watch runs in its own task writing to a bounded channel, so a slow client never blocks writers: when
//! it falls behind the broadcast it is cut off and re-watches (from history, or 410). It must not copy
//! objects: events carry the store's serialized bytes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::request::Req;
use super::response::{json_bytes, partial_metadata};
use super::select::{FieldSelector, LabelSelector};
use super::status::StatusError;
use super::store::{EventType, ResourceType, StoreEvent, Stored};
use super::table;

/// Longest a watch stays open, whatever `timeoutSeconds` asks.
const MAX_WATCH: Duration = Duration::from_secs(1800);

struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, s: &Stored) -> bool {
        let v = &*s.value;
        self.labels.matches(v.pointer("/metadata/labels")) && self.fields.matches(v)
    }
    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

/// How a watch writes one event.
struct Writer {
    rt: ResourceType,
    table: bool,
    /// PartialObjectMetadata events (kube-runtime's metadata watcher).
    metadata: bool,
    q: HashMap<String, String>,
}

impl Writer {
    fn line(&self, kind: &str, s: &Stored) -> Bytes {
        let mut out = Vec::with_capacity(s.json.len() + 32);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        if self.table {
            let t = table::table(
                &self.rt,
                std::slice::from_ref(&Arc::new(Stored::from_value(s.value.clone()))),
                None,
                &self.q,
            );
            out.extend_from_slice(&serde_json::to_vec(&t).unwrap_or_default());
        } else if self.metadata {
            out.extend_from_slice(&serde_json::to_vec(&partial_metadata(&s.value)).unwrap_or_default());
        } else {
            out.extend_from_slice(&s.json);
        }
        out.extend_from_slice(b"}\n");
        Bytes::from(out)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = if self.metadata {
            partial_metadata(&json!({"metadata": meta}))
        } else {
            json!({"kind": self.rt.kind, "apiVersion": self.rt.gvr.api_version(), "metadata": meta})
        };
        let mut line = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

fn error_line(e: &StatusError) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_json()})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// GET …?watch=true.
pub async fn serve(r: &Req, rt: &ResourceType) -> Result<Response, StatusError> {
    let filter = Filter {
        labels: LabelSelector::parse(r.q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        fields: FieldSelector::parse(r.q.get("fieldSelector").map(String::as_str).unwrap_or(""))?,
    };
    let since = match r.q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| StatusError::bad_request(format!("invalid resourceVersion {v:?}")))?,
        ),
    };
    let send_initial = matches!(r.q.get("sendInitialEvents").map(String::as_str), Some("true" | "1"));
    let since = if send_initial { None } else { since };
    let bookmarks = matches!(r.q.get("allowWatchBookmarks").map(String::as_str), Some("true" | "1"));
    let timeout =
        r.q.get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(MAX_WATCH)
            .min(MAX_WATCH);
    let writer =
        Writer { rt: rt.clone(), table: r.wants_table(), metadata: r.wants_metadata(), q: r.q.clone() };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let ns = r.t.namespace.clone();
    match r.st.store.watch(&rt.gvr, ns.as_deref(), since) {
        Err(e) => {
            // Kubernetes answers an expired watch with 200 and one ERROR event.
            let _ = tx.try_send(error_line(&e));
        }
        Ok(start) => {
            let close = r.st.close_watches.subscribe();
            let every = r.st.bookmark_every;
            tokio::spawn(run(
                start,
                tx,
                writer,
                filter,
                ns,
                Opts { send_initial, bookmarks, timeout, every },
                close,
            ));
        }
    }
    let stream = ReceiverStream::new(rx).map(Ok::<Bytes, Infallible>);
    let mut resp = json_bytes(StatusCode::OK, Body::from_stream(stream));
    resp.headers_mut()
        .insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache, private"));
    Ok(resp)
}

struct Opts {
    send_initial: bool,
    bookmarks: bool,
    timeout: Duration,
    every: Duration,
}

async fn run(
    start: super::store::WatchStart,
    tx: mpsc::Sender<Bytes>,
    w: Writer,
    filter: Filter,
    ns: Option<String>,
    o: Opts,
    mut close: tokio::sync::watch::Receiver<u64>,
) {
    let mut last_rv = start.resource_version;
    for s in &start.initial {
        if filter.matches(s) && tx.send(w.line("ADDED", s)).await.is_err() {
            return;
        }
    }
    if o.send_initial && o.bookmarks && tx.send(w.bookmark(last_rv, true)).await.is_err() {
        return;
    }
    for ev in &start.backlog {
        if let Some(line) = render(&w, &filter, ev)
            && tx.send(line).await.is_err()
        {
            return;
        }
    }
    let mut rx = start.rx;
    let deadline = tokio::time::Instant::now() + o.timeout;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + o.every, o.every);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = close.changed() => return,
            // The client went away: free the broadcast slot now, not at the timeout.
            _ = tx.closed() => return,
            _ = tick.tick(), if o.bookmarks => {
                if tx.send(w.bookmark(last_rv, false)).await.is_err() {
                    return;
                }
            }
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    last_rv = last_rv.max(ev.resource_version);
                    if ev.gvr != w.rt.gvr || ns.as_deref().is_some_and(|n| n != ev.namespace) {
                        continue;
                    }
                    if let Some(line) = render(&w, &filter, &ev)
                        && tx.send(line).await.is_err()
                    {
                        return;
                    }
                }
                // Too slow: end the watch; the client resumes from its last resourceVersion.
                Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// The event line a watcher with this filter sees, if any: an object that stops matching is DELETED, one
/// that starts matching is ADDED.
fn render(w: &Writer, f: &Filter, ev: &StoreEvent) -> Option<Bytes> {
    let now = Stored::shared(ev);
    if f.is_empty() {
        return Some(w.line(ev.event_type.as_str(), &now));
    }
    let was = ev.prev.as_ref().is_some_and(|p| f.matches(p));
    let is = ev.event_type != EventType::Deleted && f.matches(&now);
    let kind = match (ev.event_type, was, is) {
        (EventType::Deleted, true, _) => "DELETED",
        (_, false, true) => "ADDED",
        (_, true, true) => "MODIFIED",
        (_, true, false) => "DELETED",
        _ => return None,
    };
    Some(w.line(kind, &now))
}

impl Stored {
    fn from_value(v: Arc<Value>) -> Stored {
        Stored { json: Bytes::new(), value: v }
    }
    fn shared(ev: &StoreEvent) -> Stored {
        Stored { value: ev.object.clone(), json: ev.json.clone() }
    }
}
