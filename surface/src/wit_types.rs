//! WIT types in wire terms: a structured tree ([`WitType`], [`TypeDescription`]) from which both
//! the text `fjord inspect` prints and the typed clients of `fjord-codegen` are made, and which
//! types cannot cross RPC.

use fjord_oslo::names::to_snake;
use std::collections::HashSet;
use std::fmt;
use wit_parser::{Handle, Interface, Resolve, Type, TypeDefKind, TypeId, TypeOwner};

/// Why a type cannot cross RPC (`a resource handle`, `a stream`...), or `None` when it can.
///
/// ```
/// let mut resolve = wit_parser::Resolve::default();
/// assert_eq!(fjord_surface::unsupported(&resolve, &wit_parser::Type::String), None);
/// # let _ = &mut resolve;
/// ```
pub fn unsupported(resolve: &Resolve, ty: &Type) -> Option<String> {
    let Type::Id(id) = ty else {
        return match ty {
            Type::ErrorContext => Some("an error-context".into()),
            _ => None,
        };
    };
    let either = |a: &Option<Type>, b: &Option<Type>| {
        a.as_ref()
            .and_then(|t| unsupported(resolve, t))
            .or_else(|| b.as_ref().and_then(|t| unsupported(resolve, t)))
    };
    match &resolve.types[*id].kind {
        TypeDefKind::Resource | TypeDefKind::Handle(_) => Some("a resource handle".into()),
        TypeDefKind::Future(_) => Some("a future".into()),
        TypeDefKind::Stream(_) => Some("a stream".into()),
        TypeDefKind::Map(key, value) => match key {
            Type::String => unsupported(resolve, value),
            _ => Some("a map whose keys are not strings".into()),
        },
        TypeDefKind::List(t)
        | TypeDefKind::FixedLengthList(t, _)
        | TypeDefKind::Option(t)
        | TypeDefKind::Type(t) => unsupported(resolve, t),
        TypeDefKind::Record(r) => r.fields.iter().find_map(|f| unsupported(resolve, &f.ty)),
        TypeDefKind::Tuple(t) => t.types.iter().find_map(|t| unsupported(resolve, t)),
        TypeDefKind::Variant(v) => v
            .cases
            .iter()
            .find_map(|c| c.ty.as_ref().and_then(|t| unsupported(resolve, t))),
        TypeDefKind::Result(r) => either(&r.ok, &r.err),
        TypeDefKind::Flags(_) | TypeDefKind::Enum(_) => None,
        TypeDefKind::Unknown => Some("a type of unknown structure".into()),
    }
}

/// A WIT type as a tree: what a parameter, result, field or case payload is. Named types are
/// references ([`WitType::Named`]); their definitions are [`TypeDescription`]s. Its
/// [`Display`](fmt::Display) is the WIT spelling `fjord inspect` prints.
///
/// ```
/// use fjord_surface::WitType;
/// let t = WitType::List(Box::new(WitType::Option(Box::new(WitType::S64))));
/// assert_eq!(t.to_string(), "list<option<s64>>");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // The WIT primitive of the same name.
pub enum WitType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F32,
    F64,
    Char,
    String,
    ErrorContext,
    /// `list<T>`.
    List(Box<WitType>),
    /// `list<T, N>`.
    FixedList(Box<WitType>, u32),
    /// `option<T>`.
    Option(Box<WitType>),
    /// `result<T, E>`; `None` for `_`.
    Result {
        /// The `ok` payload.
        ok: Option<Box<WitType>>,
        /// The `err` payload.
        err: Option<Box<WitType>>,
    },
    /// `tuple<A, B...>`.
    Tuple(Vec<WitType>),
    /// `map<K, V>`.
    Map(Box<WitType>, Box<WitType>),
    /// A named type (record, enum, variant, flags, alias...), by its WIT name.
    Named {
        /// The WIT (kebab-case) name.
        name: String,
        /// Where it is defined: the interface's id (`fjord:endpoint/types@0.1.0`), or the
        /// world's or interface's name when it has no id; `None` when unknown.
        owner: Option<String>,
    },
    /// A resource handle: `r` (owned) or `borrow<r>`.
    Handle {
        /// The resource's name.
        resource: String,
        /// `borrow<r>` rather than an owned `r`.
        borrow: bool,
    },
    /// `future<T>`.
    Future(Option<Box<WitType>>),
    /// `stream<T>`.
    Stream(Option<Box<WitType>>),
    /// A type of no other kind (an unknown structure), by its WIT kind word.
    Other(String),
}

fn boxed(resolve: &Resolve, ty: &Type) -> Box<WitType> {
    Box::new(WitType::of(resolve, ty))
}

fn boxed_opt(resolve: &Resolve, ty: &Option<Type>) -> Option<Box<WitType>> {
    ty.as_ref().map(|t| boxed(resolve, t))
}

/// Who defines a type, as [`WitType::Named`] names it.
pub(crate) fn owner_name(resolve: &Resolve, owner: TypeOwner) -> Option<String> {
    match owner {
        TypeOwner::Interface(id) => resolve
            .id_of(id)
            .or_else(|| resolve.interfaces[id].name.clone()),
        TypeOwner::World(id) => Some(resolve.worlds[id].name.clone()),
        TypeOwner::None => None,
    }
}

impl WitType {
    /// The tree of a parsed WIT type; a named type becomes [`WitType::Named`].
    ///
    /// ```
    /// let resolve = wit_parser::Resolve::default();
    /// let t = fjord_surface::WitType::of(&resolve, &wit_parser::Type::U32);
    /// assert_eq!(t, fjord_surface::WitType::U32);
    /// ```
    pub fn of(resolve: &Resolve, ty: &Type) -> WitType {
        match ty {
            Type::Bool => WitType::Bool,
            Type::U8 => WitType::U8,
            Type::U16 => WitType::U16,
            Type::U32 => WitType::U32,
            Type::U64 => WitType::U64,
            Type::S8 => WitType::S8,
            Type::S16 => WitType::S16,
            Type::S32 => WitType::S32,
            Type::S64 => WitType::S64,
            Type::F32 => WitType::F32,
            Type::F64 => WitType::F64,
            Type::Char => WitType::Char,
            Type::String => WitType::String,
            Type::ErrorContext => WitType::ErrorContext,
            Type::Id(id) => {
                let def = &resolve.types[*id];
                match &def.name {
                    Some(name) => WitType::Named {
                        name: name.clone(),
                        owner: owner_name(resolve, def.owner),
                    },
                    None => WitType::structure(resolve, &def.kind),
                }
            }
        }
    }

    /// The tree of a type definition's structure, whatever its name.
    fn structure(resolve: &Resolve, kind: &TypeDefKind) -> WitType {
        match kind {
            TypeDefKind::List(t) => WitType::List(boxed(resolve, t)),
            TypeDefKind::FixedLengthList(t, n) => WitType::FixedList(boxed(resolve, t), *n),
            TypeDefKind::Option(t) => WitType::Option(boxed(resolve, t)),
            TypeDefKind::Map(k, v) => WitType::Map(boxed(resolve, k), boxed(resolve, v)),
            TypeDefKind::Result(r) => WitType::Result {
                ok: boxed_opt(resolve, &r.ok),
                err: boxed_opt(resolve, &r.err),
            },
            TypeDefKind::Tuple(t) => {
                WitType::Tuple(t.types.iter().map(|t| WitType::of(resolve, t)).collect())
            }
            TypeDefKind::Handle(Handle::Own(r)) => WitType::Handle {
                resource: type_name(resolve, &Type::Id(*r)),
                borrow: false,
            },
            TypeDefKind::Handle(Handle::Borrow(r)) => WitType::Handle {
                resource: type_name(resolve, &Type::Id(*r)),
                borrow: true,
            },
            TypeDefKind::Future(t) => WitType::Future(boxed_opt(resolve, t)),
            TypeDefKind::Stream(t) => WitType::Stream(boxed_opt(resolve, t)),
            TypeDefKind::Type(t) => WitType::of(resolve, t),
            other => WitType::Other(other.as_str().to_string()),
        }
    }
}

impl fmt::Display for WitType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |t: &Option<Box<WitType>>| t.as_ref().map_or("_".to_string(), |t| t.to_string());
        match self {
            WitType::Bool => f.write_str("bool"),
            WitType::U8 => f.write_str("u8"),
            WitType::U16 => f.write_str("u16"),
            WitType::U32 => f.write_str("u32"),
            WitType::U64 => f.write_str("u64"),
            WitType::S8 => f.write_str("s8"),
            WitType::S16 => f.write_str("s16"),
            WitType::S32 => f.write_str("s32"),
            WitType::S64 => f.write_str("s64"),
            WitType::F32 => f.write_str("f32"),
            WitType::F64 => f.write_str("f64"),
            WitType::Char => f.write_str("char"),
            WitType::String => f.write_str("string"),
            WitType::ErrorContext => f.write_str("error-context"),
            WitType::List(t) => write!(f, "list<{t}>"),
            WitType::FixedList(t, n) => write!(f, "list<{t}, {n}>"),
            WitType::Option(t) => write!(f, "option<{t}>"),
            WitType::Map(k, v) => write!(f, "map<{k}, {v}>"),
            WitType::Result {
                ok: None,
                err: None,
            } => f.write_str("result"),
            WitType::Result {
                ok: Some(ok),
                err: None,
            } => write!(f, "result<{ok}>"),
            WitType::Result { ok, err } => write!(f, "result<{}, {}>", opt(ok), opt(err)),
            WitType::Tuple(types) => {
                let items: Vec<String> = types.iter().map(ToString::to_string).collect();
                write!(f, "tuple<{}>", items.join(", "))
            }
            WitType::Named { name, .. } => f.write_str(name),
            WitType::Handle {
                resource,
                borrow: false,
            } => f.write_str(resource),
            WitType::Handle {
                resource,
                borrow: true,
            } => write!(f, "borrow<{resource}>"),
            WitType::Future(t) => write!(f, "future<{}>", opt(t)),
            WitType::Stream(t) => write!(f, "stream<{}>", opt(t)),
            WitType::Other(kind) => f.write_str(kind),
        }
    }
}

/// What a named type is, with names (fields, cases, flags) in snake_case as on the wire.
///
/// ```
/// use fjord_surface::{TypeKind, WitType};
/// let k = TypeKind::Record(vec![("x".into(), WitType::F64), ("y".into(), WitType::F64)]);
/// assert_eq!(k.to_string(), "record { x: f64, y: f64 }");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeKind {
    /// `record`: its fields (snake_case) and their types.
    Record(Vec<(String, WitType)>),
    /// `enum`: its cases (snake_case).
    Enum(Vec<String>),
    /// `flags`: its flags (snake_case).
    Flags(Vec<String>),
    /// `variant`: its cases (snake_case) and their payloads.
    Variant(Vec<(String, Option<WitType>)>),
    /// `type name = other` (also what `use` brings in): shown as the other type.
    Alias(WitType),
    /// A named list, option, result, tuple, map, handle, future or stream: `kind` is its WIT
    /// kind word (`list`), which is how it is shown; `ty` its structure.
    Other {
        /// The WIT kind word.
        kind: String,
        /// The structure, as if it were written in place.
        ty: WitType,
    },
}

impl fmt::Display for TypeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeKind::Record(fields) => {
                let fields: Vec<String> = fields.iter().map(|(n, t)| format!("{n}: {t}")).collect();
                write!(f, "record {{ {} }}", fields.join(", "))
            }
            TypeKind::Enum(cases) => write!(f, "enum {{ {} }}", cases.join(", ")),
            TypeKind::Flags(flags) => write!(f, "flags {{ {} }}", flags.join(", ")),
            TypeKind::Variant(cases) => {
                let cases: Vec<String> = cases
                    .iter()
                    .map(|(n, t)| match t {
                        Some(t) => format!("{n}({t})"),
                        None => n.clone(),
                    })
                    .collect();
                write!(f, "variant {{ {} }}", cases.join(", "))
            }
            TypeKind::Alias(t) => write!(f, "{t}"),
            TypeKind::Other { kind, .. } => f.write_str(kind),
        }
    }
}

/// A named type: its WIT name, what it is, where it is defined and its WIT doc comment.
///
/// ```
/// use fjord_surface::{TypeDescription, TypeKind};
/// let t = TypeDescription {
///     name: "rounding".into(), kind: TypeKind::Enum(vec!["down".into(), "up".into()]),
///     owner: None, docs: None,
/// };
/// assert_eq!(t.kind.to_string(), "enum { down, up }");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeDescription {
    /// The WIT (kebab-case) name.
    pub name: String,
    /// What it is.
    pub kind: TypeKind,
    /// Where it is defined, as in [`WitType::Named`].
    pub owner: Option<String>,
    /// The WIT doc comment, if any.
    pub docs: Option<String>,
}

/// The description of one named type definition; `None` for a resource (RPC cannot hold one).
fn describe_type(resolve: &Resolve, id: TypeId) -> Option<TypeDescription> {
    let def = &resolve.types[id];
    let snake_list = |names: Vec<&String>| names.into_iter().map(|n| to_snake(n)).collect();
    let kind = match &def.kind {
        TypeDefKind::Record(r) => TypeKind::Record(
            r.fields
                .iter()
                .map(|f| (to_snake(&f.name), WitType::of(resolve, &f.ty)))
                .collect(),
        ),
        TypeDefKind::Enum(e) => {
            TypeKind::Enum(snake_list(e.cases.iter().map(|c| &c.name).collect()))
        }
        TypeDefKind::Flags(f) => {
            TypeKind::Flags(snake_list(f.flags.iter().map(|c| &c.name).collect()))
        }
        TypeDefKind::Variant(v) => TypeKind::Variant(
            v.cases
                .iter()
                .map(|c| {
                    (
                        to_snake(&c.name),
                        c.ty.as_ref().map(|t| WitType::of(resolve, t)),
                    )
                })
                .collect(),
        ),
        TypeDefKind::Type(t) => TypeKind::Alias(WitType::of(resolve, t)),
        TypeDefKind::Resource => return None,
        other => TypeKind::Other {
            kind: other.as_str().to_string(),
            ty: WitType::structure(resolve, other),
        },
    };
    Some(TypeDescription {
        name: def.name.clone().unwrap_or_default(),
        kind,
        owner: owner_name(resolve, def.owner),
        docs: def.docs.contents.clone(),
    })
}

/// The named types an interface defines (or brings in with `use`), in WIT order; resources are
/// left out: RPC cannot hold them.
pub(crate) fn describe_types(resolve: &Resolve, iface: &Interface) -> Vec<TypeDescription> {
    iface
        .types
        .values()
        .filter_map(|id| describe_type(resolve, *id))
        .collect()
}

/// The named types defined outside `iface` that its functions and types refer to, directly
/// (through a `use`) or through other types, each once, in the order they are found.
pub(crate) fn foreign_types(resolve: &Resolve, iface: &Interface) -> Vec<TypeDescription> {
    let own: HashSet<TypeId> = iface.types.values().copied().collect();
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    let mut roots: Vec<Type> = iface.types.values().map(|id| Type::Id(*id)).collect();
    for f in iface.functions.values() {
        roots.extend(f.params.iter().map(|p| p.ty));
        roots.extend(f.result);
    }
    for ty in roots {
        walk(resolve, &ty, &own, &mut seen, &mut found);
    }
    found
}

fn walk(
    resolve: &Resolve,
    ty: &Type,
    own: &HashSet<TypeId>,
    seen: &mut HashSet<TypeId>,
    found: &mut Vec<TypeDescription>,
) {
    let Type::Id(id) = ty else { return };
    if !seen.insert(*id) {
        return;
    }
    let def = &resolve.types[*id];
    if def.name.is_some() && !own.contains(id) {
        if let Some(d) = describe_type(resolve, *id) {
            found.push(d);
        }
    }
    let mut go = |t: &Type| walk(resolve, t, own, seen, found);
    match &def.kind {
        TypeDefKind::Record(r) => r.fields.iter().for_each(|f| go(&f.ty)),
        TypeDefKind::Variant(v) => v.cases.iter().filter_map(|c| c.ty.as_ref()).for_each(go),
        TypeDefKind::Tuple(t) => t.types.iter().for_each(go),
        TypeDefKind::List(t)
        | TypeDefKind::FixedLengthList(t, _)
        | TypeDefKind::Option(t)
        | TypeDefKind::Type(t) => go(t),
        TypeDefKind::Map(k, v) => {
            go(k);
            go(v);
        }
        TypeDefKind::Result(r) => r.ok.iter().chain(r.err.iter()).for_each(go),
        TypeDefKind::Future(t) | TypeDefKind::Stream(t) => t.iter().for_each(go),
        TypeDefKind::Handle(_)
        | TypeDefKind::Resource
        | TypeDefKind::Flags(_)
        | TypeDefKind::Enum(_)
        | TypeDefKind::Unknown => {}
    }
}

/// WIT spelling of a type; named types by their name (the [`Display`](fmt::Display) of its
/// [`WitType`]).
///
/// ```
/// let resolve = wit_parser::Resolve::default();
/// assert_eq!(fjord_surface::type_name(&resolve, &wit_parser::Type::S64), "s64");
/// ```
pub fn type_name(resolve: &Resolve, ty: &Type) -> String {
    WitType::of(resolve, ty).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spelling `fjord inspect` printed before the tree existed, kept as the oracle that
    /// the tree's `Display` prints exactly the same.
    fn old_type_name(resolve: &Resolve, ty: &Type) -> String {
        match ty {
            Type::Id(id) => {
                let def = &resolve.types[*id];
                if let Some(name) = &def.name {
                    return name.clone();
                }
                let opt = |t: &Option<Type>| {
                    t.as_ref()
                        .map_or("_".to_string(), |t| old_type_name(resolve, t))
                };
                match &def.kind {
                    TypeDefKind::List(t) => format!("list<{}>", old_type_name(resolve, t)),
                    TypeDefKind::FixedLengthList(t, n) => {
                        format!("list<{}, {n}>", old_type_name(resolve, t))
                    }
                    TypeDefKind::Option(t) => format!("option<{}>", old_type_name(resolve, t)),
                    TypeDefKind::Map(k, v) => format!(
                        "map<{}, {}>",
                        old_type_name(resolve, k),
                        old_type_name(resolve, v)
                    ),
                    TypeDefKind::Result(r) => match (&r.ok, &r.err) {
                        (None, None) => "result".into(),
                        (Some(ok), None) => format!("result<{}>", old_type_name(resolve, ok)),
                        _ => format!("result<{}, {}>", opt(&r.ok), opt(&r.err)),
                    },
                    TypeDefKind::Tuple(t) => format!(
                        "tuple<{}>",
                        t.types
                            .iter()
                            .map(|t| old_type_name(resolve, t))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    TypeDefKind::Handle(Handle::Own(r)) => old_type_name(resolve, &Type::Id(*r)),
                    TypeDefKind::Handle(Handle::Borrow(r)) => {
                        format!("borrow<{}>", old_type_name(resolve, &Type::Id(*r)))
                    }
                    TypeDefKind::Future(t) => format!("future<{}>", opt(t)),
                    TypeDefKind::Stream(t) => format!("stream<{}>", opt(t)),
                    TypeDefKind::Type(t) => old_type_name(resolve, t),
                    other => other.as_str().to_string(),
                }
            }
            // Primitives were spelled as the tree spells them (checked by hand: bool, u8...).
            other => WitType::of(resolve, other).to_string(),
        }
    }

    fn old_describe_types(resolve: &Resolve, iface: &Interface) -> Vec<(String, String)> {
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
                                    old_type_name(resolve, &f.ty)
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
                                    Some(t) => format!(
                                        "{}({})",
                                        to_snake(&c.name),
                                        old_type_name(resolve, t)
                                    ),
                                    None => to_snake(&c.name),
                                })
                                .collect()
                        )
                    ),
                    TypeDefKind::Type(t) => old_type_name(resolve, t),
                    TypeDefKind::Resource => return None,
                    other => other.as_str().to_string(),
                };
                Some((name.clone(), definition))
            })
            .collect()
    }

    const EVERY_SHAPE: &str = r#"
        package example:shapes@2.1.0;
        interface base { record remote-error { module: string, class: string, message: string } }
        interface shapes {
            use base.{remote-error};
            use base.{remote-error as failure};
            resource counter { get: func() -> u32; }
            enum color { red, dark-green }
            flags perms { read, write-all }
            record point { x: f64, y-pos: f64 }
            variant shape { circle(f64), dot, poly(list<point>), named(tuple<string, option<color>>) }
            type ids = list<u64>;
            type maybe = option<point>;
            type outcome = result<u8, string>;
            type pair = tuple<s8, char>;
            type plain = u32;
            type same = point;
            type fixed = list<u16, 4>;
            everything: func(a: bool, b: u8, c: u16, d: u32, e: u64, f: s8, g: s16, h: s32, i: s64,
                j: f32, k: f64, l: char, m: string, n: list<list<point>>, o: option<option<color>>,
                p: result, q: result<u8>, r: result<_, string>, s: result<u8, string>,
                t: tuple<u8, string>, u: perms, v: shape, w: ids, x: fixed, y: list<u8, 3>,
                z: borrow<counter>, zz: counter, zzz: remote-error) -> result<failure, remote-error>;
            watch: func() -> stream<u8>;
            later: func() -> future;
        }
        world w { export shapes; }
    "#;

    #[test]
    fn the_tree_prints_exactly_what_inspect_printed() {
        let mut resolve = Resolve::default();
        let pkg = resolve.push_str("t.wit", EVERY_SHAPE).unwrap();
        let iface = &resolve.interfaces[resolve.packages[pkg].interfaces["shapes"]];
        let new: Vec<(String, String)> = describe_types(&resolve, iface)
            .into_iter()
            .map(|t| (t.name, t.kind.to_string()))
            .collect();
        assert_eq!(new, old_describe_types(&resolve, iface));
        assert!(new.len() >= 12, "{new:?}");
        for f in iface.functions.values() {
            for ty in f.params.iter().map(|p| &p.ty).chain(f.result.iter()) {
                assert_eq!(type_name(&resolve, ty), old_type_name(&resolve, ty));
            }
        }
    }

    #[test]
    fn used_types_are_described_where_they_are_defined() {
        let mut resolve = Resolve::default();
        let pkg = resolve.push_str("t.wit", EVERY_SHAPE).unwrap();
        let iface = &resolve.interfaces[resolve.packages[pkg].interfaces["shapes"]];
        let foreign = foreign_types(&resolve, iface);
        assert_eq!(foreign.len(), 1, "{foreign:?}");
        assert_eq!(foreign[0].name, "remote-error");
        assert_eq!(
            foreign[0].owner.as_deref(),
            Some("example:shapes/base@2.1.0")
        );
        let own = describe_types(&resolve, iface);
        let failure = own.iter().find(|t| t.name == "failure").unwrap();
        assert_eq!(
            failure.kind,
            TypeKind::Alias(WitType::Named {
                name: "remote-error".into(),
                owner: Some("example:shapes/base@2.1.0".into())
            })
        );
        assert_eq!(
            failure.owner.as_deref(),
            Some("example:shapes/shapes@2.1.0")
        );
    }
}
