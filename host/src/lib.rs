//! pulsehost: a serverless-style WebAssembly plugin host.
//!
//! Hosted cron calls `POST /v1/pulse`; the host works out which slots of which
//! tasks are due, claims each exactly once in PostgreSQL, runs their native steps
//! as child processes and records every run. Plugins are WASI components that
//! describe tasks. A pulse travels down the modules in this order:
//!
//! * [`api`] — HTTP routes, auth, errors (actix-web lives only here)
//! * [`pulse`] — cron normalisation, due slots, claiming
//! * [`plugin`] — wasmtime engine, sandbox, `describe()`, validation
//! * [`runner`] — one run's lifecycle: hooks, steps, leases
//! * [`exec`] — one native process: spawn, kill, capture, venvs
//! * [`store`] — Diesel, migrations, the embedded PostgreSQL
//!
//! [`cli`] is the `pulsehost` command; [`author`] its local commands for plugin
//! authors (new, build, check); [`config`] and [`spec`] are shared.
#![deny(missing_docs)]

pub mod alerts;
pub mod api;
pub mod author;
pub mod cli;
pub mod config;
pub mod exec;
pub mod metrics;
pub mod plugin;
pub mod pulse;
pub mod runner;
pub mod schemas;
pub mod signing;
pub mod spec;
pub mod store;
