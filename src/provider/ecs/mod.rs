//! The ECS provider: a budgeted poller feeding the cache, and UpdateService writes. (Issue 6.)
