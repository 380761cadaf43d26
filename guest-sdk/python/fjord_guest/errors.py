"""Exceptions exactly as an oslo.messaging caller sees them (``fjord:endpoint/types``)."""

from wit_world.imports import types as _types


class RemoteError(Exception):
    """Raise ``class_`` of ``module`` in the caller, with ``message``.

    A ``builtins`` class (``ValueError``, ``KeyError``...) is re-raised as itself by oslo's Python
    client; any other arrives as ``oslo_messaging.RemoteError`` with ``exc_type`` set to it (or as the
    real class, when the caller lists the module in ``allowed_remote_exmods``). fjord's Rust client
    gets ``RpcError::Remote`` with this class and module. Raised from a method of an
    :func:`~fjord_guest.endpoint` class it reaches the caller whatever the WIT result of the
    function is: as the ``err`` of a ``result<T, remote-error>``, else through
    ``fjord:endpoint/failure``. ``module`` and ``class_`` must be non-empty, at most 255 bytes,
    without whitespace.

    Example::

        from fjord_guest import RemoteError

        def select_destinations(self, ctx, spec):
            raise RemoteError("nova.exception", "NoValidHost", "no host has 4 GiB free")

        RemoteError.builtin("ValueError", "size must be positive")   # a real ValueError in Python
    """

    def __init__(self, module: str, class_: str, message: str = ""):
        super().__init__(module, class_, message)
        self.module = module
        self.class_ = class_
        self.message = message

    @classmethod
    def builtin(cls, class_: str, message: str = "") -> "RemoteError":
        """A Python built-in exception class, re-raised as itself by oslo's client.

        Example: ``raise RemoteError.builtin("KeyError", "no such flavor")``
        """
        return cls("builtins", class_, message)

    @classmethod
    def from_exception(cls, error: BaseException) -> "RemoteError":
        """What a Python oslo server sends for ``error``: its class's module and name, and ``str``.

        Example: ``RemoteError.from_exception(ZeroDivisionError("division by zero"))`` is
        ``RemoteError("builtins", "ZeroDivisionError", "division by zero")``.
        """
        if isinstance(error, RemoteError):
            return error
        kind = type(error)
        return cls(kind.__module__, kind.__name__, str(error))

    def to_wit(self) -> "_types.RemoteError":
        """The WIT record ``remote-error``, for a function returning ``result<T, remote-error>``
        (or a variant case carrying one).

        Example: ``raise Err(RemoteError.builtin("ValueError", "bad size").to_wit())``
        """
        return _types.RemoteError(module=self.module, class_=self.class_, message=self.message)

    def __str__(self) -> str:
        return f"{self.module}.{self.class_}: {self.message}"
