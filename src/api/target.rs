//! What a request acts on, decided once from the route the router matched (its template) and the
//! percent-decoded path parameters the router captured: provider, scope, object name, and the RBAC access
//! (verb, resource, subresource) the route stands for.
//!
//! The guard authorizes exactly this [`Target`] and puts it in the request; the path extractors hand exactly
//! this to the handler. So `/%6B8s/...` is checked as what the handler acts on (`k8s`), never as the raw
//! text. A route this table does not know is refused, never passed through.

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};

use crate::api::names::{truncate, validate_object_name, validate_scope};
use crate::api::problem::Problem;
use crate::provider::Access;

/// The versioned alias of every API route.
pub const API_PREFIX: &str = "/api/v1";

/// The providers a path can name; any other first segment is an unknown route.
pub const KNOWN_PROVIDERS: [&str; 2] = ["k8s", "ecs"];

/// `(method, template, verb, resource, subresource)` of every API route.
const ROUTES: [(Method, &str, &str, &str, &str); 17] = [
    (Method::GET, "/providers", "list", "providers", ""),
    (Method::GET, "/{provider}/machines/{scope}", "list", "machines", ""),
    (Method::GET, "/{provider}/machines/{scope}/{id}", "get", "machines", ""),
    (Method::PATCH, "/{provider}/machines/{scope}/{id}/labels", "patch", "machines", ""),
    (Method::GET, "/{provider}/controllers/{scope}", "list", "controllers", ""),
    (Method::PUT, "/{provider}/controllers/{scope}", "update", "controllers", ""),
    (Method::GET, "/{provider}/controllers/{scope}/{name}", "get", "controllers", ""),
    (Method::POST, "/{provider}/controllers/{scope}/{name}", "update", "controllers", "scale"),
    (Method::DELETE, "/{provider}/controllers/{scope}/{name}", "delete", "controllers", ""),
    (Method::GET, "/{provider}/services/{scope}", "list", "services", ""),
    (Method::PUT, "/{provider}/services/{scope}", "update", "services", ""),
    (Method::DELETE, "/{provider}/services/{scope}/{name}", "delete", "services", ""),
    (Method::PUT, "/{provider}/secrets/{scope}", "update", "secrets", ""),
    (Method::GET, "/{provider}/gateway/gateways/{scope}", "list", "gateways", ""),
    (Method::PUT, "/{provider}/gateway/httproutes/{scope}", "update", "httproutes", ""),
    (Method::GET, "/{provider}/gateway/httproutes/{scope}/{name}", "get", "httproutes", ""),
    (Method::DELETE, "/{provider}/gateway/httproutes/{scope}/{name}", "delete", "httproutes", ""),
];

/// A classified request: the provider its path names (`""` for `/providers`) and what it does there
/// (`access.namespace` is the scope, `access.name` the object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub provider: &'static str,
    pub access: Access,
}

impl Target {
    pub fn scope(&self) -> &str {
        &self.access.namespace
    }

    pub fn name(&self) -> &str {
        &self.access.name
    }

    /// Classifies `method template` with the decoded `params`. Unknown provider names are 404 (an unknown
    /// route), invalid scopes and names 400, and a route missing from the table is refused.
    pub fn classify(method: &Method, template: &str, params: &[(&str, &str)]) -> Result<Target, Problem> {
        let template = template.strip_prefix(API_PREFIX).unwrap_or(template);
        let method = if method == Method::HEAD { &Method::GET } else { method };
        let Some((_, _, verb, resource, subresource)) =
            ROUTES.iter().find(|(m, t, ..)| m == method && *t == template)
        else {
            if let Some(allow) = allow(template) {
                return Err(Problem::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method-not-allowed",
                    format!("method not allowed on this route; allowed: {allow}"),
                ));
            }
            tracing::error!(%method, template, "a route the guard does not know was refused");
            return Err(unclassified());
        };
        let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let provider = match param("provider") {
            None if template == "/providers" => "",
            None => return Err(unclassified()),
            Some(name) => KNOWN_PROVIDERS.into_iter().find(|p| *p == name).ok_or_else(|| {
                Problem::not_found(format!("no such route: unknown provider {:?}", truncate(name)))
            })?,
        };
        let scope = param("scope").unwrap_or_default();
        if template.contains("{scope}") {
            validate_scope(provider, scope)?;
        }
        let name = param("name").or_else(|| param("id")).unwrap_or_default();
        if template.contains("{name}") || template.contains("{id}") {
            validate_object_name(provider, name)?;
        }
        let group = if provider == "ecs" { "ecs.machinist.dev" } else { "machinist.dev" };
        let access = Access {
            verb,
            group,
            resource,
            subresource,
            namespace: scope.to_string(),
            name: name.to_string(),
        };
        Ok(Target { provider, access })
    }

    /// Classifies a routed request from its [`MatchedPath`] and its decoded parameters (non-UTF-8 after
    /// decoding is a 400, as the path extractor would answer).
    pub async fn of_request(parts: &mut Parts) -> Result<Target, Problem> {
        let Some(template) = parts.extensions.get::<MatchedPath>().cloned() else {
            return Err(unclassified());
        };
        let params = RawPathParams::from_request_parts(parts, &())
            .await
            .map_err(|rejection| Problem::bad_request(format!("invalid path: {}", rejection.body_text())))?;
        let params: Vec<(&str, &str)> = params.iter().collect();
        Target::classify(&parts.method, template.as_str(), &params)
    }
}

/// The methods served at `template` (canonical spelling), as an `Allow` header value; `None` for an unknown
/// template.
pub fn allow(template: &str) -> Option<String> {
    let template = template.strip_prefix(API_PREFIX).unwrap_or(template);
    let methods: Vec<&str> =
        ROUTES.iter().filter(|(_, t, ..)| *t == template).map(|(m, ..)| m.as_str()).collect();
    (!methods.is_empty()).then(|| methods.join(","))
}

/// The templates the guard knows, canonical spelling (for the test that the router serves no other).
pub fn templates() -> impl Iterator<Item = (&'static Method, &'static str)> {
    ROUTES.iter().map(|(m, t, ..)| (m, *t))
}

fn unclassified() -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal-error",
        "this route is not classified for authorization",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(method: Method, template: &str, params: &[(&str, &str)]) -> Result<Target, Problem> {
        Target::classify(&method, template, params)
    }

    #[test]
    fn routes_map_to_rbac_verbs_and_resources() {
        let p = [("provider", "k8s"), ("scope", "team-a"), ("name", "web")];
        let t = classify(Method::POST, "/api/v1/{provider}/controllers/{scope}/{name}", &p).unwrap();
        assert_eq!(t.access.permission(), "update controllers/scale.machinist.dev in namespace team-a");
        assert!(t.access.is_write());
        let t = classify(Method::PUT, "/{provider}/controllers/{scope}", &p[..2]).unwrap();
        assert_eq!(t.access.permission(), "update controllers.machinist.dev in namespace team-a");
        let t =
            classify(Method::GET, "/{provider}/machines/{scope}", &[("provider", "ecs"), ("scope", "prod")])
                .unwrap();
        assert_eq!(
            (t.access.verb, t.access.group, t.access.resource),
            ("list", "ecs.machinist.dev", "machines")
        );
        let p = [("provider", "k8s"), ("scope", "ns"), ("id", "pod-1")];
        let t = classify(Method::PATCH, "/{provider}/machines/{scope}/{id}/labels", &p).unwrap();
        assert_eq!((t.access.verb, t.name()), ("patch", "pod-1"));
        assert_eq!(classify(Method::HEAD, "/providers", &[]).unwrap().access.verb, "list");
    }

    #[test]
    fn what_cannot_be_classified_is_refused() {
        let p = [("provider", "k8s"), ("scope", "ns")];
        assert_eq!(classify(Method::OPTIONS, "/{provider}/machines/{scope}", &p).unwrap_err().status, 405);
        assert_eq!(allow("/api/v1/{provider}/controllers/{scope}").as_deref(), Some("GET,PUT"));
        assert_eq!(classify(Method::GET, "/{provider}/other/{scope}", &p).unwrap_err().status, 500);
        assert_eq!(classify(Method::GET, "/{provider}/machines/{scope}", &p[1..]).unwrap_err().status, 500);
        let upper = [("provider", "K8S"), ("scope", "ns")];
        assert_eq!(
            classify(Method::GET, "/{provider}/machines/{scope}", &upper).unwrap_err().slug(),
            "not-found"
        );
        let bad = [("provider", "k8s"), ("scope", "a/b")];
        assert_eq!(classify(Method::GET, "/{provider}/machines/{scope}", &bad).unwrap_err().status, 400);
        let dots = [("provider", "k8s"), ("scope", "ns"), ("name", "..")];
        assert_eq!(
            classify(Method::DELETE, "/{provider}/services/{scope}/{name}", &dots).unwrap_err().status,
            400
        );
    }
}
