//! The read side of the store: consistent list pages (`continue` tokens) and the start of a watch.
//!
//! A child of `store` so it can read the state under the same lock; it must not write.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use super::{Gvr, StatusError};
use super::{Key, ListQuery, Page, Store, Stored, WatchStart};

impl Store {
    /// A page of a list, consistent across `continue` tokens.
    pub fn list_page(&self, gvr: &Gvr, namespace: Option<&str>, q: &ListQuery) -> Result<Page, StatusError> {
        let st = self.read();
        if st.reg.get(gvr).is_none() {
            return Err(StatusError::no_such_type());
        }
        let (snap_rv, after) = match q.continue_token.as_deref().filter(|t| !t.is_empty()) {
            None => (st.rv, None),
            Some(t) => {
                let (rv, ns, name) = decode_token(t)
                    .ok_or_else(|| StatusError::bad_request("continue key is not valid: malformed token"))?;
                if rv < st.floor {
                    return Err(StatusError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can \
                         start a new list without the continue parameter.",
                    ));
                }
                (rv, Some((ns, name)))
            }
        };
        let empty = BTreeMap::new();
        let table = st.objects.get(gvr).unwrap_or(&empty);
        let in_scope = |k: &Key| namespace.is_none_or(|ns| k.0 == ns);
        let past_start = |k: &Key| after.as_ref().is_none_or(|a| k > a);
        // Undo the changes made after the snapshot, newest first, so the oldest `prev` wins.
        let mut overrides: BTreeMap<Key, Option<Arc<Stored>>> = BTreeMap::new();
        if snap_rv < st.rv {
            for h in st.history.iter().rev() {
                if h.resource_version <= snap_rv {
                    break;
                }
                let k = (h.namespace.clone(), h.name.clone());
                if h.gvr == *gvr && in_scope(&k) && past_start(&k) {
                    overrides.insert(k, h.prev.clone());
                }
            }
        }
        let lower = match (&after, namespace) {
            (Some(a), _) => Bound::Excluded(a.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let mut cur = table.range((lower, Bound::Unbounded)).take_while(|(k, _)| in_scope(k)).peekable();
        let mut ovr = overrides.into_iter().peekable();
        let matches = |s: &Stored| {
            let v = &*s.value;
            q.labels.matches(v.pointer("/metadata/labels")) && q.fields.matches(v)
        };
        let limit = q.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut last: Option<Key> = None;
        let mut more = false;
        loop {
            let next: Option<(Key, Option<Arc<Stored>>)> = match (cur.peek(), ovr.peek()) {
                (None, None) => break,
                (Some((ck, _)), Some((ok, _))) if *ck == ok => {
                    cur.next();
                    ovr.next()
                }
                (Some((ck, _)), Some((ok, _))) if ok < *ck => ovr.next(),
                (Some(_), _) => cur.next().map(|(k, v)| (k.clone(), Some(v.clone()))),
                (None, Some(_)) => ovr.next(),
            };
            let Some((k, Some(obj))) = next else { continue };
            if !matches(&obj) {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            last = Some(k);
            items.push(obj);
        }
        let continue_token = match (more, last) {
            (true, Some((ns, name))) => Some(encode_token(snap_rv, &ns, &name)),
            _ => None,
        };
        Ok(Page { items, resource_version: snap_rv, continue_token })
    }

    /// Starts a watch: with `since` None, the current objects come first (synthetic ADDED); with Some(rv), the
    /// retained events after rv, or 410 when rv is older than the history.
    pub fn watch(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        since: Option<u64>,
    ) -> Result<WatchStart, StatusError> {
        let st = self.read();
        if st.reg.get(gvr).is_none() {
            return Err(StatusError::no_such_type());
        }
        // Subscribing under the lock: writers send under the write lock, so nothing falls between the
        // snapshot and the live stream.
        let rx = self.inner.tx.subscribe();
        let in_ns = |ns: &str| namespace.is_none_or(|n| n == ns);
        let mut initial = Vec::new();
        let mut backlog = Vec::new();
        match since {
            None => {
                if let Some(t) = st.objects.get(gvr) {
                    initial = t.iter().filter(|(k, _)| in_ns(&k.0)).map(|(_, v)| v.clone()).collect();
                }
            }
            Some(rv) => {
                if rv < st.floor {
                    return Err(StatusError::expired(format!(
                        "too old resource version: {rv} ({})",
                        st.floor
                    )));
                }
                let start = st.history.partition_point(|h| h.resource_version <= rv);
                backlog = st
                    .history
                    .range(start..)
                    .filter(|h| h.gvr == *gvr && in_ns(&h.namespace))
                    .cloned()
                    .collect();
            }
        }
        Ok(WatchStart { initial, backlog, rx, resource_version: st.rv })
    }
}

pub(super) fn encode_token(rv: u64, ns: &str, name: &str) -> String {
    let raw = format!("{rv}/{ns}/{name}");
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn decode_token(t: &str) -> Option<(u64, String, String)> {
    if !t.len().is_multiple_of(2) || !t.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..t.len()).step_by(2).map(|i| u8::from_str_radix(&t[i..i + 2], 16).ok()).collect();
    let raw = String::from_utf8(bytes?).ok()?;
    let mut parts = raw.splitn(3, '/');
    let rv = parts.next()?.parse().ok()?;
    Some((rv, parts.next()?.to_string(), parts.next()?.to_string()))
}
