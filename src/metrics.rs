//! The Prometheus registry and collectors. Labels are bounded: no per-object label values.
