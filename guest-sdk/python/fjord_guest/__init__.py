"""fjord_guest: write fjord endpoints in Python.

A fjord endpoint is a WebAssembly component that exports one WIT interface; fjord-host serves each
exported function as an oslo.messaging RPC method. This package, over the bindings componentize-py
generates for a world that includes ``fjord:endpoint/imports``, lets the endpoint read like an
oslo.messaging endpoint class:

- :func:`endpoint`: the class decorator that makes ``def add(self, ctx, a, b)`` the WIT function
  ``add: func(a: s64, b: s64) -> s64`` and turns an uncaught exception into the caller's exception;
- :class:`Context`: the oslo request context (``ctx.request_id``, ``ctx.user``, ``ctx["roles"]``);
- :class:`LogHandler`: Python's ``logging`` into the host's log (installed on import);
- :class:`RemoteError`: raise exactly the exception class an oslo caller expects;
- :class:`Err`: return the ``err`` case of a WIT ``result`` (componentize-py's own class).

Example (``endpoints/calculator-py/app.py``; build with ``scripts/build-python calculator-py``)::

    import logging
    from fjord_guest import Err, endpoint
    from wit_world.exports.calculator import CalcError_DivisionByZero

    LOG = logging.getLogger(__name__)

    @endpoint
    class Calculator:
        def add(self, ctx, a, b):
            LOG.info("add for %s", ctx.user)
            return a + b

        def divide(self, ctx, dividend, divisor, rounding=None):
            if divisor == 0:
                raise Err(CalcError_DivisionByZero())   # the caller gets DivisionByZero
            return dividend // divisor

The functions here call the host's imports, so they work only inside a call being served (in the
component), not at import time (componentize-py runs the module's top level while building).
"""

from componentize_py_types import Err, Ok

from .context import Context
from .errors import RemoteError
from .adapter import endpoint
from .logs import LogHandler, install_logging

__all__ = [
    "Context",
    "Err",
    "LogHandler",
    "Ok",
    "RemoteError",
    "endpoint",
    "install_logging",
]

# Python's logging reaches the host's log without any set-up by the author, as `print` does.
install_logging()
