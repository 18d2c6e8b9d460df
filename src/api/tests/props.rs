//! Random paths, query strings and bodies never give a 500 and never panic.

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;

use super::{app, send_request};

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("k8s".to_string()),
        Just("ecs".to_string()),
        Just("api".to_string()),
        Just("v1".to_string()),
        Just("machines".to_string()),
        Just("controllers".to_string()),
        Just("services".to_string()),
        Just("secrets".to_string()),
        Just("gateway".to_string()),
        Just("httproutes".to_string()),
        Just("labels".to_string()),
        Just("default".to_string()),
        Just("web".to_string()),
        "[a-zA-Z0-9%._~-]{0,12}",
        "(%[0-9A-Fa-f]{2}){1,4}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("labels=app%3Dweb".to_string()),
            Just("labels[]=tier=front".to_string()),
            Just("kind=Deployment".to_string()),
            Just("apiVersion=apps%2Fv1".to_string()),
            "[a-zA-Z%=&\\[\\]0-9]{0,16}",
        ],
        0..4,
    )
    .prop_map(|parts| parts.join("&"))
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(r#"{"replicas":3}"#.to_string()),
        Just(r#"{"labels":{"a":null}}"#.to_string()),
        Just(r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}"#.to_string()),
        (-5i64..5_000_000).prop_map(|n| format!(r#"{{"replicas":{n}}}"#)),
        ".{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn random_requests_never_fail_the_server(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
        segments in prop::collection::vec(segment(), 0..7),
        query in query(),
        body in body(),
        json in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let app = app();
        let uri = format!("/{}{}{}", segments.join("/"), if query.is_empty() { "" } else { "?" }, query);
        let mut builder = Request::builder().method(method).uri(uri.as_str());
        if json {
            builder = builder.header("content-type", "application/json");
        }
        // Some generated URIs are not valid request targets: http refuses them before the router would.
        let Ok(request) = builder.body(Body::from(body)) else { return Ok(()) };
        let reply = runtime.block_on(send_request(&app.router, request));
        prop_assert!(reply.status.as_u16() < 500 || reply.status.as_u16() == 501,
            "{method} {uri} -> {} {}", reply.status, reply.text);
        prop_assert_eq!(reply.header("x-api-version"), Some("v1"));
        if !reply.status.is_success() {
            prop_assert_eq!(reply.header("content-type"), Some("application/problem+json"));
        }
    }
}

/// A path segment as a caller may spell it: as is, fully percent-encoded, or with its first byte encoded.
fn spelled(values: Vec<&'static str>) -> impl Strategy<Value = String> {
    (prop::sample::select(values), 0..3u8).prop_map(|(value, how)| match how {
        0 => value.to_string(),
        1 => value.bytes().map(|b| format!("%{b:02X}")).collect(),
        _ => format!("%{:02x}{}", value.as_bytes()[0], &value[1..]),
    })
}

/// `(method, template, body)` of every API route, the way the router declares them.
const ROUTES: [(&str, &str, &str); 17] = [
    ("GET", "/providers", ""),
    ("GET", "/{provider}/machines/{scope}", ""),
    ("GET", "/{provider}/machines/{scope}/{name}", ""),
    ("PATCH", "/{provider}/machines/{scope}/{name}/labels", r#"{"labels":{"a":"b"}}"#),
    ("GET", "/{provider}/controllers/{scope}", ""),
    ("PUT", "/{provider}/controllers/{scope}", r#"{"kind":"Deployment","metadata":{"name":"w"}}"#),
    ("GET", "/{provider}/controllers/{scope}/{name}", ""),
    ("POST", "/{provider}/controllers/{scope}/{name}", r#"{"replicas":2}"#),
    ("DELETE", "/{provider}/controllers/{scope}/{name}", ""),
    ("GET", "/{provider}/services/{scope}", ""),
    ("PUT", "/{provider}/services/{scope}", r#"{"kind":"Service","metadata":{"name":"s"}}"#),
    ("DELETE", "/{provider}/services/{scope}/{name}", ""),
    ("PUT", "/{provider}/secrets/{scope}", r#"{"kind":"Secret","metadata":{"name":"s"}}"#),
    ("GET", "/{provider}/gateway/gateways/{scope}", ""),
    ("PUT", "/{provider}/gateway/httproutes/{scope}", r#"{"kind":"HTTPRoute","metadata":{"name":"r"}}"#),
    ("GET", "/{provider}/gateway/httproutes/{scope}/{name}", ""),
    ("DELETE", "/{provider}/gateway/httproutes/{scope}/{name}", ""),
];

/// The verb a fake provider's recorded call stands for.
fn verb_of(call: &str) -> &'static str {
    match call.split(' ').next().unwrap_or("") {
        "controller" => "get",
        "patch_labels" => "patch",
        "scale" | "apply" => "update",
        _ => "delete",
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    /// Whatever the spelling, what the guard authorized (the `Target` on the response) is what the handler
    /// did: same provider, verb, scope and object; and nothing is done without a `Target`.
    #[test]
    fn the_guard_authorizes_what_the_handler_acts_on(
        route in 0..ROUTES.len(),
        versioned in any::<bool>(),
        provider in spelled(vec!["k8s", "ecs", "K8s", "eCs", "gcp"]),
        scope in spelled(vec!["default", "my_cluster", "other", "Default", "a.b", "ns-1"]),
        name in spelled(vec!["web", "web-1", "route-1", "We", "a/b", "..", "x.y"]),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let app = app();
        let (method, template, body) = ROUTES[route];
        let path = template.replace("{provider}", &provider).replace("{scope}", &scope).replace("{name}", &name);
        let uri = format!("{}{path}", if versioned { "/api/v1" } else { "" });
        let Ok(request) = Request::builder().method(method).uri(uri.as_str())
            .header("content-type", "application/json").body(Body::from(body)) else { return Ok(()) };
        let response = runtime.block_on(tower::ServiceExt::oneshot(app.router.clone(), request))
            .unwrap_or_else(|e| match e {});
        let target = response.extensions().get::<crate::api::target::Target>().cloned();
        let calls: Vec<(&str, String)> = [("k8s", &app.k8s), ("ecs", &app.ecs)]
            .into_iter()
            .flat_map(|(p, fake)| fake.calls().into_iter().map(move |c| (p, c)))
            .collect();
        prop_assert!(calls.len() <= 1, "{method} {uri}: {calls:?}");
        if response.status().is_success() {
            prop_assert!(target.is_some(), "{method} {uri} answered 200 without the guard's Target");
        }
        if let Some((provider, call)) = calls.first() {
            let target = target.clone().ok_or_else(|| TestCaseError::fail(format!("{uri}: {call} without a Target")))?;
            let object = call.split(' ').nth(1).unwrap_or("");
            let (scope, name) = object.split_once('/').unwrap_or((object, ""));
            prop_assert_eq!(target.provider, *provider, "{} {}: {}", method, uri, call);
            prop_assert_eq!(target.access.verb, verb_of(call), "{} {}: {}", method, uri, call);
            prop_assert_eq!(target.scope(), scope, "{} {}: {}", method, uri, call);
            if !name.is_empty() {
                prop_assert_eq!(target.name(), name, "{} {}: {}", method, uri, call);
            }
        }
    }
}
