//! The per-object decode boundary of every watch: an object that does not decode is set aside with its
//! error and name, and the rest of its list or stream is kept.
//!
//! kube's `DeserializeGuard` does the same by buffering each object into a `serde_value` tree, cloning the
//! tree, then decoding; at 100,000 pods that was half the first sync's CPU (BENCHMARKS.md). This keeps the
//! object's JSON text instead (one copy, a `RawValue`) and decodes from it. It only reads from serde_json,
//! which is what kube decodes lists and watch lines with (a watch line's `type` comes before its `object`,
//! as every API server writes it). It knows nothing of the cache.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, de};
use serde_json::value::RawValue;

/// An object as decoded from a list or a watch event: `K`, or why it is not one.
#[derive(Clone, Debug)]
pub struct Guarded<K>(pub Result<K, Invalid>);

/// An object that did not decode as its kind: the error and what metadata could be read.
#[derive(Clone, Debug)]
pub struct Invalid {
    pub error: String,
    pub metadata: ObjectMeta,
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Guarded<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let text = raw.get();
        match serde_json::from_str::<K>(text) {
            Ok(obj) => Ok(Guarded(Ok(obj))),
            Err(err) => {
                // Not even an object: the list itself is malformed, and that is the list's error.
                if !text.trim_start().starts_with('{') {
                    return Err(de::Error::custom(err));
                }
                #[derive(Deserialize)]
                struct MetaOnly {
                    #[serde(default)]
                    metadata: ObjectMeta,
                }
                // Metadata that does not decode either leaves no resourceVersion: on a watch event that makes
                // kube-runtime relist, which skips the object again. Nothing is lost but the object.
                let metadata = serde_json::from_str::<MetaOnly>(text).map(|m| m.metadata).unwrap_or_default();
                Ok(Guarded(Err(Invalid { error: err.to_string(), metadata })))
            }
        }
    }
}

impl<K: Resource> Resource for Guarded<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        self.0.as_ref().map_or_else(|invalid| &invalid.metadata, K::meta)
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.as_mut().map_or_else(|invalid| &mut invalid.metadata, K::meta_mut)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::ResourceExt;
    use kube::core::{ObjectList, WatchEvent};

    use super::*;
    use crate::cache::PodView;

    const GOOD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"good","namespace":"default",
        "resourceVersion":"7","managedFields":[{"manager":"kubectl","fieldsV1":{"f:spec":{}}}]},
        "spec":{"containers":[{"name":"app","image":"img:1","env":[{"name":"A","value":"\u00e9"}]}]}}"#;
    const BAD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad","namespace":"default",
        "resourceVersion":"8"},"spec":{"containers":"not a list"}}"#;

    #[test]
    fn one_bad_item_does_not_sink_its_list() {
        let list = format!(
            r#"{{"apiVersion":"v1","kind":"PodList","metadata":{{"resourceVersion":"9"}},"items":[{GOOD},{BAD}]}}"#
        );
        let list: ObjectList<Guarded<PodView>> = serde_json::from_str(&list).expect("the list decodes");
        assert_eq!(list.metadata.resource_version.as_deref(), Some("9"));
        let good = list.items[0].0.as_ref().expect("the good pod decodes");
        assert_eq!(good.metadata.name.as_deref(), Some("good"));
        assert_eq!(good.metadata.managed_fields, None, "skipped unread");
        let bad = list.items[1].0.as_ref().expect_err("the bad pod is set aside");
        assert_eq!(bad.metadata.name.as_deref(), Some("bad"));
        assert_eq!(list.items[1].resource_version().as_deref(), Some("8"));
        assert!(bad.error.contains("invalid type"), "{}", bad.error);
    }

    #[test]
    fn watch_lines_decode_each_way() {
        let line = format!(r#"{{"type":"MODIFIED","object":{BAD}}}"#);
        match serde_json::from_str::<WatchEvent<Guarded<PodView>>>(&line).expect("the line decodes") {
            WatchEvent::Modified(g) => assert_eq!(g.meta().name.as_deref(), Some("bad")),
            other => panic!("{other:?}"),
        }
        let line = format!(r#"{{"type":"ADDED","object":{GOOD}}}"#);
        match serde_json::from_str::<WatchEvent<Guarded<PodView>>>(&line).expect("the line decodes") {
            WatchEvent::Added(g) => assert!(g.0.is_ok()),
            other => panic!("{other:?}"),
        }
        // Full k8s-openapi kinds go through the same boundary.
        let dep = r#"{"metadata":{"name":"d"},"spec":{"replicas":"three"}}"#;
        let g: Guarded<Deployment> = serde_json::from_str(dep).expect("decodes");
        assert_eq!(g.meta().name.as_deref(), Some("d"));
        assert!(g.0.is_err());
        // A list whose item is not an object is a broken list, not a skipped item.
        let broken = r#"{"metadata":{},"items":[3]}"#;
        assert!(serde_json::from_str::<ObjectList<Guarded<PodView>>>(broken).is_err());
    }
}
