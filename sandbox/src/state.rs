//! `--state FILE`: the store's objects saved as JSON, loaded back at start.
//!
//! Writes go to a temporary file renamed into place, so a crash never leaves half a file. It must not save
//! anything but objects (no history, no faults).

use std::path::Path;

use serde_json::{Value, json};

use super::registry::Gvr;
use super::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read or write the state file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the state file {path} is not valid: {why}")]
    Invalid { path: String, why: String },
}

pub fn save(store: &Store, path: &Path) -> Result<(), StateError> {
    let items: Vec<Value> = store
        .export()
        .into_iter()
        .map(|(g, o)| json!({"group": g.group, "version": g.version, "resource": g.resource, "object": o}))
        .collect();
    let body = serde_json::to_vec(&json!({"resourceVersion": store.resource_version(), "items": items}))
        .map_err(|e| StateError::Invalid { path: path.display().to_string(), why: e.to_string() })?;
    let tmp = path.with_extension("tmp");
    let io = |source| StateError::Io { path: path.display().to_string(), source };
    std::fs::write(&tmp, body).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Loads a saved file into an empty store; Ok(false) when the file does not exist.
pub fn load(store: &Store, path: &Path) -> Result<bool, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(StateError::Io { path: path.display().to_string(), source }),
    };
    let invalid = |why: String| StateError::Invalid { path: path.display().to_string(), why };
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let items = v.get("items").and_then(Value::as_array).ok_or_else(|| invalid("no items".into()))?;
    let mut out = Vec::new();
    for it in items {
        let s = |k: &str| it.get(k).and_then(Value::as_str).unwrap_or_default();
        let obj = it.get("object").cloned().ok_or_else(|| invalid("an item has no object".into()))?;
        out.push((Gvr::new(s("group"), s("version"), s("resource")), obj));
    }
    store.import(out).map_err(|e| invalid(e.message))?;
    Ok(true)
}
