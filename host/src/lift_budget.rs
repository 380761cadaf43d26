//! How much a guest may hand the host in one go, so that the host's memory per call is bounded
//! whatever the guest returns.
//!
//! While wasmtime lifts values out of a guest's memory (a function's results, or the arguments of
//! a host call the guest makes) it counts "hostcall fuel" before it allocates: `size_of::<Val>()`
//! per list element, record field, tuple item and option/variant/result payload, and the byte
//! length of each string and case name. Past the store's budget it stops with an error, having
//! allocated nothing for the rest. A call's budget is set from its endpoint's `max_reply_kib` and
//! its method's result type: a result that fits in `max_reply_kib` of JSON always fits in the
//! budget, one that does not is refused (`ReplyTooLarge`) as soon as its size is read from the
//! guest's memory, before it is lifted.
//!
//! The budget is [`FuelBound`]'s factor (fuel per byte of JSON, computed from the type) times
//! `max_reply_bytes`, plus [`HOST_CALL_ALLOWANCE`] for what the guest passes to host calls (a log
//! message, a WASI write): wasmtime has one budget per store, used afresh by every lift.

use std::mem::size_of;
use wasmtime::component::{Type, Val};

/// What one host call may carry from the guest beyond the result budget (a log message, the
/// bytes of a WASI write), and the slack covering a result's top-level wrappers.
pub const HOST_CALL_ALLOWANCE: usize = 1 << 20;

/// The largest factor a result type may have: a type that would need more host memory than this
/// per byte of its JSON (lists of options of options...) gets `ReplyTooLarge` below
/// `max_reply_kib`, rather than the host paying for it.
pub const MAX_FUEL_PER_JSON_BYTE: u64 = 64;

/// Fixed-point scale of the factors below (1/256 of a fuel unit per JSON byte).
const SCALE: u64 = 256;
/// The fuel wasmtime charges per lifted value slot.
const VAL: u64 = size_of::<Val>() as u64;
/// A map entry (`(Val, Val)`).
const PAIR: u64 = 2 * VAL;

/// The bound of one type: every value `v` of it costs at most `per_byte / SCALE * json(v)` fuel,
/// and its JSON is at least `min_json` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bound {
    per_byte: u64,
    min_json: u64,
}

/// The fuel budget of one method's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuelBound {
    /// Fuel per byte of the result's JSON, rounded up, at most [`MAX_FUEL_PER_JSON_BYTE`].
    pub per_json_byte: u64,
    /// Whether the type needed more than [`MAX_FUEL_PER_JSON_BYTE`].
    pub capped: bool,
    /// The store's hostcall fuel for a call: the result budget plus [`HOST_CALL_ALLOWANCE`].
    pub fuel: usize,
}

impl FuelBound {
    /// The budget of a method returning `result` (none for a function without a result) under a
    /// `max_reply_bytes` limit.
    pub fn new(result: Option<&Type>, max_reply_bytes: usize) -> FuelBound {
        let scaled = result.map_or(0, result_per_byte);
        let needed = scaled.div_ceil(SCALE);
        let per_json_byte = needed.min(MAX_FUEL_PER_JSON_BYTE);
        let max = u64::try_from(max_reply_bytes).unwrap_or(u64::MAX);
        let allowance = u64::try_from(HOST_CALL_ALLOWANCE).unwrap_or(u64::MAX);
        let fuel = per_json_byte.saturating_mul(max).saturating_add(allowance);
        FuelBound {
            per_json_byte,
            capped: needed > MAX_FUEL_PER_JSON_BYTE,
            fuel: usize::try_from(fuel).unwrap_or(usize::MAX),
        }
    }
}

/// The factor of a function's result as the caller sees it: a top-level `result<T, E>` is
/// unwrapped (its `ok` value is the reply, its `err` payload the failure's message), and the
/// payload's own box is covered by the allowance.
fn result_per_byte(ty: &Type) -> u64 {
    match ty {
        Type::Result(r) => {
            let ok = r.ok().map_or(0, |t| bound(&t).per_byte);
            let err = r.err().map_or(0, |t| message_bound(&t));
            ok.max(err)
        }
        other => bound(other).per_byte,
    }
}

/// The factor of an `err` payload measured as the failure's message: an enum or bare case by its
/// name, a case's payload as text, anything else as text.
fn message_bound(ty: &Type) -> u64 {
    match ty {
        Type::Enum(_) => SCALE,
        Type::Variant(v) => v
            .cases()
            .map(|c| c.ty.map_or(SCALE, |t| text_bound(&t)))
            .max()
            .unwrap_or(SCALE),
        other => text_bound(other),
    }
}

/// The factor of a value as message text: a string as it is, anything else as JSON.
fn text_bound(ty: &Type) -> u64 {
    match ty {
        Type::String => SCALE,
        other => bound(other).per_byte,
    }
}

/// `ceil(numerator / denominator)`, saturating; a zero denominator (never: JSON is at least one
/// byte) gives the maximum.
fn ratio(numerator: u64, denominator: u64) -> u64 {
    numerator
        .checked_div(denominator)
        .map_or(u64::MAX, |_| numerator.div_ceil(denominator))
}

/// One element, field or payload of JSON size at least `min` and factor `per_byte`, carried in
/// `overhead` fuel and `framing` JSON bytes (separators, quotes, a key): the factor of the whole.
/// `(overhead + a*j) / (framing + j)` for `j >= min` is largest at `j = min` or as `j` grows.
fn framed(per_byte: u64, min: u64, overhead: u64, framing: u64) -> u64 {
    let at_min = ratio(
        overhead
            .saturating_mul(SCALE)
            .saturating_add(per_byte.saturating_mul(min)),
        framing.saturating_add(min),
    );
    per_byte.max(at_min)
}

fn name_len(name: &str) -> u64 {
    u64::try_from(name.len()).unwrap_or(u64::MAX)
}

/// The bound of a value of `ty` in the JSON fjord writes for it (`convert::JsonOf`).
fn bound(ty: &Type) -> Bound {
    match ty {
        Type::Bool => Bound {
            per_byte: 0,
            min_json: 4,
        },
        Type::Char => Bound {
            per_byte: 0,
            min_json: 3,
        },
        Type::String => Bound {
            per_byte: SCALE,
            min_json: 2,
        },
        Type::Enum(e) => Bound {
            per_byte: SCALE,
            min_json: e.names().map(name_len).min().unwrap_or(0).saturating_add(2),
        },
        Type::Flags(_) => Bound {
            per_byte: SCALE,
            min_json: 2,
        },
        // `[a,b]`: per element one value slot, and at least one byte of separator.
        Type::List(l) => {
            let item = bound(&l.ty());
            Bound {
                per_byte: framed(item.per_byte, item.min_json, VAL, 1),
                min_json: 2,
            }
        }
        Type::FixedLengthList(l) => {
            let item = bound(&l.ty());
            let n = u64::from(l.len());
            Bound {
                per_byte: framed(item.per_byte, item.min_json, VAL, 1),
                min_json: item.min_json.saturating_add(1).saturating_mul(n).max(2),
            }
        }
        Type::Tuple(t) => {
            let (mut per_byte, mut min_json) = (0, 1u64);
            for item in t.types() {
                let b = bound(&item);
                per_byte = per_byte.max(framed(b.per_byte, b.min_json, VAL, 1));
                min_json = min_json.saturating_add(b.min_json).saturating_add(1);
            }
            Bound { per_byte, min_json }
        }
        // `{"name":v,...}`: per field one value slot and its name (fuel), and the name, its
        // quotes, the colon and a separator (JSON).
        Type::Record(r) => {
            let (mut per_byte, mut min_json) = (0, 1u64);
            for field in r.fields() {
                let b = bound(&field.ty);
                let len = name_len(field.name);
                let overhead = VAL.saturating_add(len);
                per_byte = per_byte.max(framed(b.per_byte, b.min_json, overhead, len + 4));
                min_json = min_json
                    .saturating_add(len)
                    .saturating_add(4)
                    .saturating_add(b.min_json);
            }
            Bound { per_byte, min_json }
        }
        // `null`, or the payload itself in a box of one value slot.
        Type::Option(o) => {
            let inner = bound(&o.ty());
            Bound {
                per_byte: framed(inner.per_byte, inner.min_json, VAL, 0),
                min_json: inner.min_json.min(4),
            }
        }
        // `{"ok":v}` / `{"err":v}`, or `{"ok":null}` without a payload type.
        Type::Result(r) => {
            let case = |t: Option<Type>, key: u64| match t {
                Some(t) => {
                    let b = bound(&t);
                    let frame = key.saturating_add(5);
                    (
                        framed(b.per_byte, b.min_json, VAL, frame),
                        frame.saturating_add(b.min_json),
                    )
                }
                None => (0, key.saturating_add(9)),
            };
            let (ok, ok_min) = case(r.ok(), 2);
            let (err, err_min) = case(r.err(), 3);
            Bound {
                per_byte: ok.max(err),
                min_json: ok_min.min(err_min),
            }
        }
        // `"case"`, or `{"case":v}` with the payload in a box.
        Type::Variant(v) => {
            let (mut per_byte, mut min_json) = (SCALE, u64::MAX);
            for case in v.cases() {
                let len = name_len(case.name);
                match case.ty {
                    Some(t) => {
                        let b = bound(&t);
                        let overhead = VAL.saturating_add(len);
                        per_byte = per_byte.max(framed(b.per_byte, b.min_json, overhead, len + 5));
                        min_json = min_json.min(len.saturating_add(5).saturating_add(b.min_json));
                    }
                    None => min_json = min_json.min(len.saturating_add(2)),
                }
            }
            Bound { per_byte, min_json }
        }
        // `{"k":v,...}`: per entry a pair of value slots; a key is at least its own JSON.
        Type::Map(m) => {
            let (k, v) = (bound(&m.key()), bound(&m.value()));
            let min = k.min_json.saturating_add(v.min_json);
            let items = k.per_byte.max(v.per_byte);
            Bound {
                per_byte: framed(items, min, PAIR, 2),
                min_json: 2,
            }
        }
        // Numbers: no fuel; `0` is the shortest.
        _ => Bound {
            per_byte: 0,
            min_json: 1,
        },
    }
}

/// The fuel wasmtime charges to lift `val` (the accounting of wasmtime 48's `Val` lifting), for
/// the checks of the bound.
#[doc(hidden)]
pub fn fuel_of(val: &Val) -> u64 {
    let sum = |items: &[Val]| {
        items
            .iter()
            .fold(slots(items.len(), VAL), |f, v| f.saturating_add(fuel_of(v)))
    };
    let boxed = |v: &Option<Box<Val>>| v.as_deref().map_or(0, |v| VAL.saturating_add(fuel_of(v)));
    match val {
        Val::String(s) => name_len(s),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => sum(items),
        Val::Record(fields) => fields.iter().fold(slots(fields.len(), VAL), |f, (n, v)| {
            f.saturating_add(name_len(n)).saturating_add(fuel_of(v))
        }),
        Val::Variant(case, payload) => name_len(case).saturating_add(boxed(payload)),
        Val::Enum(case) => name_len(case),
        Val::Option(v) | Val::Result(Ok(v)) | Val::Result(Err(v)) => boxed(v),
        Val::Flags(names) => names.iter().fold(0, |f, n| f.saturating_add(name_len(n))),
        Val::Map(entries) => entries
            .iter()
            .fold(slots(entries.len(), PAIR), |f, (k, v)| {
                f.saturating_add(fuel_of(k)).saturating_add(fuel_of(v))
            }),
        _ => 0,
    }
}

fn slots(n: usize, each: u64) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX).saturating_mul(each)
}

/// Checks the bound on one value of `ty` whose JSON text is `json_len` bytes: what wasmtime
/// charges to lift it is at most the type's factor times its JSON size.
#[doc(hidden)]
pub fn check_bound(ty: &Type, val: &Val, json_len: usize) -> Result<(), String> {
    let fuel = fuel_of(val);
    let per_byte = bound(ty).per_byte;
    let allowed = per_byte.saturating_mul(u64::try_from(json_len).unwrap_or(u64::MAX));
    if fuel.saturating_mul(SCALE) > allowed {
        return Err(format!(
            "{val:?}: lifting it costs {fuel} fuel, over {}/{SCALE} per byte of its {json_len} bytes of JSON",
            per_byte
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_slot_is_what_the_factors_assume() {
        // wasmtime 48's Val; the figures in the README follow from it.
        assert_eq!(VAL, 40);
    }

    #[test]
    fn ratio_rounds_up_and_never_divides_by_zero() {
        assert_eq!(ratio(10, 4), 3);
        assert_eq!(ratio(8, 4), 2);
        assert_eq!(ratio(1, 0), u64::MAX);
    }

    #[test]
    fn no_result_costs_only_the_allowance() {
        let b = FuelBound::new(None, 1 << 20);
        assert_eq!((b.per_json_byte, b.capped), (0, false));
        assert_eq!(b.fuel, HOST_CALL_ALLOWANCE);
    }
}
