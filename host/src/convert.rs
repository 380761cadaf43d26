//! JSON (oslo keyword arguments and results) to WIT values and back, driven by the WIT type.
//!
//! The table is in `docs/design.md`: records are objects with snake_case keys, enums are case strings,
//! variants are `{"case": payload}` (or the bare case when it has none), flags are arrays of case
//! strings, results are `{"ok": ..}` / `{"err": ..}`. Anything else is refused with a [`ConvertError`]
//! whose path names the parameter, so the caller gets a `TypeError` that says what is wrong.

use fjord_oslo::names::{to_kebab, to_snake};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use std::fmt;
use wasmtime::component::{Type, Val};

/// A JSON value that does not fit its WIT type. `path` starts at the parameter name
/// (`points[1].x`), so the message can name it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct ConvertError {
    pub path: String,
    pub problem: String,
}

/// Where in a value we are, built only when an error needs it.
#[derive(Clone, Copy)]
enum Step<'a> {
    Root(&'a str),
    Field(&'a Step<'a>, &'a str),
    Index(&'a Step<'a>, usize),
}

impl fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Root(name) => f.write_str(name),
            Step::Field(parent, name) => write!(f, "{parent}.{name}"),
            Step::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn fail(at: &Step<'_>, problem: impl Into<String>) -> ConvertError {
    ConvertError {
        path: at.to_string(),
        problem: problem.into(),
    }
}

fn mismatch(at: &Step<'_>, expected: &str, got: &Value) -> ConvertError {
    fail(at, format!("expected {expected}, got {}", describe(got)))
}

/// A short description of a JSON value for error messages (never the whole value: it may be huge).
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() <= 32 => format!("string {s:?}"),
        Value::String(_) => "a string".into(),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

/// A readable name of a WIT type, for messages and `fjord inspect`-like listings.
pub fn type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", type_name(&l.ty())),
        Type::FixedLengthList(l) => format!("list<{}, {}>", type_name(&l.ty()), l.len()),
        Type::Map(m) => format!("map<{}, {}>", type_name(&m.key()), type_name(&m.value())),
        Type::Record(r) => {
            let fields: Vec<String> = r
                .fields()
                .map(|f| format!("{}: {}", to_snake(f.name), type_name(&f.ty)))
                .collect();
            format!("record {{ {} }}", fields.join(", "))
        }
        Type::Tuple(t) => {
            let items: Vec<String> = t.types().map(|t| type_name(&t)).collect();
            format!("tuple<{}>", items.join(", "))
        }
        Type::Variant(v) => {
            let cases: Vec<String> = v
                .cases()
                .map(|c| match c.ty {
                    Some(ty) => format!("{}({})", to_snake(c.name), type_name(&ty)),
                    None => to_snake(c.name),
                })
                .collect();
            format!("variant {{ {} }}", cases.join(", "))
        }
        Type::Enum(e) => {
            let cases: Vec<String> = e.names().map(to_snake).collect();
            format!("enum {{ {} }}", cases.join(", "))
        }
        Type::Option(o) => format!("option<{}>", type_name(&o.ty())),
        Type::Result(r) => format!(
            "result<{}, {}>",
            r.ok().map_or("_".into(), |t| type_name(&t)),
            r.err().map_or("_".into(), |t| type_name(&t))
        ),
        Type::Flags(f) => {
            let cases: Vec<String> = f.names().map(to_snake).collect();
            format!("flags {{ {} }}", cases.join(", "))
        }
        other => kind(other).to_string(),
    }
}

/// The kind of a type that has no JSON form.
fn kind(ty: &Type) -> &'static str {
    match ty {
        Type::Own(_) | Type::Borrow(_) => "resource",
        Type::Future(_) => "future",
        Type::Stream(_) => "stream",
        Type::ErrorContext => "error-context",
        _ => "type",
    }
}

/// Converts one keyword argument to the WIT value its parameter `name` expects.
pub fn to_val(ty: &Type, value: &Value, name: &str) -> Result<Val, ConvertError> {
    json_to_val(ty, value, &Step::Root(name))
}

fn int<T: TryFrom<i64> + TryFrom<u64>>(
    value: &Value,
    at: &Step<'_>,
    ty: &str,
) -> Result<T, ConvertError> {
    let Value::Number(n) = value else {
        return Err(mismatch(at, &format!("an integer ({ty})"), value));
    };
    let converted = if let Some(i) = n.as_i64() {
        T::try_from(i).ok()
    } else if let Some(u) = n.as_u64() {
        T::try_from(u).ok()
    } else {
        // A float: accepted only when it is a whole number (Python sends 2.0 for some ints).
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && (-9.2e18..=1.8e19).contains(&f) => {
                if f < 0.0 {
                    T::try_from(f as i64).ok()
                } else {
                    T::try_from(f as u64).ok()
                }
            }
            _ => return Err(fail(at, format!("expected an integer ({ty}), got {n}"))),
        }
    };
    converted.ok_or_else(|| fail(at, format!("{n} is out of range for {ty}")))
}

fn json_to_val(ty: &Type, value: &Value, at: &Step<'_>) -> Result<Val, ConvertError> {
    Ok(match ty {
        Type::Bool => match value {
            Value::Bool(b) => Val::Bool(*b),
            _ => return Err(mismatch(at, "a boolean", value)),
        },
        Type::S8 => Val::S8(int(value, at, "s8")?),
        Type::U8 => Val::U8(int(value, at, "u8")?),
        Type::S16 => Val::S16(int(value, at, "s16")?),
        Type::U16 => Val::U16(int(value, at, "u16")?),
        Type::S32 => Val::S32(int(value, at, "s32")?),
        Type::U32 => Val::U32(int(value, at, "u32")?),
        Type::S64 => Val::S64(int(value, at, "s64")?),
        Type::U64 => Val::U64(int(value, at, "u64")?),
        Type::Float32 | Type::Float64 => {
            let Some(f) = value.as_f64() else {
                return Err(mismatch(at, "a number", value));
            };
            if matches!(ty, Type::Float32) {
                // Past f32's range the cast gives infinity, which JSON cannot carry back.
                let narrowed = f as f32;
                if narrowed.is_infinite() {
                    return Err(fail(at, format!("{value} is out of range for f32")));
                }
                Val::Float32(narrowed)
            } else {
                Val::Float64(f)
            }
        }
        Type::Char => {
            let Value::String(s) = value else {
                return Err(mismatch(at, "a one-character string", value));
            };
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(mismatch(at, "a one-character string", value)),
            }
        }
        Type::String => match value {
            Value::String(s) => Val::String(s.clone()),
            _ => return Err(mismatch(at, "a string", value)),
        },
        Type::List(list) => Val::List(array_items(&list.ty(), value, at, None)?),
        Type::FixedLengthList(list) => Val::FixedLengthList(array_items(
            &list.ty(),
            value,
            at,
            Some(list.len() as usize),
        )?),
        Type::Tuple(tuple) => {
            let types: Vec<Type> = tuple.types().collect();
            let Value::Array(items) = value else {
                return Err(mismatch(
                    at,
                    &format!("an array of {} items", types.len()),
                    value,
                ));
            };
            if items.len() != types.len() {
                return Err(mismatch(
                    at,
                    &format!("an array of {} items", types.len()),
                    value,
                ));
            }
            let mut vals = Vec::with_capacity(items.len());
            for (i, (ty, item)) in types.iter().zip(items).enumerate() {
                vals.push(json_to_val(ty, item, &Step::Index(at, i))?);
            }
            Val::Tuple(vals)
        }
        Type::Record(record) => {
            let Value::Object(object) = value else {
                return Err(mismatch(at, "an object", value));
            };
            let mut fields = Vec::with_capacity(record.fields().len());
            for field in record.fields() {
                let key = to_snake(field.name);
                let step = Step::Field(at, &key);
                let val = match object.get(&key).or_else(|| object.get(field.name)) {
                    Some(v) => json_to_val(&field.ty, v, &step)?,
                    None if matches!(field.ty, Type::Option(_)) => Val::Option(None),
                    None => return Err(fail(&step, "missing field")),
                };
                fields.push((field.name.to_string(), val));
            }
            if let Some(unknown) = object.keys().find(|k| {
                !record
                    .fields()
                    .any(|f| f.name == k.as_str() || to_snake(f.name) == **k)
            }) {
                return Err(fail(at, format!("unknown field {unknown:?}")));
            }
            Val::Record(fields)
        }
        Type::Option(option) => match value {
            Value::Null => Val::Option(None),
            v => Val::Option(Some(Box::new(json_to_val(&option.ty(), v, at)?))),
        },
        Type::Enum(e) => {
            let case = case_name(e.names(), value).ok_or_else(|| {
                let cases: Vec<String> = e.names().map(to_snake).collect();
                mismatch(at, &format!("one of {}", cases.join(", ")), value)
            })?;
            Val::Enum(case)
        }
        Type::Variant(variant) => {
            let expected = || {
                let cases: Vec<String> = variant.cases().map(|c| to_snake(c.name)).collect();
                format!("a case of {} as {{\"case\": payload}}", cases.join(", "))
            };
            let (key, payload) = match value {
                Value::String(s) => (s.as_str(), None),
                Value::Object(o) if o.len() == 1 => match o.iter().next() {
                    Some((k, v)) => (k.as_str(), Some(v)),
                    None => return Err(mismatch(at, &expected(), value)),
                },
                _ => return Err(mismatch(at, &expected(), value)),
            };
            let Some(case) = variant
                .cases()
                .find(|c| c.name == key || to_snake(c.name) == key)
            else {
                return Err(fail(
                    at,
                    format!("unknown case {key:?}, expected {}", expected()),
                ));
            };
            let step = Step::Field(at, key);
            let payload = match (case.ty, payload) {
                (Some(ty), Some(p)) => Some(Box::new(json_to_val(&ty, p, &step)?)),
                (Some(_), None) => return Err(fail(&step, "this case needs a payload")),
                (None, None) | (None, Some(Value::Null)) => None,
                (None, Some(p)) => return Err(mismatch(&step, "no payload (null)", p)),
            };
            Val::Variant(case.name.to_string(), payload)
        }
        Type::Flags(flags) => {
            let Value::Array(items) = value else {
                return Err(mismatch(at, "an array of flag names", value));
            };
            let mut set = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let name = case_name(flags.names(), item).ok_or_else(|| {
                    let names: Vec<String> = flags.names().map(to_snake).collect();
                    mismatch(
                        &Step::Index(at, i),
                        &format!("one of {}", names.join(", ")),
                        item,
                    )
                })?;
                if !set.contains(&name) {
                    set.push(name);
                }
            }
            Val::Flags(set)
        }
        Type::Result(result) => {
            let expected = "{\"ok\": value} or {\"err\": value}";
            let Value::Object(o) = value else {
                return Err(mismatch(at, expected, value));
            };
            let (key, payload) = match (o.len(), o.iter().next()) {
                (1, Some((k, v))) => (k.as_str(), v),
                _ => return Err(mismatch(at, expected, value)),
            };
            let step = Step::Field(at, key);
            let convert = |ty: Option<Type>| -> Result<Option<Box<Val>>, ConvertError> {
                match (ty, payload) {
                    (Some(ty), p) => Ok(Some(Box::new(json_to_val(&ty, p, &step)?))),
                    (None, Value::Null) => Ok(None),
                    (None, p) => Err(mismatch(&step, "null", p)),
                }
            };
            match key {
                "ok" => Val::Result(Ok(convert(result.ok())?)),
                "err" => Val::Result(Err(convert(result.err())?)),
                _ => return Err(mismatch(at, expected, value)),
            }
        }
        Type::Map(map) => {
            let Value::Object(o) = value else {
                return Err(mismatch(at, "an object", value));
            };
            let mut entries = Vec::with_capacity(o.len());
            for (k, v) in o {
                let step = Step::Field(at, k);
                entries.push((
                    json_to_val(&map.key(), &Value::String(k.clone()), &step)?,
                    json_to_val(&map.value(), v, &step)?,
                ));
            }
            Val::Map(entries)
        }
        other => {
            return Err(fail(
                at,
                format!("a {} cannot be passed over RPC", kind(other)),
            ))
        }
    })
}

fn array_items(
    ty: &Type,
    value: &Value,
    at: &Step<'_>,
    len: Option<usize>,
) -> Result<Vec<Val>, ConvertError> {
    let Value::Array(items) = value else {
        return Err(mismatch(at, "an array", value));
    };
    if let Some(len) = len {
        if items.len() != len {
            return Err(mismatch(at, &format!("an array of {len} items"), value));
        }
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| json_to_val(ty, item, &Step::Index(at, i)))
        .collect()
}

/// Finds the WIT case a JSON string names, accepting the snake_case form (and the kebab form).
fn case_name<'a>(mut names: impl Iterator<Item = &'a str>, value: &Value) -> Option<String> {
    let Value::String(s) = value else { return None };
    let kebab = to_kebab(s);
    names.find(|n| *n == s || *n == kebab).map(str::to_string)
}

/// A WIT value (a function's result) as the JSON the caller receives, serialized straight from
/// the value: a large result is written as text without a JSON tree of it ever being built.
pub struct JsonOf<'a>(pub &'a Val);

impl Serialize for JsonOf<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Val::Bool(b) => s.serialize_bool(*b),
            Val::S8(n) => s.serialize_i8(*n),
            Val::U8(n) => s.serialize_u8(*n),
            Val::S16(n) => s.serialize_i16(*n),
            Val::U16(n) => s.serialize_u16(*n),
            Val::S32(n) => s.serialize_i32(*n),
            Val::U32(n) => s.serialize_u32(*n),
            Val::S64(n) => s.serialize_i64(*n),
            Val::U64(n) => s.serialize_u64(*n),
            // As an f64, as oslo's Python reads it; JSON has no NaN or infinity: they become null.
            Val::Float32(f) => float(s, f64::from(*f)),
            Val::Float64(f) => float(s, *f),
            Val::Char(c) => s.serialize_char(*c),
            Val::String(text) => s.serialize_str(text),
            Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
                s.collect_seq(items.iter().map(JsonOf))
            }
            Val::Record(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (name, v) in fields {
                    map.serialize_entry(&to_snake(name), &JsonOf(v))?;
                }
                map.end()
            }
            Val::Enum(case) | Val::Variant(case, None) => s.serialize_str(&to_snake(case)),
            Val::Variant(case, Some(payload)) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(&to_snake(case), &JsonOf(payload))?;
                map.end()
            }
            Val::Option(None) => s.serialize_unit(),
            Val::Option(Some(v)) => JsonOf(v).serialize(s),
            Val::Result(r) => {
                let (key, payload) = match r {
                    Ok(v) => ("ok", v),
                    Err(v) => ("err", v),
                };
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(key, &payload.as_deref().map(JsonOf))?;
                map.end()
            }
            Val::Flags(names) => s.collect_seq(names.iter().map(|n| to_snake(n))),
            // JSON keys are strings: a string key as it is, any other as its JSON text.
            Val::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    match k {
                        Val::String(key) => map.serialize_entry(key, &JsonOf(v))?,
                        other => {
                            let key = serde_json::to_string(&JsonOf(other))
                                .map_err(serde::ser::Error::custom)?;
                            map.serialize_entry(&key, &JsonOf(v))?;
                        }
                    }
                }
                map.end()
            }
            // Refused at load (see `unsupported`); never produced by an RPC-callable function.
            Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => {
                s.serialize_unit()
            }
        }
    }
}

fn float<S: Serializer>(s: S, f: f64) -> Result<S::Ok, S::Error> {
    if f.is_finite() {
        s.serialize_f64(f)
    } else {
        s.serialize_unit()
    }
}

/// Converts a WIT value to the JSON the caller receives, as a JSON tree (for tests and small
/// values; replies are written as text by [`to_json_text`]).
pub fn to_json(val: &Val) -> Value {
    // Cannot fail: every map key written is a string.
    serde_json::to_value(JsonOf(val)).unwrap_or(Value::Null)
}

/// A WIT value as JSON text of at most `max` bytes; `None` when it would be longer (writing
/// stops there, so a huge value costs no more than `max` bytes of text).
pub fn to_json_text(val: &Val, max: usize) -> Option<String> {
    let mut out = Limited {
        bytes: Vec::new(),
        max,
    };
    serde_json::to_writer(&mut out, &JsonOf(val)).ok()?;
    String::from_utf8(out.bytes).ok()
}

/// A buffer that refuses to grow past `max` bytes.
struct Limited {
    bytes: Vec<u8>,
    max: usize,
}

impl std::io::Write for Limited {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.max.saturating_sub(self.bytes.len()) {
            return Err(std::io::Error::other("over the size limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz/` (convert): an f64 result written as JSON text was read back 1 ULP off
    /// (serde_json needs `float_roundtrip`), so a caller would not get the value the guest returned.
    #[test]
    fn f64_survives_json_text_exactly() {
        let val = Val::Float64(1.844_704_370_955_164_6e28);
        let text = to_json(&val).to_string();
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(to_val(&Type::Float64, &json, "v").unwrap(), val, "{text}");
        let json: Value = serde_json::from_str("18447043709551647043709551615").unwrap();
        let val = to_val(&Type::Float64, &json, "v").unwrap();
        let again: Value = serde_json::from_str(&to_json(&val).to_string()).unwrap();
        assert_eq!(to_val(&Type::Float64, &again, "v").unwrap(), val);
    }

    /// Found by `fuzz/` (convert): a number beyond f32's range became infinity, silently.
    #[test]
    fn f32_out_of_range_is_refused() {
        let err = to_val(&Type::Float32, &serde_json::json!(1e39), "v").unwrap_err();
        assert_eq!(err.to_string(), "v: 1e+39 is out of range for f32");
        let err = to_val(&Type::Float32, &serde_json::json!(-3.5e38), "v").unwrap_err();
        assert!(err.to_string().contains("out of range for f32"), "{err}");
        assert_eq!(
            to_val(&Type::Float32, &serde_json::json!(3.4e38), "v").unwrap(),
            Val::Float32(3.4e38)
        );
    }
}
