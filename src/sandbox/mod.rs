//! An embedded Kubernetes API server, for trying machinist and for its tests.
//!
//! It must not import `cache`, `provider` or `reconcile`: a fake that shares code with the code under test
//! hides exactly the bugs it exists to catch.

pub mod registry;
pub mod schema;
pub mod select;
pub mod status;
pub mod store;
