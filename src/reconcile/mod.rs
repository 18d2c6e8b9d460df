//! The one write path: the ScaleRequest custom resource and REST writes enter a keyed queue (latest desired
//! state wins per target), a pure planner decides, and the executor applies it with a provider.
