//! A second build of the calculator's interface that answers differently, for the hot-deploy
//! tests: `add(a, b)` is `a + b + 1000`, so a caller can tell which version answered.

wit_bindgen::generate!({
    world: "calculator-endpoint",
    path: "../../../wit/calculator",
});

use exports::fjord::calculator::calculator::{CalcError, Guest, Point, Rounding};

/// What `add` adds on top of `a + b`.
const MARK: i64 = 1000;

struct Next;

impl Guest for Next {
    fn add(a: i64, b: i64) -> i64 {
        a.saturating_add(b).saturating_add(MARK)
    }

    fn divide(dividend: i64, divisor: i64, _rounding: Option<Rounding>) -> Result<i64, CalcError> {
        dividend
            .checked_div_euclid(divisor)
            .ok_or(CalcError::DivisionByZero)
    }

    fn sum(values: Vec<i64>) -> Result<i64, CalcError> {
        values
            .iter()
            .try_fold(0i64, |acc, v| acc.checked_add(*v))
            .ok_or(CalcError::Overflow)
    }

    fn centroid(_points: Vec<Point>) -> Option<Point> {
        None
    }

    fn whoami() -> String {
        "next".to_string()
    }
}

export!(Next);
