"""The ``@endpoint`` class decorator: oslo-shaped methods served as WIT functions."""

import functools
import inspect
import traceback

from componentize_py_types import Err
from wit_world.imports import failure as _failure

from .context import Context
from .errors import RemoteError

# Names oslo endpoints give the request context parameter.
_CONTEXT_NAMES = ("ctx", "ctxt", "context")
# How componentize-py documents a function whose WIT result is `result<T, remote-error>`.
_REMOTE_ERROR_RESULT = "Err(wit_world.imports.types.RemoteError)"


def endpoint(cls):
    """Serve the public methods of ``cls`` as the functions of its exported WIT interface.

    The class is the one componentize-py looks for (the interface's name in CamelCase:
    ``Calculator`` for ``fjord:calculator/calculator``). Each public method may take the request
    context first, as an oslo endpoint does (a parameter named ``ctx``, ``ctxt`` or ``context``
    gets a :class:`Context`); the other parameters are the WIT function's, in order. Then:

    - returning a value answers the call; ``raise Err(value)`` is the ``err`` of a WIT ``result``
      (a variant case becomes its class, ``division-by-zero`` is ``DivisionByZero``);
    - ``raise RemoteError(module, class_, message)`` raises exactly that class in the caller;
    - any other exception reaches the caller as a Python server would send it: its class, its
      module (``builtins`` for ``ZeroDivisionError``, so oslo's client raises the real one) and
      ``str(e)``, while the traceback goes to the host's log tagged with the request id. (The
      adapter reports it through ``fjord:endpoint/failure``, then lets it end the call.)

    Example::

        @endpoint
        class Calculator:
            def add(self, ctx, a, b):
                return a + b

            def whoami(self, ctx):
                return f"{ctx.user}@{ctx.project}"
    """
    protocol = _protocol_of(cls)
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        returns_remote_error = _returns_remote_error(protocol, name)
        setattr(cls, name, _adapt(member, _takes_context(member), returns_remote_error))
    return cls


def _protocol_of(cls):
    """The generated protocol class of the exported interface ``cls`` implements, if any."""
    try:
        import wit_world.exports as exports
    except ImportError:
        return None
    return getattr(exports, cls.__name__, None)


def _returns_remote_error(protocol, name: str) -> bool:
    doc = getattr(getattr(protocol, name, None), "__doc__", None) or ""
    return _REMOTE_ERROR_RESULT in doc


def _takes_context(function) -> bool:
    params = list(inspect.signature(function).parameters)
    return len(params) >= 2 and params[1] in _CONTEXT_NAMES


def _adapt(function, takes_context: bool, returns_remote_error: bool):
    @functools.wraps(function)
    def method(self, *args):
        try:
            if takes_context:
                return function(self, Context(), *args)
            return function(self, *args)
        except Err:
            raise  # the function's own `err`: componentize-py returns it
        except RemoteError as error:
            if returns_remote_error:
                raise Err(error.to_wit()) from None
            _report(error, "")
            raise
        except BaseException as error:
            _report(RemoteError.from_exception(error), _traceback(error))
            raise

    return method


def _traceback(error: BaseException) -> str:
    """The traceback of ``error`` from the endpoint's method down (this adapter's frame left out)."""
    tb = error.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


def _report(error: RemoteError, trace: str) -> None:
    """Tell the host what the call is failing with, before the exception traps the guest."""
    try:
        _failure.raise_(error.to_wit(), trace)
    except BaseException:  # noqa: BLE001 - the original exception matters more than the report
        pass
