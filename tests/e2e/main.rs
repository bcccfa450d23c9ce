//! End-to-end tests: the real `pulsehost` binary, a real PostgreSQL, components
//! built from `plugins/` (run `cargo build-plugins` first), real child processes
//! and real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod auth;
mod cli;
mod dependencies;
mod embedded;
mod exec;
mod executor;
mod recovery;
mod runs;
mod scheduling;
mod upload;
