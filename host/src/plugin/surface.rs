//! What a component imports and exports, read from its bytes before anything
//! is compiled: a component of another world, or one that imports interfaces
//! this host does not provide, is refused in milliseconds whatever its size,
//! with the fix for the toolchain that produced it.
//!
//! Only the outer component's import and export sections are read; nested
//! modules and components (where the code is) are skipped by their length.

use wasmparser::{Chunk, ComponentExternalKind, ComponentTypeRef, Parser, Payload};

use super::{PluginError, WIT_PACKAGES};

/// WASI packages the host links (wasmtime-wasi's preview 2, nothing granted).
const PROVIDED_WASI: [&str; 6] = ["cli", "io", "clocks", "random", "filesystem", "sockets"];

/// The functions the `plugin` world exports.
const REQUIRED_EXPORTS: [&str; 2] = ["describe", "should-run"];

/// The outer component's imports and exports, by name.
#[derive(Debug, Default, PartialEq)]
pub struct Surface {
    /// Imported names, e.g. `wasi:io/streams@0.2.3`.
    pub imports: Vec<String>,
    /// Exported functions.
    pub functions: Vec<String>,
    /// Every other export, with its kind.
    pub others: Vec<String>,
}

/// Checks the header, then what the component imports and exports.
pub fn check(bytes: &[u8]) -> Result<Surface, PluginError> {
    check_header(bytes)?;
    let surface =
        read(bytes).map_err(|e| PluginError::Compile(format!("the component is malformed: {e}")))?;
    let unsupported: Vec<String> = surface.imports.iter().filter(|i| !provided(i)).cloned().collect();
    if !unsupported.is_empty() {
        return Err(PluginError::UnsupportedImports {
            imports: unsupported,
            fix: fix_for(producer(bytes)).into(),
        });
    }
    let missing: Vec<&str> = REQUIRED_EXPORTS
        .iter()
        .filter(|name| !surface.functions.iter().any(|f| f == *name))
        .copied()
        .collect();
    if !missing.is_empty() {
        let mut found: Vec<String> = surface.functions.iter().map(|f| format!("func {f}")).collect();
        found.extend(surface.others.iter().cloned());
        return Err(PluginError::WrongWorld(format!(
            "it does not export {}; it exports [{}]. Build it against wit/plugin.wit, world `plugin` \
             (`pulsehost plugin build` does)",
            missing.join(" and "),
            found.join(", ")
        )));
    }
    Ok(surface)
}

/// Whether this host provides the import `name`.
fn provided(name: &str) -> bool {
    if WIT_PACKAGES.iter().any(|p| name == p.replace('@', "/types@")) {
        return true;
    }
    let Some(rest) = name.strip_prefix("wasi:") else {
        return false;
    };
    let (package, version) = rest.split_once('@').unwrap_or((rest, ""));
    let package = package.split('/').next().unwrap_or("");
    PROVIDED_WASI.contains(&package) && version.starts_with("0.2.")
}

/// The toolchains whose fixes differ.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Producer {
    ComponentizeJs,
    ComponentizePy,
    Rust,
    Unknown,
}

/// Which toolchain built the component, from the names it leaves in its bytes.
fn producer(bytes: &[u8]) -> Producer {
    let has = |needle: &str| memchr::memmem::find(bytes, needle.as_bytes()).is_some();
    if has("StarlingMonkey") || has("componentize-js") || has("ComponentizeJS") {
        Producer::ComponentizeJs
    } else if has("componentize-py") {
        Producer::ComponentizePy
    } else if has("wit-bindgen-rust") || has("rustc") {
        Producer::Rust
    } else {
        Producer::Unknown
    }
}

/// How to build the component without the imports the host lacks.
fn fix_for(producer: Producer) -> &'static str {
    match producer {
        Producer::ComponentizeJs => {
            "this is a componentize-js (StarlingMonkey) build, which imports wasi:http unless told not to: \
             rebuild with `componentize-js app.js --wit wit --world-name plugin --disable http fetch-event` \
             (`pulsehost plugin build` does)"
        }
        Producer::ComponentizePy => {
            "this is a componentize-py build against another world or with extra imports: rebuild with \
             `componentize-py -d wit -w plugin componentize app` (`pulsehost plugin build` does) and do \
             not import interfaces outside wit/plugin.wit"
        }
        Producer::Rust => {
            "this is a Rust build: remove the dependency or feature that imports these interfaces (an HTTP \
             client such as the `wasi` crate's http, `waki` or `spin-sdk`); plugins describe work, steps \
             do it"
        }
        Producer::Unknown => {
            "build the component against wit/plugin.wit, world `plugin`, importing nothing beyond WASI 0.2 \
             cli, io, clocks, random, filesystem and sockets"
        }
    }
}

/// The outer component's import and export sections.
fn read(bytes: &[u8]) -> Result<Surface, String> {
    let mut surface = Surface::default();
    let mut parser = Parser::new(0);
    let mut offset = 0;
    loop {
        let (consumed, payload) = match parser.parse(&bytes[offset..], true).map_err(|e| e.to_string())? {
            Chunk::Parsed { consumed, payload } => (consumed, payload),
            Chunk::NeedMoreData(_) => unreachable_eof(),
        };
        offset += consumed;
        match payload {
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(|e| e.to_string())?;
                    // Types the world takes from an imported interface (`use
                    // types.{…}`) are plain names, not imports of their own.
                    let plain_type =
                        matches!(import.ty, ComponentTypeRef::Type(_)) && !import.name.name.contains(':');
                    if !plain_type {
                        surface.imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| e.to_string())?;
                    let name = export.name.name.to_string();
                    match (export.kind, export.ty) {
                        (ComponentExternalKind::Func, _) | (_, Some(ComponentTypeRef::Func(_))) => {
                            surface.functions.push(name)
                        }
                        (kind, _) => surface.others.push(format!("{} {name}", kind.desc())),
                    }
                }
            }
            // Skip nested modules and components whole: they hold the code.
            Payload::ModuleSection { unchecked_range, .. }
            | Payload::ComponentSection { unchecked_range, .. } => {
                if unchecked_range.end > bytes.len() {
                    return Err(format!("a nested module at byte {offset} runs past the end"));
                }
                offset = unchecked_range.end;
            }
            Payload::End(_) => return Ok(surface),
            _ => {}
        }
    }
}

/// With `eof` set the parser never asks for more data.
fn unreachable_eof() -> ! {
    unreachable!("wasmparser asked for more data after end of input")
}

/// Refuses what is not a component before anything else looks at it.
fn check_header(bytes: &[u8]) -> Result<(), PluginError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(PluginError::NotWasm);
    }
    // Bytes 4..8: a core module has version 1 and layer 0; a component has layer 1.
    match bytes[6..8] {
        [0, 0] => Err(PluginError::CoreModule),
        [1, 0] => Ok(()),
        _ => Err(PluginError::Compile("unknown WebAssembly binary layer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_provides_wasi_preview2_without_http_and_its_own_types() {
        assert!(provided("wasi:io/streams@0.2.3"));
        assert!(provided("wasi:cli/environment@0.2.0"));
        assert!(provided("wasi:sockets/tcp@0.2.6"));
        assert!(provided("pulsehost:plugin/types@0.1.0"));
        assert!(!provided("wasi:http/types@0.2.3"));
        assert!(!provided("wasi:http/outgoing-handler@0.2.3"));
        assert!(!provided("wasi:io/streams@0.3.0"));
        assert!(!provided("wasi:keyvalue/store@0.2.0-draft"));
        assert!(provided("pulsehost:plugin/types@0.2.0"));
        assert!(!provided("pulsehost:plugin/types@0.3.0"));
        assert!(!provided("example:other/thing"));
    }

    #[test]
    fn an_interface_named_type_import_is_checked_but_the_worlds_own_types_are_not() {
        let sneaky =
            wat::parse_str(r#"(component (import "wasi:http/types@0.2.0" (type (sub resource))))"#).unwrap();
        match check(&sneaky) {
            Err(PluginError::UnsupportedImports { imports, .. }) => {
                assert_eq!(imports, vec!["wasi:http/types@0.2.0".to_string()])
            }
            other => panic!("expected unsupported imports, got {other:?}"),
        }
        let types = wat::parse_str(
            r#"(component
                (import "pulsehost:plugin/types@0.1.0" (instance $t (export "manifest" (type (sub resource)))))
                (alias export $t "manifest" (type $m))
                (import "manifest" (type (eq $m)))
            )"#,
        )
        .unwrap();
        let surface = read(&types).unwrap();
        assert_eq!(surface.imports, vec!["pulsehost:plugin/types@0.1.0".to_string()]);
    }
}
