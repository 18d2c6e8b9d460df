//! Label and field selectors, parsed once per request and matched against stored objects.
//!
//! It must not allocate per matched object: matching only borrows the object.

use serde_json::Value;

use super::status::StatusError;

#[derive(Clone, Debug, PartialEq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector(Vec<Req>);

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, StatusError> {
        let bad = |why: &str| StatusError::bad_request(format!("unable to parse requirement: {why}: {s:?}"));
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some(k) = part.strip_prefix('!') {
                Req::NotExists(key(k.trim()).map_err(|_| bad("invalid label key"))?)
            } else if let Some((k, rest)) = split_word(part, " notin ") {
                Req::NotIn(key(k)?, set(rest).ok_or_else(|| bad("expected a set"))?)
            } else if let Some((k, rest)) = split_word(part, " in ") {
                Req::In(key(k)?, set(rest).ok_or_else(|| bad("expected a set"))?)
            } else if let Some((k, v)) = part.split_once("!=") {
                Req::Ne(key(k)?, value(v)?)
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(key(k)?, value(v)?)
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(key(k)?, value(v)?)
            } else {
                Req::Exists(key(part)?)
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Matches a `metadata.labels` map (or its absence).
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::Ne(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn split_word<'a>(part: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let idx = part.find(word)?;
    Some((&part[..idx], &part[idx + word.len()..]))
}

fn set(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn key(k: &str) -> Result<String, StatusError> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok { Ok(k.to_string()) } else { Err(StatusError::bad_request(format!("invalid label key {k:?}"))) }
}

fn value(v: &str) -> Result<String, StatusError> {
    let v = v.trim();
    let ok = v.len() <= 63 && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(v.to_string()) } else { Err(StatusError::bad_request(format!("invalid label value {v:?}"))) }
}

/// A parsed `fieldSelector`: `path=value`, `path==value`, `path!=value`, comma separated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, StatusError> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(StatusError::bad_request(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                )));
            };
            let k = k.trim();
            // Any dotted path is matched (events are looked up by `involvedObject.*`, CRs by spec fields);
            // only malformed labels are refused.
            let well_formed = !k.is_empty()
                && k.split('.').all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric()));
            if !well_formed {
                return Err(StatusError::bad_request(format!("field label not supported: {k}")));
            }
            out.push((k.to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let mut cur = Some(obj);
            for seg in path.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            let have = cur.and_then(Value::as_str).unwrap_or("");
            (have == want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_operators_match_like_kubernetes() {
        let l = json!({"app": "web", "tier": "front"});
        let m = |s: &str| LabelSelector::parse(s).map(|sel| sel.matches(Some(&l)));
        assert_eq!(m("app=web"), Ok(true));
        assert_eq!(m("app==web,tier!=back"), Ok(true));
        assert_eq!(m("app in (api, web)"), Ok(true));
        assert_eq!(m("app notin (web)"), Ok(false));
        assert_eq!(m("tier"), Ok(true));
        assert_eq!(m("!tier"), Ok(false));
        assert_eq!(m("!missing,app"), Ok(true));
        assert!(m("app in web").is_err());
        assert!(LabelSelector::parse("a=b").is_ok_and(|s| !s.matches(None)));
    }

    #[test]
    fn field_selectors_read_the_supported_paths() {
        let p = json!({"metadata": {"name": "a", "namespace": "ns"}, "status": {"phase": "Running"}});
        assert!(FieldSelector::parse("metadata.name=a,status.phase!=Pending").is_ok_and(|f| f.matches(&p)));
        assert!(FieldSelector::parse("metadata.namespace==other").is_ok_and(|f| !f.matches(&p)));
        assert!(FieldSelector::parse("spec..x=y").is_err());
        assert!(FieldSelector::parse("no-equals").is_err());
        let ev = json!({"involvedObject": {"name": "p", "kind": "Pod"}});
        assert!(
            FieldSelector::parse("involvedObject.name=p,involvedObject.kind=Pod")
                .is_ok_and(|f| f.matches(&ev))
        );
    }
}
