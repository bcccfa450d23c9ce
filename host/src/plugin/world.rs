//! The worlds this host implements: `pulsehost:plugin@0.2.0` (`wit/`) and,
//! unchanged, `@0.1.0` (`wit/v0.1.0/`). A compiled component is bound to the
//! one whose exports it matches; callers see only the host's own types.

use wasmtime::component::InstancePre;
use wasmtime::Store;

use super::convert;
use super::sandbox::SandboxState;
use crate::spec::{Manifest, RunContext};

/// Generated bindings of `pulsehost:plugin@0.2.0`.
pub(super) mod v2 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit",
        exports: { default: async },
    });
}

/// Generated bindings of `pulsehost:plugin@0.1.0`.
pub(super) mod v1 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit/v0.1.0",
        exports: { default: async },
    });
}

/// A compiled and linked component of either world, ready to instantiate.
#[derive(Clone)]
pub(super) enum Pre {
    /// Built against `0.1.0`.
    V1(v1::PluginPre<SandboxState>),
    /// Built against `0.2.0`.
    V2(v2::PluginPre<SandboxState>),
}

impl Pre {
    /// Binds `pre` to the newest world whose exports it matches; the error is
    /// the newest world's complaint.
    pub fn new(pre: InstancePre<SandboxState>) -> wasmtime::Result<Pre> {
        match v2::PluginPre::new(pre.clone()) {
            Ok(bound) => Ok(Pre::V2(bound)),
            Err(newest) => v1::PluginPre::new(pre).map(Pre::V1).map_err(|_| newest),
        }
    }

    /// The WIT package of its world.
    pub fn package(&self) -> &'static str {
        match self {
            Pre::V1(_) => super::WIT_PACKAGES[1],
            Pre::V2(_) => super::WIT_PACKAGES[0],
        }
    }

    /// The linked component.
    pub fn instance_pre(&self) -> &InstancePre<SandboxState> {
        match self {
            Pre::V1(p) => p.instance_pre(),
            Pre::V2(p) => p.instance_pre(),
        }
    }

    /// Instantiates it and calls `describe()`.
    pub async fn describe(
        &self,
        store: &mut Store<SandboxState>,
    ) -> wasmtime::Result<Result<Manifest, String>> {
        Ok(match self {
            Pre::V1(pre) => {
                let plugin = pre.instantiate_async(&mut *store).await?;
                plugin.call_describe(store).await?.map(convert::v1::manifest)
            }
            Pre::V2(pre) => {
                let plugin = pre.instantiate_async(&mut *store).await?;
                plugin.call_describe(store).await?.map(convert::v2::manifest)
            }
        })
    }

    /// Instantiates it and calls `should-run(ctx)`.
    pub async fn should_run(
        &self,
        store: &mut Store<SandboxState>,
        ctx: &RunContext,
    ) -> wasmtime::Result<bool> {
        match self {
            Pre::V1(pre) => {
                let plugin = pre.instantiate_async(&mut *store).await?;
                plugin
                    .call_should_run(store, &convert::v1::run_context(ctx))
                    .await
            }
            Pre::V2(pre) => {
                let plugin = pre.instantiate_async(&mut *store).await?;
                plugin
                    .call_should_run(store, &convert::v2::run_context(ctx))
                    .await
            }
        }
    }
}
