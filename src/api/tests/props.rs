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
