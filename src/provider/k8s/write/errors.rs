//! kube errors → [`ProviderError`]: one place, so every write maps statuses the same way and no message
//! carries a credential (transport errors are named by kind only). A 401/403 is machinist's own service
//! account being refused: `Forbidden`, with the API server's message, which names the verb, resource and
//! namespace that are missing (never the token).

use crate::provider::{FieldError, ProviderError};

/// Map an error of a request about `what` ("Deployment web in namespace default").
pub fn map_kube_error(error: kube::Error, what: &str) -> ProviderError {
    match error {
        kube::Error::Api(status) => {
            let message =
                if status.message.is_empty() { status.reason.clone() } else { status.message.clone() };
            match status.code {
                404 => ProviderError::NotFound(format!("{what} not found")),
                401 => ProviderError::Forbidden(format!(
                    "kubernetes did not accept machinist's own credentials for {what} (401 Unauthorized)"
                )),
                403 => ProviderError::Forbidden(format!(
                    "kubernetes refused machinist's service account for {what}: {message}; grant the \
                     permission in machinist's RBAC"
                )),
                409 => ProviderError::Conflict(format!("{what}: {message}")),
                400 | 422 => {
                    let errors: Vec<FieldError> = status
                        .details
                        .as_ref()
                        .map(|d| {
                            d.causes
                                .iter()
                                .map(|c| FieldError { field: c.field.clone(), message: c.message.clone() })
                                .collect()
                        })
                        .unwrap_or_default();
                    ProviderError::Invalid { message: format!("{what}: {message}"), errors }
                }
                429 => ProviderError::Throttled {
                    detail: format!("kubernetes throttled the request for {what}"),
                    retry_after_secs: status
                        .details
                        .as_ref()
                        .map(|d| u64::from(d.retry_after_seconds))
                        .filter(|s| *s > 0)
                        .unwrap_or(1)
                        .min(30),
                },
                code => ProviderError::Upstream(format!(
                    "kubernetes answered {code} {} for {what}: {message}",
                    if status.reason.is_empty() { "error" } else { status.reason.as_str() }
                )),
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            ProviderError::Upstream(format!("the kubernetes API could not be reached for {what}"))
        }
        kube::Error::SerdeError(_) => {
            ProviderError::Upstream(format!("kubernetes answered an unreadable body for {what}"))
        }
        _ => ProviderError::Upstream(format!("the request to kubernetes for {what} failed")),
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use kube::core::response::{StatusCause, StatusDetails};

    use super::*;

    fn details(causes: Vec<StatusCause>, retry_after_seconds: u32) -> StatusDetails {
        StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes,
            retry_after_seconds,
        }
    }

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Status::failure(message, reason).with_code(code).boxed())
    }

    #[test]
    fn statuses_map_to_problem_variants() {
        let w = "Deployment web in namespace default";
        assert!(
            matches!(map_kube_error(api(404, "NotFound", "x"), w), ProviderError::NotFound(m) if m == "Deployment web in namespace default not found")
        );
        assert!(matches!(map_kube_error(api(409, "Conflict", "changed"), w), ProviderError::Conflict(_)));
        assert!(
            matches!(map_kube_error(api(503, "ServiceUnavailable", "down"), w), ProviderError::Upstream(m) if m.contains("503"))
        );
    }

    #[test]
    fn refusals_of_our_own_credentials_name_the_missing_permission() {
        let message = r#"deployments.apps "web" is forbidden: User "system:serviceaccount:m:machinist" cannot update resource "deployments/scale" in API group "apps" in the namespace "team-a""#;
        match map_kube_error(api(403, "Forbidden", message), "Deployment web in namespace team-a") {
            ProviderError::Forbidden(detail) => {
                assert!(detail.contains(r#"cannot update resource "deployments/scale""#), "{detail}");
                assert!(detail.contains("team-a"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map_kube_error(api(401, "Unauthorized", "Unauthorized"), "x"),
            ProviderError::Forbidden(_)
        ));
    }

    #[test]
    fn invalid_keeps_the_status_message_and_causes() {
        let status = Status::failure("spec.replicas: Invalid value: -1", "Invalid")
            .with_code(422)
            .with_details(details(
                vec![StatusCause {
                    field: "spec.replicas".into(),
                    message: "must be >= 0".into(),
                    reason: "FieldValueInvalid".into(),
                }],
                0,
            ));
        match map_kube_error(kube::Error::Api(status.boxed()), "ScaleRequest x") {
            ProviderError::Invalid { message, errors } => {
                assert!(message.contains("Invalid value: -1"));
                assert_eq!(errors[0].field, "spec.replicas");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn throttling_carries_a_bounded_retry_after() {
        let status = Status::failure("slow down", "TooManyRequests")
            .with_code(429)
            .with_details(details(Vec::new(), 300));
        assert!(matches!(
            map_kube_error(kube::Error::Api(status.boxed()), "x"),
            ProviderError::Throttled { retry_after_secs: 30, .. }
        ));
    }
}
