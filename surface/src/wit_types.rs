//! WIT types in wire terms: how each is written for callers, and which cannot cross RPC.

use fjord_oslo::names::to_snake;
use wit_parser::{Handle, Resolve, Type, TypeDefKind};

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

/// The named types an interface defines, in wire terms (resources are left out: RPC cannot hold
/// them).
pub(crate) fn describe_types(
    resolve: &Resolve,
    iface: &wit_parser::Interface,
) -> Vec<(String, String)> {
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
///
/// ```
/// let resolve = wit_parser::Resolve::default();
/// assert_eq!(fjord_surface::type_name(&resolve, &wit_parser::Type::S64), "s64");
/// ```
pub fn type_name(resolve: &Resolve, ty: &Type) -> String {
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
                TypeDefKind::Map(k, v) => {
                    format!("map<{}, {}>", type_name(resolve, k), type_name(resolve, v))
                }
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
