//! Test harness for the ECS provider: one emulator per test binary (venv created once, under a lock),
//! one emulator account per test for isolation, and seeding helpers.

use std::time::Duration;

use aws_sdk_ecs::types::{LaunchType, LoadBalancer, PropagateTags, Tag};
use machinist::provider::ecs::{ClientOptions, EcsProvider, EcsSettings};
use machinist_sandbox::ecs_emulator::{self as emulator, Emulator};
use tokio::sync::OnceCell;

static EMULATOR: OnceCell<Emulator> = OnceCell::const_new();

/// The emulator shared by this test binary (it exits with the test process).
pub async fn shared() -> &'static Emulator {
    EMULATOR
        .get_or_init(|| async {
            match Emulator::start().await {
                Ok(e) => e,
                Err(e) => panic!("ECS emulator: {e}"),
            }
        })
        .await
}

/// A fresh 12-digit account: the emulator keeps separate state per account.
pub fn account() -> String {
    format!("{:012}", fastrand::u64(100_000_000_000..999_999_999_999))
}

pub async fn admin(emu: &Emulator, account: &str) -> aws_sdk_ecs::Client {
    emulator::admin_client(&emu.endpoint(), Some(account)).await.expect("admin client")
}

pub fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// Create `cluster` with task definition `app` (256 cpu units, 512 MiB).
pub async fn cluster(ecs: &aws_sdk_ecs::Client, cluster: &str) {
    ecs.create_cluster().cluster_name(cluster).send().await.expect("create cluster");
    emulator::register_task_definition(ecs, "app", "nginx:1.25", "256", "512")
        .await
        .expect("task definition");
}

/// A FARGATE service of task definition `app` with propagated tags and, if `port`, a load balancer.
pub async fn service(ecs: &aws_sdk_ecs::Client, cluster: &str, name: &str, count: i32, port: Option<i32>) {
    let lb = port.map(|p| {
        LoadBalancer::builder()
            .target_group_arn(format!(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/1"
            ))
            .container_name("app")
            .container_port(p)
            .build()
    });
    ecs.create_service()
        .cluster(cluster)
        .service_name(name)
        .task_definition("app")
        .desired_count(count)
        .launch_type(LaunchType::Fargate)
        .propagate_tags(PropagateTags::Service)
        .tags(tag("app", name))
        .set_load_balancers(lb.map(|l| vec![l]))
        .send()
        .await
        .expect("create service");
}

/// RUNNING tasks of a service, as the emulator has them.
pub async fn running_tasks(ecs: &aws_sdk_ecs::Client, cluster: &str, name: &str) -> usize {
    let out = ecs.list_tasks().cluster(cluster).service_name(name).send().await.expect("list tasks");
    out.task_arns().len()
}

pub fn settings(emu: &Emulator, account: &str, clusters: &[&str], interval: Duration) -> EcsSettings {
    EcsSettings {
        client: ClientOptions::emulator(&emu.endpoint(), Some(account)),
        clusters: clusters.iter().map(|c| c.to_string()).collect(),
        poll_interval: interval,
        read_rate: 1000.0,
        read_burst: 1000,
        stale_after: machinist::provider::ecs::DEFAULT_STALE_AFTER,
    }
}

/// A provider with no pollers: the test drives refreshes, so nothing in the background hides a bug.
pub async fn connected(emu: &Emulator, account: &str, clusters: &[&str]) -> EcsProvider {
    EcsProvider::connect(settings(emu, account, clusters, Duration::from_secs(5))).await.expect("connect")
}
