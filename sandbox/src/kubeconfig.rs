//! The kubeconfig kubectl and kube-rs use as is: plain http to 127.0.0.1, and the bearer token when set.
//!
//! It must not write files itself (the caller decides where, with user-only permissions).

/// A kubeconfig for `server` (e.g. `http://127.0.0.1:6443`).
pub fn kubeconfig_yaml(server: &str, token: Option<&str>) -> String {
    let user = match token {
        // YAML single-quoted: only a quote needs escaping.
        Some(t) => format!("\n    token: '{}'", t.replace('\'', "''")),
        None => " {}".to_string(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: machinist-sandbox\n  cluster:\n    server: {server}\n\
         contexts:\n- name: machinist-sandbox\n  context:\n    cluster: machinist-sandbox\n    user: machinist-sandbox\n\
         \x20   namespace: default\ncurrent-context: machinist-sandbox\npreferences: {{}}\nusers:\n\
         - name: machinist-sandbox\n  user:{user}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_yaml_with_and_without_token() {
        let y: serde_yaml::Value =
            serde_yaml::from_str(&kubeconfig_yaml("http://127.0.0.1:1", Some("a'b"))).expect("yaml");
        assert_eq!(y["users"][0]["user"]["token"].as_str(), Some("a'b"));
        assert_eq!(y["clusters"][0]["cluster"]["server"].as_str(), Some("http://127.0.0.1:1"));
        assert_eq!(y["contexts"][0]["context"]["namespace"].as_str(), Some("default"));
        let y: serde_yaml::Value = serde_yaml::from_str(&kubeconfig_yaml("http://x", None)).expect("yaml");
        assert!(y["users"][0]["user"].as_mapping().is_some_and(|m| m.is_empty()));
    }
}
