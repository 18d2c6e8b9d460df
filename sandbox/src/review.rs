//! `authentication.k8s.io/v1` TokenReview and `authorization.k8s.io/v1` SubjectAccessReview, answered from a
//! small table of users (token → name, groups) and rules, so that machinist's `kubernetes` auth mode can be
//! tested end to end.
//!
//! It owns only the review answers; it does not evaluate the store's Roles and RoleBindings, and it must
//! never record or echo a reviewed token.

use serde::Deserialize;
use serde_json::{Value, json};

/// Users and what they may do. YAML/JSON: `{users: [{token, name, groups}], rules: [{subjects, verbs,
/// apiGroups, resources, namespaces}]}`; `*` matches anything, and empty `namespaces` means all.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reviews {
    #[serde(default)]
    pub users: Vec<ReviewUser>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewUser {
    pub token: String,
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Grants `verbs` on `resources` of `apiGroups` in `namespaces` to users or groups named in `subjects`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub subjects: Vec<String>,
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
}

fn matches(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

impl Reviews {
    /// The TokenReview answer for a request body; `Err` is a bad-request message.
    pub fn token_review(&self, body: &[u8]) -> Result<Value, String> {
        let review: Value = serde_json::from_slice(body).map_err(|e| format!("invalid TokenReview: {e}"))?;
        let token = review["spec"]["token"].as_str().ok_or("spec.token is required")?;
        let user = self.users.iter().find(|u| u.token.len() == token.len() && u.token == token);
        let status = match user {
            Some(u) => json!({"authenticated": true, "user": {"username": u.name, "groups": u.groups}}),
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        Ok(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": {},
            "spec": {},
            "status": status,
        }))
    }

    /// The SubjectAccessReview answer for a request body.
    pub fn access_review(&self, body: &[u8]) -> Result<Value, String> {
        let review: Value =
            serde_json::from_slice(body).map_err(|e| format!("invalid SubjectAccessReview: {e}"))?;
        let spec = &review["spec"];
        let user = spec["user"].as_str().unwrap_or("");
        let groups: Vec<&str> = spec["groups"]
            .as_array()
            .map(|g| g.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let attrs = &spec["resourceAttributes"];
        let field = |name: &str| attrs[name].as_str().unwrap_or("");
        // As RBAC does: a subresource is named `resource/subresource`, and `*/subresource` matches it.
        let subresource = field("subresource");
        let resource = match subresource {
            "" => field("resource").to_string(),
            sub => format!("{}/{sub}", field("resource")),
        };
        let resource_matches = |rule: &Rule| {
            matches(&rule.resources, &resource)
                || (!subresource.is_empty()
                    && rule.resources.iter().any(|r| *r == format!("*/{subresource}")))
        };
        let allowed = self.rules.iter().any(|r| {
            r.subjects.iter().any(|s| s == user || groups.contains(&s.as_str()))
                && matches(&r.verbs, field("verb"))
                && matches(&r.api_groups, field("group"))
                && resource_matches(r)
                && (r.namespaces.is_empty() || matches(&r.namespaces, field("namespace")))
        });
        let mut status = json!({"allowed": allowed});
        if !allowed {
            status["reason"] = json!("no rule allows it");
        }
        Ok(json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "metadata": {},
            "spec": spec,
            "status": status,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Reviews {
        serde_yaml::from_str(
            "users:\n- {token: t1, name: alice, groups: [ops]}\n\
             rules:\n- {subjects: [ops], verbs: [get, list], apiGroups: [machinist.dev], resources: ['*'], namespaces: [a]}\n",
        )
        .unwrap()
    }

    #[test]
    fn token_reviews_authenticate_known_tokens_only() {
        let r = table().token_review(br#"{"spec":{"token":"t1"}}"#).unwrap();
        assert_eq!(r["status"]["user"]["username"], "alice");
        let r = table().token_review(br#"{"spec":{"token":"nope"}}"#).unwrap();
        assert_eq!(r["status"]["authenticated"], false);
        assert!(!r.to_string().contains("nope"), "the token is never echoed");
        assert!(table().token_review(b"{").is_err());
    }

    #[test]
    fn access_reviews_follow_the_rules() {
        let ask = |user: &str, groups: &str, verb: &str, ns: &str| {
            let body = format!(
                r#"{{"spec":{{"user":"{user}","groups":{groups},"resourceAttributes":{{"verb":"{verb}","group":"machinist.dev","resource":"machines","namespace":"{ns}"}}}}}}"#
            );
            table().access_review(body.as_bytes()).unwrap()["status"]["allowed"].as_bool().unwrap()
        };
        assert!(ask("alice", r#"["ops"]"#, "list", "a"));
        assert!(!ask("alice", r#"["ops"]"#, "delete", "a"));
        assert!(!ask("alice", r#"["ops"]"#, "list", "b"));
        assert!(!ask("bob", "[]", "list", "a"));
    }

    #[test]
    fn subresources_are_matched_like_rbac_does() {
        let reviews: Reviews = serde_yaml::from_str(
            "rules:\n- {subjects: [scaler], verbs: [update], apiGroups: [g], resources: [controllers/scale]}\n\
             - {subjects: [deployer], verbs: [update], apiGroups: [g], resources: [controllers]}\n\
             - {subjects: [any], verbs: [update], apiGroups: [g], resources: ['*/scale']}\n",
        )
        .unwrap();
        let ask = |user: &str, sub: &str| {
            let body = format!(
                r#"{{"spec":{{"user":"{user}","resourceAttributes":{{"verb":"update","group":"g","resource":"controllers","subresource":"{sub}"}}}}}}"#
            );
            reviews.access_review(body.as_bytes()).unwrap()["status"]["allowed"].as_bool().unwrap()
        };
        assert!(ask("scaler", "scale") && !ask("scaler", ""));
        assert!(ask("deployer", "") && !ask("deployer", "scale"));
        assert!(ask("any", "scale") && !ask("any", ""));
    }
}
