//! End-to-end tests: the real `pulsehost` binary, a real PostgreSQL, components
//! built from `plugins/` (run `cargo build-plugins` first), real child processes
//! and real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod admission;
mod alerts;
mod auth;
mod browser;
mod calendar;
mod cli;
mod clocks;
mod compiled_cache;
mod dashboard;
mod dependencies;
mod dependency_chains;
mod embedded;
mod exec;
mod executor;
mod health;
mod input_limits;
mod languages;
mod leftovers;
mod operator_cli;
mod operators;
mod outages;
mod overlap_races;
mod plugin_deadlines;
mod recovery;
mod resources;
mod retention;
mod runs;
mod sandbox;
mod schedule_edges;
mod scheduling;
mod services;
mod signed_pulses;
mod simulations;
mod stored_definitions;
mod test_runs;
mod upload;
mod versions;
