//! A component's exports as oslo endpoints: one [`InterfaceDescription`] per exported interface
//! (plus one for functions exported at the top level), one [`MethodDescription`] per function.

use crate::wit_types::{describe_types, foreign_types, unsupported, TypeDescription, WitType};
use fjord_oslo::names::to_snake;
use fjord_oslo::version::served_version;
use serde::Serialize;
use std::path::{Path, PathBuf};
use wit_parser::{Function, FunctionKind, Resolve, WorldItem, WorldKey};

/// A file that is not a readable WebAssembly component.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Decoding failed (not wasm, or a core module rather than a component).
    #[error("not a WebAssembly component: {0}")]
    NotComponent(String),
    /// WIT text that does not parse or has no single world.
    #[error("invalid WIT: {0}")]
    BadWit(String),
}

/// One method as oslo callers name it.
///
/// The strings (`params`, `result`) are the [`Display`](std::fmt::Display) of the structured
/// types (`param_types`, `result_type`): one description, printed by `fjord inspect` and turned
/// into typed clients by `fjord-codegen`.
///
/// ```
/// use fjord_surface::WitType;
/// let m = fjord_surface::MethodDescription::new(
///     "add", vec![("a".into(), WitType::S64)], Some(WitType::S64), None,
/// );
/// assert_eq!(m.signature(), "add(a: s64) -> s64");
/// assert_eq!(m.params, [("a".to_string(), "s64".to_string())]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MethodDescription {
    /// snake_case method name, as oslo callers call it.
    pub name: String,
    /// The function's name in WIT (kebab-case), as the component exports it.
    pub wit_name: String,
    /// snake_case parameter names with their WIT types.
    pub params: Vec<(String, String)>,
    /// The WIT result type, if any.
    pub result: Option<String>,
    /// Why the function cannot be called over RPC (it takes a resource, returns a stream, is
    /// async...), or `None` when it can. The host refuses a component with such a function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
    /// The parameters' types as trees, in parameter order (`params` spells them).
    #[serde(skip)]
    pub param_types: Vec<WitType>,
    /// The result type as a tree (`result` spells it).
    #[serde(skip)]
    pub result_type: Option<WitType>,
    /// The function's WIT doc comment, if any.
    #[serde(skip)]
    pub docs: Option<String>,
}

impl MethodDescription {
    /// A method named `wit_name` in WIT (kebab-case) with snake_case parameter names and their
    /// types; the strings are spelled from the types.
    ///
    /// ```
    /// use fjord_surface::{MethodDescription, WitType};
    /// let m = MethodDescription::new("free-ram", vec![("min-mb".into(), WitType::U64)], None, None);
    /// assert_eq!(m.signature(), "free_ram(min_mb: u64)");
    /// ```
    pub fn new(
        wit_name: &str,
        params: Vec<(String, WitType)>,
        result: Option<WitType>,
        unsupported: Option<String>,
    ) -> MethodDescription {
        MethodDescription {
            name: to_snake(wit_name),
            wit_name: wit_name.to_string(),
            params: params
                .iter()
                .map(|(n, t)| (to_snake(n), t.to_string()))
                .collect(),
            result: result.as_ref().map(ToString::to_string),
            unsupported,
            param_types: params.into_iter().map(|(_, t)| t).collect(),
            result_type: result,
            docs: None,
        }
    }

    /// `name(param: type, ...) -> type`.
    ///
    /// ```
    /// let m = fjord_surface::MethodDescription::new("ping", vec![], None, None);
    /// assert_eq!(m.signature(), "ping()");
    /// ```
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(n, t)| format!("{n}: {t}"))
            .collect();
        match &self.result {
            Some(r) => format!("{}({}) -> {}", self.name, params.join(", "), r),
            None => format!("{}({})", self.name, params.join(", ")),
        }
    }
}

/// One exported interface: an oslo endpoint.
///
/// ```
/// let d = fjord_surface::describe_wit_text(r#"
///     package example:calc@1.3.0;
///     interface calculator { enum color { red, dark-green } paint: func(c: color); }
///     world w { export calculator; }
/// "#).unwrap();
/// let i = &d.interfaces[0];
/// assert_eq!(i.export.as_deref(), Some("example:calc/calculator@1.3.0"));
/// assert_eq!(i.oslo_version, "1.3");
/// assert_eq!(i.types, [("color".to_string(), "enum { red, dark_green }".to_string())]);
/// assert_eq!(i.type_defs[0].kind.to_string(), "enum { red, dark_green }");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceDescription {
    /// The component's export name (`example:calc/calculator@1.3.0`); `None` for the functions
    /// a component exports at its top level, outside any interface.
    pub export: Option<String>,
    /// The interface name as written in WIT (`(top level)` for top-level functions).
    pub name: String,
    /// `namespace:package`, when the interface belongs to a package.
    pub package: Option<String>,
    /// The package's semver version, if any.
    pub package_version: Option<String>,
    /// The oslo version it serves: `M.m` (or `M.m.p` when the patch is non-zero); `1.0` without version.
    pub oslo_version: String,
    /// Callable functions, in WIT order.
    pub methods: Vec<MethodDescription>,
    /// The interface's named types with what a caller sends for them: record fields and
    /// enum, variant and flag cases in snake_case, as they are on the wire. Each is the name and
    /// the [`Display`](std::fmt::Display) of the kind of the `type_defs` entry at the same index.
    pub types: Vec<(String, String)>,
    /// The same named types as trees, in the same order (what `types` spells).
    #[serde(skip)]
    pub type_defs: Vec<TypeDescription>,
    /// Named types defined in other interfaces that this one's functions and types refer to
    /// (`use fjord:endpoint/types.{remote-error}`, and what those refer to), each once.
    #[serde(skip)]
    pub used_types: Vec<TypeDescription>,
    /// The interface's WIT doc comment, if any.
    #[serde(skip)]
    pub docs: Option<String>,
}

/// Everything a component exports for RPC.
///
/// ```
/// assert!(fjord_surface::describe_component(b"not wasm").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentDescription {
    /// Exported interfaces, in export order.
    pub interfaces: Vec<InterfaceDescription>,
}

/// Decodes a component's WIT and lists its exported interfaces and their functions.
///
/// ```
/// assert!(fjord_surface::describe_component(&[0, 97, 115, 109, 1, 0, 0, 0]).is_err());
/// ```
pub fn describe_component(bytes: &[u8]) -> Result<ComponentDescription, InspectError> {
    // Header: `\0asm`, a 16-bit version, then the layer: 0 = core module, 1 = component.
    // wit-component would read a core module as a component with an empty world.
    if bytes.len() < 8 || bytes.get(..4) != Some(b"\0asm".as_slice()) {
        return Err(InspectError::NotComponent("not a WebAssembly file".into()));
    }
    if bytes.get(6..8) != Some([1, 0].as_slice()) {
        return Err(InspectError::NotComponent(
            "this is a core WebAssembly module, not a component".into(),
        ));
    }
    let decoded =
        wit_component::decode(bytes).map_err(|e| InspectError::NotComponent(format!("{e:#}")))?;
    let (resolve, world) = match decoded {
        wit_component::DecodedWasm::Component(resolve, world) => (resolve, world),
        wit_component::DecodedWasm::WitPackage(..) => {
            return Err(InspectError::NotComponent(
                "this is a WIT package, not a component".into(),
            ))
        }
    };
    Ok(describe_world(&resolve, world))
}

/// Describes the exports of the one world in a WIT document (for tools that start from WIT
/// rather than from a built component).
///
/// ```
/// let d = fjord_surface::describe_wit_text(
///     "package a:b; interface api { hi: func() -> u32; } world w { export api; }").unwrap();
/// assert_eq!(d.interfaces[0].oslo_version, "1.0");
/// ```
pub fn describe_wit_text(wit: &str) -> Result<ComponentDescription, InspectError> {
    let mut resolve = Resolve::default();
    let pkg = resolve
        .push_str("input.wit", wit)
        .map_err(|e| InspectError::BadWit(format!("{e:#}")))?;
    let world = resolve
        .select_world(&[pkg], None)
        .map_err(|e| InspectError::BadWit(format!("{e:#}")))?;
    Ok(describe_world(&resolve, world))
}

/// Describes the exports of a world read from a WIT directory (with its `deps/`) or file, as
/// `wit-bindgen` reads one; `world` picks it when the package has several. Also returns every
/// file read, for build tools that rebuild when one changes.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("fjord-surface-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("api.wit"),
///     "package a:b@2.0.0; interface api { hi: func() -> u32; } world w { export api; }").unwrap();
/// let (d, files) = fjord_surface::describe_wit_path(&dir, None).unwrap();
/// assert_eq!(d.interfaces[0].oslo_version, "2.0");
/// assert_eq!(files.len(), 1);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn describe_wit_path(
    path: &Path,
    world: Option<&str>,
) -> Result<(ComponentDescription, Vec<PathBuf>), InspectError> {
    let mut resolve = Resolve::default();
    let (pkg, sources) = resolve
        .push_path(path)
        .map_err(|e| InspectError::BadWit(format!("{e:#}")))?;
    let world = resolve
        .select_world(&[pkg], world)
        .map_err(|e| InspectError::BadWit(format!("{e:#}")))?;
    let files = sources.paths().map(Path::to_path_buf).collect();
    Ok((describe_world(&resolve, world), files))
}

/// componentize-py's pre-initialisation hook: a component it builds (a Python endpoint) keeps
/// exporting the instance `exports` with `init`, which component-init called once while building.
/// It is not the endpoint's interface: served, it would be an RPC method `init` in every Python
/// endpoint, and two Python endpoints of one server would clash on it.
fn is_build_hook(key: &WorldKey, iface: &wit_parser::Interface) -> bool {
    matches!(key, WorldKey::Name(name) if name == "exports")
        && iface.functions.len() == 1
        && iface.functions.contains_key("init")
}

/// The exported interfaces of a decoded world. Interfaces of the `wasi` namespace (a command's
/// `wasi:cli/run`) are not RPC endpoints and are left out.
fn describe_world(resolve: &Resolve, world: wit_parser::WorldId) -> ComponentDescription {
    let mut interfaces = Vec::new();
    let mut top_level = Vec::new();
    for (key, item) in &resolve.worlds[world].exports {
        match item {
            WorldItem::Interface { id, .. } => {
                let iface = &resolve.interfaces[*id];
                let package = iface.package.map(|p| &resolve.packages[p].name);
                if package.is_some_and(|p| p.namespace == "wasi") || is_build_hook(key, iface) {
                    continue;
                }
                let methods = iface
                    .functions
                    .values()
                    .filter(|f| is_freestanding(f))
                    .map(|f| describe_function(resolve, f))
                    .collect();
                let type_defs = describe_types(resolve, iface);
                interfaces.push(InterfaceDescription {
                    export: Some(resolve.name_world_key(key)),
                    name: match key {
                        WorldKey::Name(name) => name.clone(),
                        WorldKey::Interface(_) => {
                            iface.name.clone().unwrap_or_else(|| "(anonymous)".into())
                        }
                    },
                    package: package.map(|p| format!("{}:{}", p.namespace, p.name)),
                    package_version: package
                        .and_then(|p| p.version.as_ref().map(|v| v.to_string())),
                    oslo_version: served_version(package.and_then(|p| p.version.as_ref())),
                    methods,
                    types: type_defs
                        .iter()
                        .map(|t| (t.name.clone(), t.kind.to_string()))
                        .collect(),
                    type_defs,
                    used_types: foreign_types(resolve, iface),
                    docs: iface.docs.contents.clone(),
                });
            }
            WorldItem::Function(f) if is_freestanding(f) => {
                top_level.push(describe_function(resolve, f));
            }
            _ => {}
        }
    }
    if !top_level.is_empty() {
        let package = resolve.worlds[world]
            .package
            .map(|p| &resolve.packages[p].name);
        interfaces.push(InterfaceDescription {
            export: None,
            name: "(top level)".into(),
            package: package.map(|p| format!("{}:{}", p.namespace, p.name)),
            package_version: package.and_then(|p| p.version.as_ref().map(|v| v.to_string())),
            oslo_version: served_version(None),
            methods: top_level,
            types: Vec::new(),
            type_defs: Vec::new(),
            used_types: Vec::new(),
            docs: None,
        });
    }
    ComponentDescription { interfaces }
}

/// `[constructor]r`, `[method]r.m` and `[static]r.f` belong to a resource, which RPC cannot
/// hold; a freestanding function that takes or returns one is marked unsupported instead.
fn is_freestanding(f: &Function) -> bool {
    matches!(
        f.kind,
        FunctionKind::Freestanding | FunctionKind::AsyncFreestanding
    )
}

fn describe_function(resolve: &Resolve, f: &Function) -> MethodDescription {
    let params_unsupported = f.params.iter().find_map(|p| {
        unsupported(resolve, &p.ty).map(|why| {
            format!(
                "parameter `{}` is {why}, which cannot be passed over RPC",
                p.name
            )
        })
    });
    let result_unsupported = || {
        f.result.as_ref().and_then(|t| {
            unsupported(resolve, t)
                .map(|why| format!("returns {why}, which cannot be passed over RPC"))
        })
    };
    let unsupported = if matches!(f.kind, FunctionKind::AsyncFreestanding) {
        Some("async functions are not supported yet".to_string())
    } else {
        params_unsupported.or_else(result_unsupported)
    };
    let mut method = MethodDescription::new(
        &f.name,
        f.params
            .iter()
            .map(|p| (p.name.clone(), WitType::of(resolve, &p.ty)))
            .collect(),
        f.result.as_ref().map(|t| WitType::of(resolve, t)),
        unsupported,
    );
    method.docs = f.docs.contents.clone();
    method
}

// Shared with the integration tests, which cannot see `cfg(test)` items of the library.
#[cfg(test)]
#[path = "../tests/test_component.rs"]
mod test_component;
#[cfg(test)]
use test_component::test_component;

#[cfg(test)]
fn describe_wit(wit: &str) -> ComponentDescription {
    describe_wit_text(wit).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCALAR_WIT: &str = r#"
        package example:calc@1.3.0;
        interface calculator {
            add: func(a: s64, b: s64) -> s64;
            select-destinations: func(max-count: u32, dry-run: bool) -> f64;
            ping: func();
        }
        world w { export calculator; }
    "#;

    /// One interface `calculator` of `example:calc@1.3.0` with these method signatures.
    fn assert_calculator(d: &ComponentDescription, signatures: &[&str]) {
        assert_eq!(d.interfaces.len(), 1);
        let i = &d.interfaces[0];
        assert_eq!(i.name, "calculator");
        assert_eq!(i.package.as_deref(), Some("example:calc"));
        assert_eq!(i.package_version.as_deref(), Some("1.3.0"));
        assert_eq!(i.oslo_version, "1.3");
        let sigs: Vec<String> = i.methods.iter().map(MethodDescription::signature).collect();
        assert_eq!(sigs, signatures);
    }

    #[test]
    fn describes_a_real_component() {
        let d = describe_component(&test_component(SCALAR_WIT)).unwrap();
        assert_calculator(
            &d,
            &[
                "add(a: s64, b: s64) -> s64",
                "select_destinations(max_count: u32, dry_run: bool) -> f64",
                "ping()",
            ],
        );
    }

    const WIT: &str = r#"
        package example:calc@1.3.0;
        interface calculator {
            record point { x: f64, y: f64 }
            add: func(a: s64, b: s64) -> s64;
            select-destinations: func(spec-obj: list<string>, max-count: option<u32>) -> result<string, string>;
            centroid: func(points: list<point>) -> option<point>;
            ping: func();
        }
        world w { export calculator; }
    "#;

    #[test]
    fn componentize_pys_init_hook_is_no_endpoint() {
        let d = describe_wit(
            "package a:b;\ninterface api { hi: func() -> u32; }\n\
             world w { export exports: interface { init: func(app-name: string) -> result<_, string>; } export api; }",
        );
        let names: Vec<&str> = d.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["api"]);
    }

    #[test]
    fn describes_exported_interfaces() {
        assert_calculator(
            &describe_wit(WIT),
            &[
                "add(a: s64, b: s64) -> s64",
                "select_destinations(spec_obj: list<string>, max_count: option<u32>) -> result<string, string>",
                "centroid(points: list<point>) -> option<point>",
                "ping()",
            ],
        );
        assert_eq!(
            describe_wit(WIT).interfaces[0].types,
            [("point".to_string(), "record { x: f64, y: f64 }".to_string())]
        );
    }

    #[test]
    fn unversioned_package_is_oslo_1_0() {
        let wit =
            "package example:plain;\ninterface api { hi: func() -> u32; }\nworld w { export api; }";
        let d = describe_component(&test_component(wit)).unwrap();
        assert_eq!(d.interfaces[0].methods[0].signature(), "hi() -> u32");
        assert_eq!(d.interfaces[0].oslo_version, "1.0");
        assert_eq!(d.interfaces[0].package_version, None);
    }

    #[test]
    fn unsupported_functions_say_why() {
        let d = describe_wit(
            r#"
            package example:res@1.0.0;
            interface counters {
                resource counter { get: func() -> u32; }
                use-counter: func(c: borrow<counter>) -> u32;
                watch: func() -> stream<u8>;
                fine: func(names: list<string>) -> option<u32>;
            }
            world w { export counters; }
        "#,
        );
        let methods = &d.interfaces[0].methods;
        let names: Vec<&str> = methods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["use_counter", "watch", "fine"],
            "resource methods are left out"
        );
        let why = |i: usize| methods[i].unsupported.clone().unwrap_or_default();
        assert!(
            why(0).contains("parameter `c` is a resource handle"),
            "{}",
            why(0)
        );
        assert!(why(1).contains("returns a stream"), "{}", why(1));
        assert_eq!(methods[2].unsupported, None);
        assert_eq!(
            d.interfaces[0].export.as_deref(),
            Some("example:res/counters@1.0.0")
        );
    }

    #[test]
    fn top_level_functions_form_one_more_interface() {
        let d =
            describe_wit("package a:b; world w { export hello: func(name: string) -> string; }");
        assert_eq!(d.interfaces.len(), 1);
        assert_eq!(d.interfaces[0].export, None);
        assert_eq!(
            d.interfaces[0].methods[0].signature(),
            "hello(name: string) -> string"
        );
    }

    #[test]
    fn versions() {
        use fjord_oslo::version::served_version;
        assert_eq!(
            served_version(Some(&semver::Version::new(1, 3, 2))),
            "1.3.2"
        );
        assert_eq!(served_version(Some(&semver::Version::new(2, 0, 0))), "2.0");
    }

    #[test]
    fn not_components() {
        assert!(describe_component(b"").is_err());
        assert!(describe_component(b"hello world, no wasm").is_err());
        // A core module header.
        let err = describe_component(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(err.to_string().contains("core WebAssembly module"), "{err}");
        // A component header with garbage after it.
        assert!(describe_component(b"\0asm\x0d\0\x01\0garbage").is_err());
    }
}
