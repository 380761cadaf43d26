//! The example endpoint: `wit/calculator/calculator.wit` served as oslo.messaging RPC methods.
//!
//! `client.call({}, 'add', a=2, b=3)` from a Python oslo.messaging client returns 5.
//! Build: `cargo build --release --target wasm32-wasip2 -p calculator`
//! (gives `target/wasm32-wasip2/release/calculator.wasm`).

wit_bindgen::generate!({
    world: "calculator-endpoint",
    path: "../../wit/calculator",
});

use exports::fjord::calculator::calculator::{CalcError, Guest, Point, Rounding};

/// The calculator endpoint.
struct Calculator;

impl Guest for Calculator {
    /// `a + b`, saturating at the bounds of s64.
    fn add(a: i64, b: i64) -> i64 {
        a.saturating_add(b)
    }

    /// `dividend / divisor` rounded as asked (down, i.e. towards negative infinity, by default;
    /// nearest rounds halves away from zero).
    fn divide(dividend: i64, divisor: i64, rounding: Option<Rounding>) -> Result<i64, CalcError> {
        if divisor == 0 {
            return Err(CalcError::DivisionByZero);
        }
        let (n, d) = (i128::from(dividend), i128::from(divisor));
        let floor = n.div_euclid(d) - if d < 0 && n.rem_euclid(d) != 0 { 1 } else { 0 };
        let exact = n % d == 0;
        let q = match rounding.unwrap_or(Rounding::Down) {
            Rounding::Down => floor,
            Rounding::Up => {
                if exact {
                    floor
                } else {
                    floor + 1
                }
            }
            Rounding::Nearest => {
                // Compare twice the remainder (non-negative, in units of |d|) with |d|.
                let rem = n - floor * d; // has the sign of d, |rem| < |d|
                let twice = 2 * rem.abs();
                let ad = d.abs();
                if twice < ad {
                    floor
                } else if twice > ad {
                    floor + 1
                } else if floor + 1 > 0 {
                    // exactly halfway: away from zero
                    floor + 1
                } else {
                    floor
                }
            }
        };
        i64::try_from(q).map_err(|_| CalcError::Overflow)
    }

    /// The sum of `values`; overflow is an error.
    fn sum(values: Vec<i64>) -> Result<i64, CalcError> {
        values
            .iter()
            .try_fold(0i64, |acc, v| acc.checked_add(*v))
            .ok_or(CalcError::Overflow)
    }

    /// The mean of `points`, none when there are none.
    fn centroid(points: Vec<Point>) -> Option<Point> {
        if points.is_empty() {
            return None;
        }
        let n = points.len() as f64;
        let (sx, sy) = points
            .iter()
            .fold((0.0, 0.0), |(sx, sy), p| (sx + p.x, sy + p.y));
        Some(Point {
            x: sx / n,
            y: sy / n,
        })
    }

    /// `user@project` from the request context (`anonymous` for a missing part); logs the request id.
    fn whoami() -> String {
        use fjord_guest::context;
        fjord_guest::info!(
            "whoami for request {}",
            context::request_id().unwrap_or_else(|| "(none)".to_string())
        );
        let user = context::user().unwrap_or_else(|| "anonymous".to_string());
        let project = context::project().unwrap_or_else(|| "anonymous".to_string());
        format!("{user}@{project}")
    }
}

export!(Calculator);
