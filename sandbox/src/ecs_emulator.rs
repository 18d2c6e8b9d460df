//! The local ECS emulator (moto's server patched by `tools/ecs-emulator/launcher.py`) as a child
//! process on 127.0.0.1: venv setup, start, readiness, restart, injected faults, and demo data for
//! `machinist sandbox --ecs`.
//!
//! For tests and the sandbox only: the operator never starts it, and nothing here is the operator's (the
//! SDK client that seeds data, [`admin_client`], is configured here, not borrowed from `provider/ecs`).
//! Point the operator at [`Emulator::endpoint`] with dummy credentials and region `us-east-1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ecs::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::config::timeout::TimeoutConfig;
use aws_sdk_ecs::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
    StalledStreamProtectionConfig,
};
use aws_sdk_ecs::types::{ContainerDefinition, LoadBalancer, PropagateTags, ServiceRegistry, Tag};
use aws_smithy_http_client::tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The region the emulator answers for, whatever the client asks.
pub const REGION: &str = "us-east-1";

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error(
        "the ECS emulator needs Python 3 with venv and network access to PyPI once \
         (tools/ecs-emulator/setup.sh failed: {0})"
    )]
    Setup(String),
    #[error("tools/ecs-emulator not found (looked in {0}); run from the machinist repository")]
    NoTools(String),
    #[error("could not start the ECS emulator: {0}")]
    Spawn(String),
    #[error("the ECS emulator did not answer on 127.0.0.1:{port} within {secs} s (log: {log})")]
    NotReady { port: u16, secs: u64, log: String },
    #[error("talking to the ECS emulator: {0}")]
    Io(String),
    #[error("seeding demo data: {0}")]
    Seed(String),
}

/// Where `tools/ecs-emulator` is: `$MACHINIST_ECS_EMULATOR_DIR`, the source tree, or `./tools/...`.
pub fn tools_dir() -> Result<PathBuf, EmulatorError> {
    let mut candidates = Vec::new();
    if let Ok(dir) = std::env::var("MACHINIST_ECS_EMULATOR_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/ecs-emulator"));
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd.join("tools/ecs-emulator"));
    }
    candidates.iter().find(|d| d.join("launcher.py").is_file()).cloned().ok_or_else(|| {
        EmulatorError::NoTools(
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        )
    })
}

/// Create the venv if needed (once; setup.sh holds a lock) and return its python.
pub fn ensure_venv() -> Result<PathBuf, EmulatorError> {
    let dir = tools_dir()?;
    let out = Command::new("bash")
        .arg(dir.join("setup.sh"))
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| EmulatorError::Setup(format!("cannot run bash: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(EmulatorError::Setup(stderr.trim().lines().last().unwrap_or("no output").to_string()));
    }
    let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(PathBuf::from(python))
}

fn free_port() -> Result<u16, EmulatorError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| EmulatorError::Spawn(e.to_string()))?;
    l.local_addr().map(|a| a.port()).map_err(|e| EmulatorError::Spawn(e.to_string()))
}

/// An injected failure: the next `count` calls of `operation` (`*` = any) by `account` fail.
#[derive(Clone, Debug)]
pub struct Fault {
    pub account: String,
    pub operation: String,
    pub status: u16,
    pub code: String,
    pub message: String,
    /// -1: until cleared.
    pub count: i64,
}

impl Fault {
    pub fn throttling(account: &str, count: i64) -> Fault {
        Fault::new(account, 400, "ThrottlingException", "Rate exceeded", count)
    }
    pub fn server_error(account: &str, count: i64) -> Fault {
        Fault::new(account, 500, "ServerException", "Internal failure", count)
    }
    pub fn access_denied(account: &str, count: i64) -> Fault {
        Fault::new(
            account,
            400,
            "AccessDeniedException",
            "User is not authorized to perform ecs:ListServices",
            count,
        )
    }
    fn new(account: &str, status: u16, code: &str, message: &str, count: i64) -> Fault {
        Fault {
            account: account.into(),
            operation: "*".into(),
            status,
            code: code.into(),
            message: message.into(),
            count,
        }
    }
}

/// A running emulator; killed when dropped.
pub struct Emulator {
    python: PathBuf,
    launcher: PathBuf,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Emulator {
    /// Set up the venv if needed and start the emulator on a free 127.0.0.1 port.
    pub async fn start() -> Result<Emulator, EmulatorError> {
        let python = tokio::task::spawn_blocking(ensure_venv)
            .await
            .map_err(|e| EmulatorError::Setup(e.to_string()))??;
        let launcher = tools_dir()?.join("launcher.py");
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("machinist-ecs-emulator-{port}.log"));
        let mut emu = Emulator { python, launcher, port, log, child: None };
        emu.spawn().await?;
        Ok(emu)
    }

    async fn spawn(&mut self) -> Result<(), EmulatorError> {
        let log = std::fs::File::create(&self.log).map_err(|e| EmulatorError::Spawn(e.to_string()))?;
        let log2 = log.try_clone().map_err(|e| EmulatorError::Spawn(e.to_string()))?;
        let child = Command::new(&self.python)
            .arg(&self.launcher)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--parent-pid", &std::process::id().to_string()])
            .env_remove("AWS_ENDPOINT_URL")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| EmulatorError::Spawn(e.to_string()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok((200, _)) = self.http("GET", "/_machinist/faults", "").await {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(EmulatorError::Spawn(format!(
                    "exited with {status}; log: {}",
                    self.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(EmulatorError::NotReady { port: self.port, secs: 60, log: self.log.display().to_string() })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kill the process (all state is lost).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill and start again on the same port, with empty state.
    pub async fn restart(&mut self) -> Result<(), EmulatorError> {
        self.stop();
        self.spawn().await
    }

    pub async fn inject(&self, fault: &Fault) -> Result<(), EmulatorError> {
        let body = serde_json::json!({
            "account": fault.account, "operation": fault.operation, "status": fault.status,
            "code": fault.code, "message": fault.message, "count": fault.count,
        });
        self.http("POST", "/_machinist/faults", &body.to_string()).await.map(|_| ())
    }

    pub async fn clear_faults(&self, account: &str) -> Result<(), EmulatorError> {
        self.http("DELETE", &format!("/_machinist/faults?account={account}"), "").await.map(|_| ())
    }

    /// A minimal HTTP/1.1 exchange with the emulator (no HTTP client dependency needed).
    async fn http(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), EmulatorError> {
        let io = |e: std::io::Error| EmulatorError::Io(e.to_string());
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.map_err(io)?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).await.map_err(io)?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
            .await
            .map_err(|_| EmulatorError::Io("timed out".into()))?
            .map_err(io)?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        Ok((status, text))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A raw SDK client for seeding the emulator at `endpoint` (tests, demo data): dummy credentials, no
/// retries, and `account` (moto's default when `None`) sent as `x-moto-account-id`.
pub async fn admin_client(
    endpoint: &str,
    account: Option<&str>,
) -> Result<aws_sdk_ecs::Client, EmulatorError> {
    // ring instead of aws-lc: no aws-lc-sys build.
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let mut config = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "ecs-emulator"))
        .http_client(http_client)
        .retry_config(RetryConfig::disabled())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        );
    if let Some(account) = account {
        config = config.interceptor(Account(account.to_string()));
    }
    Ok(aws_sdk_ecs::Client::from_conf(config.build()))
}

/// Sends `x-moto-account-id`: the emulator keeps one state per account.
#[derive(Debug)]
struct Account(String);

impl Intercept for Account {
    fn name(&self) -> &'static str {
        "ecs-emulator-account"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_ecs::error::BoxError> {
        context.request_mut().headers_mut().try_insert("x-moto-account-id", self.0.clone())?;
        Ok(())
    }
}

fn seed_err(e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Seed(e.to_string())
}

fn sdk<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_ecs::error::SdkError<E, R>,
) -> EmulatorError {
    seed_err(aws_sdk_ecs::error::DisplayErrorContext(e))
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// Register a one-container task definition (no awsvpc: moto would then require a network setup).
pub async fn register_task_definition(
    ecs: &aws_sdk_ecs::Client,
    family: &str,
    image: &str,
    cpu: &str,
    memory: &str,
) -> Result<(), EmulatorError> {
    let mem: i32 = memory.parse().map_err(seed_err)?;
    ecs.register_task_definition()
        .family(family)
        .cpu(cpu)
        .memory(memory)
        .container_definitions(ContainerDefinition::builder().name("app").image(image).memory(mem).build())
        .send()
        .await
        .map_err(sdk)?;
    Ok(())
}

/// The demo ECS data of `machinist sandbox --ecs`: cluster `demo` with services `web` (3 tasks, load
/// balancer port 80), `api` (2 tasks, Cloud Map port 8080), `worker` (1 task, no ports) and a bare task.
pub async fn seed_demo(ecs: &aws_sdk_ecs::Client) -> Result<(), EmulatorError> {
    ecs.create_cluster().cluster_name("demo").send().await.map_err(sdk)?;
    register_task_definition(ecs, "web", "nginx:1.25", "256", "512").await?;
    register_task_definition(ecs, "api", "ghcr.io/example/api:1.4.2", "512", "1024").await?;
    register_task_definition(ecs, "worker", "ghcr.io/example/worker:1.4.2", "1024", "2048").await?;
    let services: [(&str, i32, Option<LoadBalancer>, Option<ServiceRegistry>); 3] = [
        (
            "web",
            3,
            Some(
                LoadBalancer::builder()
                    .target_group_arn("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/1")
                    .container_name("app")
                    .container_port(80)
                    .build(),
            ),
            None,
        ),
        (
            "api",
            2,
            None,
            Some(
                ServiceRegistry::builder()
                    .registry_arn("arn:aws:servicediscovery:us-east-1:123456789012:service/srv-api")
                    .port(8080)
                    .build(),
            ),
        ),
        ("worker", 1, None, None),
    ];
    for (name, count, lb, reg) in services {
        ecs.create_service()
            .cluster("demo")
            .service_name(name)
            .task_definition(name)
            .desired_count(count)
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .propagate_tags(PropagateTags::Service)
            .tags(tag("app", name))
            .tags(tag("env", "demo"))
            .set_load_balancers(lb.map(|l| vec![l]))
            .set_service_registries(reg.map(|r| vec![r]))
            .send()
            .await
            .map_err(sdk)?;
    }
    ecs.run_task()
        .cluster("demo")
        .task_definition("worker")
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .started_by("manual")
        .tags(tag("job", "migrate"))
        .send()
        .await
        .map_err(sdk)?;
    Ok(())
}

/// Start the emulator with the demo data (cluster `demo` of moto's default account), for
/// `machinist sandbox --ecs`.
pub async fn start_demo() -> Result<Emulator, EmulatorError> {
    let emu = Emulator::start().await?;
    let ecs = admin_client(&emu.endpoint(), None).await?;
    seed_demo(&ecs).await?;
    Ok(emu)
}
