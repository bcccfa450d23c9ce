//! The store state of one plugin call: WASI with nothing granted, a memory cap,
//! and in-memory stdout/stderr that end up in the host's log.

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Plugin output kept per call for the log.
const OUTPUT_CAPACITY: usize = 64 * 1024;

/// What a store holds for one call.
pub(super) struct SandboxState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A fresh store: no preopens, no env, no args, no network, capped memory,
/// and a yield to the executor at every epoch tick, so that the caller's
/// deadline can stop even a guest that never calls the host.
pub(super) fn store(engine: &Engine, memory_bytes: usize) -> Store<SandboxState> {
    let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
    let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
    // The builder grants nothing by default: no directories, variables or sockets.
    let wasi = WasiCtx::builder()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .build();
    let limits = StoreLimitsBuilder::new()
        .memory_size(memory_bytes)
        .trap_on_grow_failure(true)
        .build();
    let mut store = Store::new(
        engine,
        SandboxState {
            wasi,
            table: ResourceTable::new(),
            limits,
            stdout,
            stderr,
        },
    );
    store.limiter(|state| &mut state.limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    store
}

/// Writes what the plugin printed to the host's log.
pub(super) fn log_output(store: &Store<SandboxState>, call: &str) {
    for (stream, pipe) in [("stdout", &store.data().stdout), ("stderr", &store.data().stderr)] {
        let bytes = pipe.contents();
        if !bytes.is_empty() {
            tracing::info!(plugin.call = call, stream, output = %String::from_utf8_lossy(&bytes).trim_end(), "plugin output");
        }
    }
}

/// True when the error comes from the memory cap (`trap_on_grow_failure`).
pub(super) fn hit_memory_limit(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.to_string().contains("forcing trap when growing memory"))
}

/// The last lines the guest wrote to stderr (a panic message, a traceback),
/// at most about 1 KiB, if it wrote anything.
pub(super) fn last_words(store: &Store<SandboxState>) -> Option<String> {
    const KEEP: usize = 1024;
    let bytes = store.data().stderr.contents();
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let cut = text.len().saturating_sub(KEEP);
    let start = (cut..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    Some(if cut > 0 {
        format!("…{}", &text[start..])
    } else {
        text.to_string()
    })
}
