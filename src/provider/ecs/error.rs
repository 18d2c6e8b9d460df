//! ECS SDK errors sorted into what machinist does about them: back off (throttled), stop hammering
//! (auth), answer 404/400/409, or retry later (transient).
//!
//! No SDK error type leaves provider/ecs: callers get an [`EcsError`] or a `ProviderError`.

use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::provider::ProviderError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EcsError {
    #[error("ECS throttled {operation}: {message}")]
    Throttled { operation: &'static str, message: String },
    #[error("ECS refused {operation} ({code}): {message}")]
    Auth { operation: &'static str, code: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("ECS {operation} failed: {message}")]
    Transient { operation: &'static str, message: String },
}

const AUTH_CODES: [&str; 7] = [
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "MissingAuthenticationToken",
];
const THROTTLE_CODES: [&str; 4] =
    ["ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"];

impl EcsError {
    pub fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> EcsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let code = err.code().map(String::from);
        let message =
            err.message().map(String::from).unwrap_or_else(|| DisplayErrorContext(&err).to_string());
        match code.as_deref() {
            Some(c) if THROTTLE_CODES.contains(&c) => {
                crate::metrics::metrics().ecs_throttled.with_label_values(&[operation]).inc();
                EcsError::Throttled { operation, message }
            }
            Some(c) if AUTH_CODES.contains(&c) => EcsError::Auth { operation, code: c.to_string(), message },
            Some("ServiceNotFoundException") | Some("ClusterNotFoundException") => {
                EcsError::NotFound(message)
            }
            Some("ServiceNotActiveException") => EcsError::Conflict(message),
            Some("InvalidParameterException") | Some("ClientException") => EcsError::Invalid(message),
            Some(c) => EcsError::Transient { operation, message: format!("{c}: {message}") },
            None => EcsError::Transient { operation, message },
        }
    }

    /// A short, bounded reason for provider health.
    pub fn reason(&self) -> String {
        let mut s = self.to_string();
        if s.len() > 300 {
            let mut cut = 300;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        s
    }
}

impl From<EcsError> for ProviderError {
    fn from(e: EcsError) -> ProviderError {
        match e {
            EcsError::Throttled { .. } => {
                ProviderError::Throttled { detail: e.reason(), retry_after_secs: 2 }
            }
            // No retry helps: the IAM principal needs the permission. The SDK message is left out (it names
            // the principal's ARN); the code and the action are what an operator needs.
            EcsError::Auth { operation, code, .. } => ProviderError::Forbidden(format!(
                "AWS refused machinist's own credentials for ECS {operation} ({code}): the IAM principal \
                 needs ecs:{operation} and valid credentials"
            )),
            EcsError::Transient { .. } => ProviderError::Upstream(e.reason()),
            EcsError::NotFound(m) => ProviderError::NotFound(m),
            EcsError::Invalid(m) => ProviderError::Invalid { message: m, errors: Vec::new() },
            EcsError::Conflict(m) => ProviderError::Conflict(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_is_forbidden_and_names_the_action_not_the_principal() {
        let denied = EcsError::Auth {
            operation: "UpdateService",
            code: "AccessDeniedException".into(),
            message:
                "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: ecs:UpdateService"
                    .into(),
        };
        match ProviderError::from(denied) {
            ProviderError::Forbidden(detail) => {
                assert!(detail.contains("ecs:UpdateService") && detail.contains("AccessDeniedException"));
                assert!(!detail.contains("123456789012"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let transient = EcsError::Transient { operation: "ListTasks", message: "500".into() };
        assert!(matches!(ProviderError::from(transient), ProviderError::Upstream(_)));
    }
}
