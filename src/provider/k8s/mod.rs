//! The Kubernetes provider: one watcher per kind feeding `cache`, the `/scale` write with a resourceVersion
//! precondition, server-side apply of manifests, and the leader Lease.
//!
//! It builds no HTTP responses and decides no desired state.

pub mod client;
pub mod lease;
pub mod watch;
pub mod write;
