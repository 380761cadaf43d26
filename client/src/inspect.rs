//! What an endpoint component offers to oslo callers, read from its WIT (no wasmtime needed).

use crate::names::to_snake;
use crate::version::served_version;
use serde::Serialize;
use wit_parser::{Function, FunctionKind, Handle, Resolve, Type, TypeDefKind, WorldItem};

/// A file that is not a readable WebAssembly component.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Decoding failed (not wasm, or a core module rather than a component).
    #[error("not a WebAssembly component: {0}")]
    NotComponent(String),
}

/// One method as oslo callers name it.
///
/// ```
/// let m = fjord_client::inspect::MethodDescription {
///     name: "add".into(),
///     params: vec![("a".into(), "s64".into())],
///     result: Some("s64".into()),
/// };
/// assert_eq!(m.signature(), "add(a: s64) -> s64");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MethodDescription {
    /// snake_case method name.
    pub name: String,
    /// snake_case parameter names with their WIT types.
    pub params: Vec<(String, String)>,
    /// The WIT result type, if any.
    pub result: Option<String>,
}

impl MethodDescription {
    /// `name(param: type, ...) -> type`.
    ///
    /// ```
    /// let m = fjord_client::inspect::MethodDescription { name: "ping".into(), params: vec![], result: None };
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
/// let i = fjord_client::inspect::InterfaceDescription {
///     name: "calculator".into(), package: Some("example:calc".into()),
///     package_version: Some("1.3.0".into()), oslo_version: "1.3".into(), methods: vec![],
///     types: vec![("color".into(), "enum { red, dark_green }".into())],
/// };
/// assert_eq!(i.oslo_version, "1.3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceDescription {
    /// The interface name as written in WIT.
    pub name: String,
    /// `namespace:package`, when the interface belongs to a package.
    pub package: Option<String>,
    /// The package's semver version, if any.
    pub package_version: Option<String>,
    /// The oslo version it serves: `M.m` (or `M.m.p` when the patch is non-zero); `1.0` without version.
    pub oslo_version: String,
    /// Callable functions.
    pub methods: Vec<MethodDescription>,
    /// The interface's named types with what a caller sends for them: record fields and
    /// enum, variant and flag cases in snake_case, as they are on the wire.
    pub types: Vec<(String, String)>,
}

/// Everything a component exports for RPC.
///
/// ```
/// assert!(fjord_client::inspect::describe_component(b"not wasm").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentDescription {
    /// Exported interfaces, in export order.
    pub interfaces: Vec<InterfaceDescription>,
}

/// Decodes a component's WIT and lists its exported interfaces and their functions.
///
/// ```
/// assert!(fjord_client::inspect::describe_component(&[0, 97, 115, 109, 1, 0, 0, 0]).is_err());
/// ```
pub fn describe_component(bytes: &[u8]) -> Result<ComponentDescription, InspectError> {
    // Header: `\0asm`, a 16-bit version, then the layer: 0 = core module, 1 = component.
    // wit-component would read a core module as a component with an empty world.
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(InspectError::NotComponent("not a WebAssembly file".into()));
    }
    if bytes[6..8] != [1, 0] {
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

/// The exported interfaces of a decoded world.
fn describe_world(resolve: &Resolve, world: wit_parser::WorldId) -> ComponentDescription {
    let mut interfaces = Vec::new();
    for item in resolve.worlds[world].exports.values() {
        let WorldItem::Interface { id, .. } = item else {
            continue;
        };
        let iface = &resolve.interfaces[*id];
        let package = iface.package.map(|p| &resolve.packages[p].name);
        let methods = iface
            .functions
            .values()
            .filter(|f| {
                matches!(
                    f.kind,
                    FunctionKind::Freestanding | FunctionKind::AsyncFreestanding
                )
            })
            .map(|f| describe_function(resolve, f))
            .collect();
        interfaces.push(InterfaceDescription {
            name: iface.name.clone().unwrap_or_else(|| "(anonymous)".into()),
            package: package.map(|p| format!("{}:{}", p.namespace, p.name)),
            package_version: package.and_then(|p| p.version.as_ref().map(|v| v.to_string())),
            oslo_version: served_version(package.and_then(|p| p.version.as_ref())),
            methods,
            types: describe_types(resolve, iface),
        });
    }
    ComponentDescription { interfaces }
}

fn describe_function(resolve: &Resolve, f: &Function) -> MethodDescription {
    MethodDescription {
        name: to_snake(&f.name),
        params: f
            .params
            .iter()
            .map(|p| (to_snake(&p.name), type_name(resolve, &p.ty)))
            .collect(),
        result: f.result.as_ref().map(|t| type_name(resolve, t)),
    }
}

/// The named types an interface defines, in wire terms (resources are left out: RPC cannot hold
/// them).
fn describe_types(resolve: &Resolve, iface: &wit_parser::Interface) -> Vec<(String, String)> {
    let list = |items: Vec<String>| items.join(", ");
    iface
        .types
        .iter()
        .filter_map(|(name, id)| {
            let definition = match &resolve.types[*id].kind {
                TypeDefKind::Record(r) => format!(
                    "record {{ {} }}",
                    list(
                        r.fields
                            .iter()
                            .map(|f| format!(
                                "{}: {}",
                                to_snake(&f.name),
                                type_name(resolve, &f.ty)
                            ))
                            .collect()
                    )
                ),
                TypeDefKind::Enum(e) => format!(
                    "enum {{ {} }}",
                    list(e.cases.iter().map(|c| to_snake(&c.name)).collect())
                ),
                TypeDefKind::Flags(f) => format!(
                    "flags {{ {} }}",
                    list(f.flags.iter().map(|c| to_snake(&c.name)).collect())
                ),
                TypeDefKind::Variant(v) => format!(
                    "variant {{ {} }}",
                    list(
                        v.cases
                            .iter()
                            .map(|c| match &c.ty {
                                Some(t) =>
                                    format!("{}({})", to_snake(&c.name), type_name(resolve, t)),
                                None => to_snake(&c.name),
                            })
                            .collect()
                    )
                ),
                TypeDefKind::Type(t) => type_name(resolve, t),
                TypeDefKind::Resource => return None,
                other => other.as_str().to_string(),
            };
            Some((name.clone(), definition))
        })
        .collect()
}

/// WIT spelling of a type; named types by their name.
fn type_name(resolve: &Resolve, ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "s8".into(),
        Type::S16 => "s16".into(),
        Type::S32 => "s32".into(),
        Type::S64 => "s64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::ErrorContext => "error-context".into(),
        Type::Id(id) => {
            let def = &resolve.types[*id];
            if let Some(name) = &def.name {
                return name.clone();
            }
            let opt = |t: &Option<Type>| {
                t.as_ref()
                    .map_or("_".to_string(), |t| type_name(resolve, t))
            };
            match &def.kind {
                TypeDefKind::List(t) => format!("list<{}>", type_name(resolve, t)),
                TypeDefKind::FixedLengthList(t, n) => {
                    format!("list<{}, {n}>", type_name(resolve, t))
                }
                TypeDefKind::Option(t) => format!("option<{}>", type_name(resolve, t)),
                TypeDefKind::Result(r) => match (&r.ok, &r.err) {
                    (None, None) => "result".into(),
                    (Some(ok), None) => format!("result<{}>", type_name(resolve, ok)),
                    _ => format!("result<{}, {}>", opt(&r.ok), opt(&r.err)),
                },
                TypeDefKind::Tuple(t) => format!(
                    "tuple<{}>",
                    t.types
                        .iter()
                        .map(|t| type_name(resolve, t))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                TypeDefKind::Handle(Handle::Own(r)) => type_name(resolve, &Type::Id(*r)),
                TypeDefKind::Handle(Handle::Borrow(r)) => {
                    format!("borrow<{}>", type_name(resolve, &Type::Id(*r)))
                }
                TypeDefKind::Future(t) => format!("future<{}>", opt(t)),
                TypeDefKind::Stream(t) => format!("stream<{}>", opt(t)),
                TypeDefKind::Type(t) => type_name(resolve, t),
                other => other.as_str().to_string(),
            }
        }
    }
}

// Shared with the integration tests, which cannot see `cfg(test)` items of the library.
#[cfg(test)]
#[path = "../tests/support/test_component.rs"]
mod test_component;
#[cfg(test)]
use test_component::test_component;

/// Describes the exports of a world given as WIT text (for tests of type rendering).
#[cfg(test)]
fn describe_wit(wit: &str) -> ComponentDescription {
    let mut resolve = Resolve::default();
    let pkg = resolve.push_str("test.wit", wit).unwrap();
    let world = resolve.select_world(&[pkg], None).unwrap();
    describe_world(&resolve, world)
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
    fn versions() {
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
