//! Cache behaviour driven by scripted watcher events, as the watchers would feed it. No HTTP, no cluster.

mod ecs;
mod fixtures;
mod ingest;
mod pins;
mod projection;
mod readiness;
