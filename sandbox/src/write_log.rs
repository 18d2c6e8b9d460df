//! The record of who wrote what, in the order the writes landed, for `/sandbox/writes`: chaos tests check
//! from it that two replicas never wrote in the same stretch of time, and how often one target was written.
//!
//! Only writes that succeeded are recorded (a hung request whose client gave up never lands). It keeps the
//! newest `CAPACITY` entries, one short mutex section per write, and never records credentials or bodies.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

use super::stats::Access;

const CAPACITY: usize = 100_000;

struct Entry {
    micros: u64,
    user: String,
    verb: &'static str,
    resource: String,
    namespace: String,
    name: String,
    code: u16,
}

pub struct WriteLog {
    started: Instant,
    entries: Mutex<VecDeque<Entry>>,
}

impl Default for WriteLog {
    fn default() -> Self {
        WriteLog { started: Instant::now(), entries: Mutex::default() }
    }
}

/// The verbs that change objects.
pub fn is_write(verb: &str) -> bool {
    matches!(verb, "create" | "update" | "patch" | "delete" | "deletecollection")
}

impl WriteLog {
    /// Records a write that answered `code` (< 400 only).
    pub fn record(&self, a: &Access<'_>, verb: &'static str, user: &str, code: u16) {
        if !is_write(verb) || code >= 400 {
            return;
        }
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back(Entry {
            micros,
            user: user.to_string(),
            verb,
            resource: a.resource.to_string(),
            namespace: a.namespace.to_string(),
            name: a.name.to_string(),
            code,
        });
    }

    pub fn reset(&self) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// `{"writes": [{"at_us", "user", "verb", "resource", "namespace", "name", "code"}]}`, oldest first;
    /// `at_us` counts from the sandbox's start.
    pub fn to_json(&self) -> Value {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let writes: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({"at_us": e.micros, "user": e.user, "verb": e.verb, "resource": e.resource,
                       "namespace": e.namespace, "name": e.name, "code": e.code})
            })
            .collect();
        json!({ "writes": writes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_successful_writes_are_logged_in_order() {
        let log = WriteLog::default();
        let a = |resource| Access { verb: "", group: "apps", resource, namespace: "d", name: "web" };
        log.record(&a("deployments/scale"), "update", "replica-a", 200);
        log.record(&a("deployments/scale"), "update", "replica-b", 409);
        log.record(&a("deployments"), "get", "replica-b", 200);
        log.record(&a("leases"), "update", "replica-b", 200);
        let v = log.to_json();
        let users: Vec<&str> =
            v["writes"].as_array().unwrap().iter().map(|w| w["user"].as_str().unwrap()).collect();
        assert_eq!(users, ["replica-a", "replica-b"]);
        assert_eq!(v["writes"][1]["resource"], "leases");
        log.reset();
        assert_eq!(log.to_json()["writes"].as_array().map(Vec::len), Some(0));
    }
}
