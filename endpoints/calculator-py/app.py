"""The calculator endpoint in Python: ``wit/calculator/calculator.wit`` (fjord:calculator@1.0.0),
the same functions and answers as the Rust ``endpoints/calculator``.

``client.call({}, 'add', a=2, b=3)`` from a Python oslo.messaging client returns 5.
Build: ``scripts/build-python calculator-py`` (gives ``target/wasm32-wasip2/release/calculator-py.wasm``).
"""

import logging

from fjord_guest import Err, endpoint
from wit_world.exports.calculator import (
    CalcError_DivisionByZero,
    CalcError_Overflow,
    Point,
    Rounding,
)

LOG = logging.getLogger(__name__)

S64_MIN = -(1 << 63)
S64_MAX = (1 << 63) - 1


@endpoint
class Calculator:
    """The calculator endpoint (componentize-py serves the class named after the interface)."""

    def add(self, ctx, a, b):
        """``a + b``, saturating at the bounds of s64 (as the Rust calculator)."""
        return max(S64_MIN, min(S64_MAX, a + b))

    def divide(self, ctx, dividend, divisor, rounding=None):
        """``dividend / divisor`` rounded as asked: down (towards negative infinity) by default,
        up, or nearest (halves away from zero)."""
        if divisor == 0:
            raise Err(CalcError_DivisionByZero())
        floor, rem = divmod(dividend, divisor)  # Python's // is already floor division
        quotient = floor
        if rounding == Rounding.UP and rem:
            quotient = floor + 1
        elif rounding == Rounding.NEAREST:
            twice, ad = 2 * abs(rem), abs(divisor)
            if twice > ad or (twice == ad and floor + 1 > 0):
                quotient = floor + 1
        if not S64_MIN <= quotient <= S64_MAX:
            raise Err(CalcError_Overflow())
        return quotient

    def sum(self, ctx, values):
        """The sum of ``values``; overflow (of any partial sum, as the Rust one) is an error."""
        total = 0
        for value in values:
            total += value
            if not S64_MIN <= total <= S64_MAX:
                raise Err(CalcError_Overflow())
        return total

    def centroid(self, ctx, points):
        """The mean of ``points``, ``None`` when there are none."""
        if not points:
            return None
        sx = sy = 0.0
        for p in points:
            sx += p.x
            sy += p.y
        n = float(len(points))
        return Point(x=sx / n, y=sy / n)

    def whoami(self, ctx):
        """``user@project`` from the request context (``anonymous`` for a missing part); logs the
        request id."""
        LOG.info("whoami for request %s", ctx.request_id or "(none)")
        return f"{ctx.user or 'anonymous'}@{ctx.project or 'anonymous'}"
