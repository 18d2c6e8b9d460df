//! The ECS SDK client: configuration (region, credential chain, `AWS_ENDPOINT_URL*`), rustls/ring HTTPS,
//! no SDK retries (the poller and the reconciler own retrying), and an interceptor that counts every
//! attempt into `machinist_provider_requests_total` and a per-client counter.
//!
//! It must not decide what to call or when: that is poll.rs and write.rs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ecs::config::interceptors::{
    BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_ecs::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use crate::metrics::metrics;

/// How to reach ECS. Everything else (credentials, endpoint) follows the AWS SDK's standard chain.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub region: String,
    /// Overrides `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_ECS` (tests, the sandbox).
    pub endpoint_url: Option<String>,
    /// Static `(access key, secret)`; `None` uses the default credential chain.
    pub static_credentials: Option<(String, String)>,
    /// Sent as `x-moto-account-id`: the emulator keeps one state per account, so tests isolate by it.
    pub emulator_account: Option<String>,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
}

impl ClientOptions {
    pub fn new(region: impl Into<String>) -> Self {
        ClientOptions {
            region: region.into(),
            endpoint_url: None,
            static_credentials: None,
            emulator_account: None,
            connect_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(10),
        }
    }

    /// Options for the local emulator: its endpoint, dummy credentials, one account.
    pub fn emulator(endpoint: &str, account: Option<&str>) -> Self {
        ClientOptions {
            endpoint_url: Some(endpoint.to_string()),
            static_credentials: Some(("testing".into(), "testing".into())),
            emulator_account: account.map(String::from),
            ..ClientOptions::new("us-east-1")
        }
    }
}

/// ECS calls made through one client, by operation (attempts, retries included).
#[derive(Debug, Default)]
pub struct CallCounter {
    by_operation: Mutex<BTreeMap<String, u64>>,
}

impl CallCounter {
    pub fn total(&self) -> u64 {
        self.by_operation.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.by_operation.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn record(&self, operation: &str) {
        if let Ok(mut m) = self.by_operation.lock() {
            *m.entry(operation.to_string()).or_default() += 1;
        }
    }
}

/// The resource an ECS operation reads or writes (a bounded metric label).
fn resource_of(operation: &str) -> &'static str {
    if operation.contains("Tag") || operation.ends_with("Resource") {
        "tags"
    } else if operation.contains("Task") {
        "tasks"
    } else if operation.contains("Service") {
        "services"
    } else if operation.contains("Cluster") {
        "clusters"
    } else {
        "other"
    }
}

#[derive(Debug)]
struct Interceptor {
    calls: Arc<CallCounter>,
    account: Option<http::HeaderValue>,
}

impl Intercept for Interceptor {
    fn name(&self) -> &'static str {
        "machinist-ecs"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation =
            cfg.load::<Metadata>().map(|m| m.name().to_string()).unwrap_or_else(|| "unknown".into());
        self.calls.record(&operation);
        metrics()
            .provider_requests
            .with_label_values(&["ecs", operation.as_str(), resource_of(&operation)])
            .inc();
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(account) = &self.account {
            context.request_mut().headers_mut().insert("x-moto-account-id", account.clone());
        }
        Ok(())
    }
}

/// An ECS client plus its call counter.
#[derive(Clone, Debug)]
pub struct EcsApi {
    pub(crate) client: aws_sdk_ecs::Client,
    pub calls: Arc<CallCounter>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("x-moto-account-id {0:?} is not a valid header value")]
    BadAccount(String),
}

/// Every call bounded: connecting, each read of the response, each attempt, and the whole operation
/// (the SDK retries nothing here, so attempt and operation share the bound).
fn timeouts(opts: &ClientOptions) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(opts.connect_timeout)
        .read_timeout(opts.operation_timeout)
        .operation_attempt_timeout(opts.operation_timeout)
        .operation_timeout(opts.operation_timeout)
        .build()
}

impl EcsApi {
    pub async fn connect(opts: &ClientOptions) -> Result<EcsApi, ClientError> {
        let account = match &opts.emulator_account {
            Some(a) => Some(http::HeaderValue::from_str(a).map_err(|_| ClientError::BadAccount(a.clone()))?),
            None => None,
        };
        // ring instead of aws-lc: one crypto stack with kube's rustls, and no aws-lc-sys build.
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(opts.region.clone()))
            .http_client(http_client)
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(timeouts(opts));
        if let Some(url) = &opts.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some((key, secret)) = &opts.static_credentials {
            loader =
                loader.credentials_provider(Credentials::new(key, secret, None, None, "machinist-static"));
        }
        let sdk = loader.load().await;
        let calls = Arc::new(CallCounter::default());
        let config = aws_sdk_ecs::config::Builder::from(&sdk)
            .interceptor(Interceptor { calls: calls.clone(), account })
            .build();
        Ok(EcsApi { client: aws_sdk_ecs::Client::from_conf(config), calls })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_has_connect_read_attempt_and_operation_bounds() {
        let t = timeouts(&ClientOptions::new("us-east-1"));
        assert_eq!(t.connect_timeout(), Some(Duration::from_secs(3)));
        assert_eq!(t.read_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(t.operation_attempt_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(t.operation_timeout(), Some(Duration::from_secs(10)));
    }

    /// An endpoint that accepts connections and never answers: the call ends by its bound.
    #[tokio::test]
    async fn a_call_to_an_endpoint_that_never_answers_ends_within_the_operation_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let opts = ClientOptions {
            operation_timeout: Duration::from_millis(500),
            ..ClientOptions::emulator(&format!("http://{addr}"), None)
        };
        let api = EcsApi::connect(&opts).await.expect("client");
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(10), api.client.list_services().send()).await;
        assert!(matches!(answer, Ok(Err(_))), "the call failed by itself, not by the test's timeout");
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        held.abort();
    }

    #[test]
    fn operations_map_to_bounded_resources() {
        assert_eq!(resource_of("DescribeTasks"), "tasks");
        assert_eq!(resource_of("ListServices"), "services");
        assert_eq!(resource_of("TagResource"), "tags");
        assert_eq!(resource_of("ListTagsForResource"), "tags");
        assert_eq!(resource_of("CreateCluster"), "clusters");
    }
}
