//! Decoding of `application/vnd.kubernetes.protobuf` request bodies, for the typed creates kubectl sends
//! that way (`kubectl create namespace|configmap|secret|serviceaccount|deployment|service`) and the
//! DeleteOptions of typed deletes (helm uninstall).
//!
//! A small protobuf wire reader plus field tables for the messages those commands use; unknown fields are
//! skipped. It must not be used for responses (the server always answers JSON, which clients accept).

use serde_json::{Map, Value, json};

use super::status::StatusError;

/// How one field decodes.
#[derive(Clone, Copy)]
enum T {
    Str,
    Bytes,
    Int,
    Bool,
    Time,
    IntOrStr,
    Quantity,
    MapStr,
    MapBytes,
    MapQuantity,
    Msg(&'static [F]),
}

/// A field: number, JSON name, type, repeated, keep-when-zero (pointer fields in Go).
type F = (u32, &'static str, T, bool, bool);

const fn f(n: u32, name: &'static str, t: T) -> F {
    (n, name, t, false, false)
}
const fn rep(n: u32, name: &'static str, t: T) -> F {
    (n, name, t, true, false)
}
const fn ptr(n: u32, name: &'static str, t: T) -> F {
    (n, name, t, false, true)
}

const OWNER_REF: &[F] = &[
    f(5, "apiVersion", T::Str),
    f(1, "kind", T::Str),
    f(3, "name", T::Str),
    f(4, "uid", T::Str),
    ptr(6, "controller", T::Bool),
    ptr(7, "blockOwnerDeletion", T::Bool),
];
const OBJECT_META: &[F] = &[
    f(1, "name", T::Str),
    f(2, "generateName", T::Str),
    f(3, "namespace", T::Str),
    f(5, "uid", T::Str),
    f(6, "resourceVersion", T::Str),
    f(7, "generation", T::Int),
    f(8, "creationTimestamp", T::Time),
    f(11, "labels", T::MapStr),
    f(12, "annotations", T::MapStr),
    rep(13, "ownerReferences", T::Msg(OWNER_REF)),
    rep(14, "finalizers", T::Str),
];
const NAMESPACE_SPEC: &[F] = &[rep(1, "finalizers", T::Str)];
const NAMESPACE: &[F] = &[f(1, "metadata", T::Msg(OBJECT_META)), f(2, "spec", T::Msg(NAMESPACE_SPEC))];
const CONFIG_MAP: &[F] = &[
    f(1, "metadata", T::Msg(OBJECT_META)),
    ptr(4, "immutable", T::Bool),
    f(2, "data", T::MapStr),
    f(3, "binaryData", T::MapBytes),
];
const SECRET: &[F] = &[
    f(1, "metadata", T::Msg(OBJECT_META)),
    ptr(5, "immutable", T::Bool),
    f(2, "data", T::MapBytes),
    f(4, "stringData", T::MapStr),
    f(3, "type", T::Str),
];
const OBJECT_REF: &[F] = &[
    f(1, "kind", T::Str),
    f(2, "namespace", T::Str),
    f(3, "name", T::Str),
    f(4, "uid", T::Str),
    f(5, "apiVersion", T::Str),
];
const LOCAL_REF: &[F] = &[f(1, "name", T::Str)];
const SERVICE_ACCOUNT: &[F] = &[
    f(1, "metadata", T::Msg(OBJECT_META)),
    rep(2, "secrets", T::Msg(OBJECT_REF)),
    rep(3, "imagePullSecrets", T::Msg(LOCAL_REF)),
    ptr(4, "automountServiceAccountToken", T::Bool),
];
const SERVICE_PORT: &[F] = &[
    f(1, "name", T::Str),
    f(2, "protocol", T::Str),
    f(6, "appProtocol", T::Str),
    f(3, "port", T::Int),
    f(4, "targetPort", T::IntOrStr),
    f(5, "nodePort", T::Int),
];
const SERVICE_SPEC: &[F] = &[
    rep(1, "ports", T::Msg(SERVICE_PORT)),
    f(2, "selector", T::MapStr),
    f(3, "clusterIP", T::Str),
    rep(18, "clusterIPs", T::Str),
    f(4, "type", T::Str),
    rep(5, "externalIPs", T::Str),
    f(7, "sessionAffinity", T::Str),
    f(10, "externalName", T::Str),
];
const SERVICE: &[F] = &[f(1, "metadata", T::Msg(OBJECT_META)), f(2, "spec", T::Msg(SERVICE_SPEC))];
const SELECTOR_REQ: &[F] = &[f(1, "key", T::Str), f(2, "operator", T::Str), rep(3, "values", T::Str)];
const LABEL_SELECTOR: &[F] =
    &[f(1, "matchLabels", T::MapStr), rep(2, "matchExpressions", T::Msg(SELECTOR_REQ))];
const CONTAINER_PORT: &[F] = &[
    f(1, "name", T::Str),
    f(2, "hostPort", T::Int),
    f(3, "containerPort", T::Int),
    f(4, "protocol", T::Str),
    f(5, "hostIP", T::Str),
];
const ENV_VAR: &[F] = &[f(1, "name", T::Str), ptr(2, "value", T::Str)];
const RESOURCES: &[F] = &[f(1, "limits", T::MapQuantity), f(2, "requests", T::MapQuantity)];
const CONTAINER: &[F] = &[
    f(1, "name", T::Str),
    f(2, "image", T::Str),
    rep(3, "command", T::Str),
    rep(4, "args", T::Str),
    f(5, "workingDir", T::Str),
    rep(6, "ports", T::Msg(CONTAINER_PORT)),
    rep(7, "env", T::Msg(ENV_VAR)),
    f(8, "resources", T::Msg(RESOURCES)),
    f(13, "terminationMessagePath", T::Str),
    f(20, "terminationMessagePolicy", T::Str),
    f(14, "imagePullPolicy", T::Str),
    f(16, "stdin", T::Bool),
    f(17, "stdinOnce", T::Bool),
    f(18, "tty", T::Bool),
];
const POD_SPEC: &[F] = &[
    rep(20, "initContainers", T::Msg(CONTAINER)),
    rep(2, "containers", T::Msg(CONTAINER)),
    f(3, "restartPolicy", T::Str),
    ptr(4, "terminationGracePeriodSeconds", T::Int),
    f(6, "dnsPolicy", T::Str),
    f(7, "nodeSelector", T::MapStr),
    f(8, "serviceAccountName", T::Str),
    f(10, "nodeName", T::Str),
    rep(15, "imagePullSecrets", T::Msg(LOCAL_REF)),
    f(19, "schedulerName", T::Str),
];
const POD_TEMPLATE: &[F] = &[f(1, "metadata", T::Msg(OBJECT_META)), f(2, "spec", T::Msg(POD_SPEC))];
const ROLLING_UPDATE: &[F] = &[f(1, "maxUnavailable", T::IntOrStr), f(2, "maxSurge", T::IntOrStr)];
const STRATEGY: &[F] = &[f(1, "type", T::Str), f(2, "rollingUpdate", T::Msg(ROLLING_UPDATE))];
const DEPLOYMENT_SPEC: &[F] = &[
    ptr(1, "replicas", T::Int),
    f(2, "selector", T::Msg(LABEL_SELECTOR)),
    f(3, "template", T::Msg(POD_TEMPLATE)),
    f(4, "strategy", T::Msg(STRATEGY)),
    f(5, "minReadySeconds", T::Int),
    ptr(6, "revisionHistoryLimit", T::Int),
    f(7, "paused", T::Bool),
    ptr(9, "progressDeadlineSeconds", T::Int),
];
const DEPLOYMENT: &[F] = &[f(1, "metadata", T::Msg(OBJECT_META)), f(2, "spec", T::Msg(DEPLOYMENT_SPEC))];
const POD: &[F] = &[f(1, "metadata", T::Msg(OBJECT_META)), f(2, "spec", T::Msg(POD_SPEC))];

const PRECONDITIONS: &[F] = &[ptr(1, "uid", T::Str), ptr(2, "resourceVersion", T::Str)];
/// The body of a typed DELETE (helm's release storage deletes its Secrets this way).
const DELETE_OPTIONS: &[F] = &[
    ptr(1, "gracePeriodSeconds", T::Int),
    f(2, "preconditions", T::Msg(PRECONDITIONS)),
    ptr(3, "orphanDependents", T::Bool),
    ptr(4, "propagationPolicy", T::Str),
    rep(5, "dryRun", T::Str),
];

fn schema_for(api_version: &str, kind: &str) -> Option<&'static [F]> {
    Some(match (api_version, kind) {
        // Registered in every group version; clients send the version of the resource they delete.
        (_, "DeleteOptions") => DELETE_OPTIONS,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1", "Service") => SERVICE,
        ("v1", "Pod") => POD,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        _ => return None,
    })
}

fn unsupported(why: &str) -> StatusError {
    StatusError::new(
        415,
        "UnsupportedMediaType",
        format!("the sandbox decodes protobuf only for simple typed creates ({why}); send application/json"),
    )
}

/// A protobuf request body (`k8s\0` + runtime.Unknown) as the JSON object it encodes.
pub fn decode(body: &[u8]) -> Result<Value, StatusError> {
    let bad = || StatusError::bad_request("the protobuf body could not be decoded");
    let rest = body.strip_prefix(b"k8s\0").ok_or_else(bad)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut r = Reader { b: rest };
    while !r.done() {
        let (n, wt) = r.tag().ok_or_else(bad)?;
        match (n, wt) {
            (1, 2) => {
                let mut tm = Reader { b: r.len_delim().ok_or_else(bad)? };
                while !tm.done() {
                    let (n, wt) = tm.tag().ok_or_else(bad)?;
                    match (n, wt) {
                        (1, 2) => api_version = tm.string().ok_or_else(bad)?,
                        (2, 2) => kind = tm.string().ok_or_else(bad)?,
                        _ => tm.skip(wt).ok_or_else(bad)?,
                    }
                }
            }
            (2, 2) => raw = r.len_delim().ok_or_else(bad)?,
            _ => r.skip(wt).ok_or_else(bad)?,
        }
    }
    let schema =
        schema_for(&api_version, &kind).ok_or_else(|| unsupported(&format!("{api_version} {kind}")))?;
    let mut obj = message(raw, schema).ok_or_else(bad)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.b.is_empty()
    }
    fn varint(&mut self) -> Option<u64> {
        let mut out = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self.b.split_first()?;
            self.b = rest;
            out |= ((byte & 0x7f) as u64) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(out);
            }
        }
        None
    }
    fn tag(&mut self) -> Option<(u32, u8)> {
        let t = self.varint()?;
        Some(((t >> 3) as u32, (t & 7) as u8))
    }
    fn len_delim(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        if n > self.b.len() {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.len_delim()?.to_vec()).ok()
    }
    fn skip(&mut self, wt: u8) -> Option<()> {
        match wt {
            0 => self.varint().map(|_| ()),
            1 => self.fixed(8),
            2 => self.len_delim().map(|_| ()),
            5 => self.fixed(4),
            _ => None,
        }
    }
    fn fixed(&mut self, n: usize) -> Option<()> {
        if n > self.b.len() {
            return None;
        }
        self.b = &self.b[n..];
        Some(())
    }
}

fn message(bytes: &[u8], schema: &[F]) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let mut r = Reader { b: bytes };
    while !r.done() {
        let (n, wt) = r.tag()?;
        let Some(&(_, name, t, repeated, keep_zero)) = schema.iter().find(|x| x.0 == n) else {
            r.skip(wt)?;
            continue;
        };
        let v = match t {
            T::MapStr | T::MapBytes | T::MapQuantity => {
                let (k, v) = map_entry(r.len_delim()?, t)?;
                let m = out.entry(name).or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
            _ => scalar(&mut r, wt, t)?,
        };
        if repeated {
            if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                a.push(v);
            }
        } else if keep_zero || !is_zero(&v) {
            out.insert(name.to_string(), v);
        }
    }
    Some(out)
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(b) => !b,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
    }
}

fn scalar(r: &mut Reader<'_>, wt: u8, t: T) -> Option<Value> {
    Some(match (t, wt) {
        (T::Str, 2) => json!(r.string()?),
        (T::Bytes, 2) => json!(base64(r.len_delim()?)),
        // Go's int32/int64 are two's complement in the varint.
        (T::Int, 0) => json!(r.varint()? as i64),
        (T::Bool, 0) => json!(r.varint()? != 0),
        (T::Msg(s), 2) => Value::Object(message(r.len_delim()?, s)?),
        (T::Time, 2) => {
            let m = message(r.len_delim()?, &[f(1, "seconds", T::Int)])?;
            // Go sends its zero time for an unset timestamp: that means absent.
            match m.get("seconds").and_then(Value::as_i64).filter(|s| *s != 0) {
                Some(secs) => json!(jiff::Timestamp::from_second(secs).ok()?.to_string()),
                None => Value::Null,
            }
        }
        (T::Quantity, 2) => {
            let m = message(r.len_delim()?, &[f(1, "string", T::Str)])?;
            m.get("string").cloned().unwrap_or_else(|| json!("0"))
        }
        (T::IntOrStr, 2) => {
            let m = message(
                r.len_delim()?,
                &[ptr(1, "type", T::Int), ptr(2, "intVal", T::Int), ptr(3, "strVal", T::Str)],
            )?;
            if m.get("type").and_then(Value::as_i64) == Some(1) {
                m.get("strVal").cloned().unwrap_or_else(|| json!(""))
            } else {
                m.get("intVal").cloned().unwrap_or_else(|| json!(0))
            }
        }
        _ => {
            r.skip(wt)?;
            Value::Null
        }
    })
}

fn map_entry(bytes: &[u8], t: T) -> Option<(String, Value)> {
    let vt = match t {
        T::MapBytes => T::Bytes,
        T::MapQuantity => T::Quantity,
        _ => T::Str,
    };
    let m = message(bytes, &[ptr(1, "k", T::Str), ptr(2, "v", vt)])?;
    let k = m.get("k").and_then(Value::as_str).unwrap_or_default().to_string();
    let v = m.get("v").cloned().unwrap_or_else(|| json!(""));
    Some((k, v))
}

pub(crate) fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, x)| acc | (*x as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((n << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_delete_options_of_any_group_version() {
        let pre = [field(1, b"u-1"), field(2, b"42")].concat();
        let raw = [field(2, &pre), field(4, b"Background"), field(5, b"All")].concat();
        for version in [&b"v1"[..], b"meta.k8s.io/v1"] {
            let tm = [field(1, version), field(2, b"DeleteOptions")].concat();
            let v = decode(&[b"k8s\0".to_vec(), field(1, &tm), field(2, &raw)].concat()).expect("decodes");
            assert_eq!(v["propagationPolicy"], "Background");
            assert_eq!(v["dryRun"], json!(["All"]));
            assert_eq!(v["preconditions"], json!({"uid": "u-1", "resourceVersion": "42"}));
        }
    }

    #[test]
    fn decodes_a_configmap_and_base64() {
        let meta = [field(1, b"cm"), field(3, b"")].concat();
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let bin = [field(1, b"b"), field(2, b"hi!?")].concat();
        let raw = [field(1, &meta), field(2, &entry), field(3, &bin)].concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &raw)].concat();
        let v = decode(&body).expect("decodes");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"},
                "binaryData": {"b": "aGkhPw=="}})
        );
        assert_eq!(base64(b"a"), "YQ==");
        assert!(decode(b"k8s\0\x0a\xff").is_err());
        assert_eq!(
            decode(
                &[b"k8s\0".to_vec(), field(1, &[field(1, b"batch/v1"), field(2, b"Job")].concat())].concat()
            )
            .err()
            .map(|e| e.code),
            Some(415)
        );
    }
}
