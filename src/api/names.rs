//! The naming rules of user input: Kubernetes names and label keys/values, ECS names, and how user input is
//! quoted in a problem. Pure functions; no HTTP, no provider.

use crate::api::problem::Problem;

/// Shortens user input quoted in a problem detail.
pub fn truncate(value: &str) -> &str {
    match value.char_indices().nth(64) {
        Some((i, _)) => &value[..i],
        None => value,
    }
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// RFC 1123 label: what Kubernetes requires of a namespace.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
        && is_alnum_lower(b[0])
        && is_alnum_lower(b[b.len() - 1])
}

/// RFC 1123 subdomain: what Kubernetes requires of most object names.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// ECS cluster, service and task names: letters, digits, `-` and `_`, up to 255.
pub fn is_ecs_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

pub fn validate_scope(provider: &str, scope: &str) -> Result<(), Problem> {
    let (valid, what) = match provider {
        "ecs" => (is_ecs_name(scope), "an ECS cluster name"),
        _ => (is_dns1123_label(scope), "a Kubernetes namespace name (RFC 1123 label)"),
    };
    if valid { Ok(()) } else { Err(Problem::bad_request(format!("{:?} is not {what}", truncate(scope)))) }
}

pub fn validate_object_name(provider: &str, name: &str) -> Result<(), Problem> {
    let (valid, what) = match provider {
        "ecs" => (is_ecs_name(name), "an ECS name"),
        _ => (is_dns1123_subdomain(name), "a Kubernetes object name (RFC 1123 subdomain)"),
    };
    if valid { Ok(()) } else { Err(Problem::bad_request(format!("{:?} is not {what}", truncate(name)))) }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A Kubernetes label key: `[prefix/]name`, the prefix a DNS subdomain.
pub fn k8s_label_key_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns1123_subdomain(prefix)
    {
        return Some("the prefix must be a DNS subdomain".into());
    }
    if !is_label_name(name) {
        return Some(
            "the name must be 1-63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric".into(),
        );
    }
    None
}

/// A Kubernetes label value: empty, or like a label name.
pub fn k8s_label_value_error(value: &str) -> Option<String> {
    if value.is_empty() || is_label_name(value) {
        None
    } else {
        Some("must be empty or 1-63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_label("default"));
        assert!(!is_dns1123_label("Default"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("web-7d4b9c.x2k4p"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain(&"a.".repeat(127)));
        assert!(is_ecs_name("My_Cluster-1"));
        assert!(!is_ecs_name("a.b"));
    }

    #[test]
    fn label_keys_and_values() {
        assert_eq!(k8s_label_key_error("app.kubernetes.io/name"), None);
        assert!(k8s_label_key_error("bad key").is_some());
        assert!(k8s_label_key_error("Bad_/x").is_some());
        assert_eq!(k8s_label_value_error(""), None);
        assert!(k8s_label_value_error("-x").is_some());
    }
}
