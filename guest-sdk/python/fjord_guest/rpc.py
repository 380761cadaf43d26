"""Calls and casts to other services (``fjord:endpoint/rpc``), written as with oslo.messaging.

An endpoint is a client of other services through the host's own connection (it has no sockets),
and only of the targets its endpoint's ``calls`` grants in the host's config. Arguments are
keyword arguments; results come back decoded from JSON.

Example (``endpoints/scheduler-py/app.py``)::

    from fjord_guest.rpc import Client, Target

    compute = Client(Target(topic="compute"))
    free = compute.prepare(server="node1", version="5.0", timeout=2).call("free_resources")
    compute.prepare(server="node1", version="5.0").cast(
        "build_and_run_instance", instance={"name": "vm1", "ram_mb": 512})

A failure raises a :class:`CallError`. Each is a :class:`~fjord_guest.RemoteError`, so one left
uncaught reaches this endpoint's caller as a Python server would send it: the callee's own
exception passes on unchanged (``nova.exception.NoValidHost`` three services away), a timeout as
``oslo_messaging.exceptions.MessagingTimeout``.
"""

import json
from dataclasses import dataclass, replace
from typing import Any, Optional

from componentize_py_types import Err
from wit_world.imports import rpc as _rpc

from .errors import RemoteError


class CallError(RemoteError):
    """An outgoing call or cast failed; ``kind`` is the ``call-error`` case
    (``timeout``, ``remote``, ``not-allowed``, ``unavailable``, ``bad-arguments``).

    Example::

        try:
            compute.call("free_resources")
        except CallError as e:
            LOG.warning("compute did not answer: %s (%s)", e, e.kind)
    """

    kind = "call-error"

    def __str__(self) -> str:
        return self.message


class MessagingTimeout(CallError):
    """No reply within the timeout (or the time left in the call being served).

    Example: ``except MessagingTimeout: LOG.warning("node1 is slow")``
    """

    kind = "timeout"

    def __init__(self, message: str):
        super().__init__("oslo_messaging.exceptions", "MessagingTimeout", message)


class RemoteCallError(CallError):
    """The callee raised: ``module``, ``class_`` and ``message`` are its exception's.

    Example: ``except RemoteCallError as e: if e.class_ == "NoValidHost": ...``
    """

    kind = "remote"


class CallNotAllowed(CallError):
    """The endpoint's ``calls`` does not grant the target, or the chain is too deep.

    Example: ``except CallNotAllowed as e: LOG.error("%s", e)``
    """

    kind = "not-allowed"

    def __init__(self, message: str):
        super().__init__("fjord", "CallNotAllowed", message)


class CallUnavailable(CallError):
    """The host could not send it (no connection) or the result was too large.

    Example: ``except CallUnavailable: return cached``
    """

    kind = "unavailable"

    def __init__(self, message: str):
        super().__init__("fjord", "CallUnavailable", message)


class BadCallArguments(CallError):
    """The target, arguments or options cannot be sent (a bad name, a non-JSON value).

    Example: ``except BadCallArguments as e: raise RemoteError.builtin("ValueError", str(e))``
    """

    kind = "bad-arguments"

    def __init__(self, message: str):
        super().__init__("fjord", "BadCallArguments", message)


def _raised(error: Any) -> CallError:
    """The exception for a ``call-error`` case the host returned."""
    if isinstance(error, _rpc.CallError_Remote):
        failure = error.value
        return RemoteCallError(failure.module, failure.class_, failure.message)
    kinds = {
        _rpc.CallError_Timeout: MessagingTimeout,
        _rpc.CallError_NotAllowed: CallNotAllowed,
        _rpc.CallError_Unavailable: CallUnavailable,
        _rpc.CallError_BadArguments: BadCallArguments,
    }
    return kinds.get(type(error), CallUnavailable)(str(getattr(error, "value", error)))


@dataclass(frozen=True)
class Target:
    """oslo's ``Target``: where a call goes.

    Example: ``Target(topic="compute", server="node1", version="5.0")``
    """

    topic: str
    server: Optional[str] = None
    exchange: Optional[str] = None
    namespace: Optional[str] = None
    version: Optional[str] = None
    fanout: bool = False

    def _wit(self) -> "_rpc.Target":
        return _rpc.Target(topic=self.topic, server=self.server, exchange=self.exchange,
                           namespace=self.namespace, version=self.version, fanout=self.fanout)


_UNSET = object()


class Client:
    """oslo's ``RPCClient`` inside an endpoint: ``call`` waits for the result, ``cast`` does not.

    ``timeout`` is in seconds (default: the time left in the call being served, which also caps
    any longer one); ``context`` is a dict sent as the request context (default: the context of
    the call being served, passed on, with oslo's ``global_request_id``).

    Example::

        client = Client(Target(topic="compute"), timeout=5)
        client.prepare(server="node2").call("instances")
    """

    def __init__(self, target: Target, timeout: Optional[float] = None,
                 context: Optional[dict] = None):
        self.target = target
        self.timeout = timeout
        self.context = context

    def prepare(self, server=_UNSET, version=_UNSET, namespace=_UNSET, exchange=_UNSET,
                fanout=_UNSET, timeout=_UNSET, context=_UNSET) -> "Client":
        """A client with some target fields, the timeout or the context changed, as oslo's
        ``prepare``.

        Example: ``client.prepare(server="node1", version="5.0", timeout=2).call("free_resources")``
        """
        changes = {k: v for k, v in dict(server=server, version=version, namespace=namespace,
                                         exchange=exchange, fanout=fanout).items() if v is not _UNSET}
        return Client(replace(self.target, **changes),
                      self.timeout if timeout is _UNSET else timeout,
                      self.context if context is _UNSET else context)

    def _options(self) -> "_rpc.CallOptions":
        context = None if self.context is None else json.dumps(self.context)
        timeout = None if self.timeout is None else float(self.timeout)
        return _rpc.CallOptions(timeout=timeout, context=context)

    def call(self, method: str, **kwargs) -> Any:
        """Calls ``method`` with ``kwargs`` and returns its result; raises a :class:`CallError`.

        Example: ``free = client.call("free_resources")``
        """
        args = _encode(kwargs)
        try:
            result = _rpc.call(self.target._wit(), method, args, self._options())
        except Err as e:
            raise _raised(e.value) from None
        return json.loads(result)

    def cast(self, method: str, **kwargs) -> None:
        """Sends ``method`` with ``kwargs`` without waiting (a fanout cast when the target's
        ``fanout``); raises a :class:`CallError` if it cannot be sent.

        Example: ``client.prepare(fanout=True).cast("refresh")``
        """
        args = _encode(kwargs)
        try:
            _rpc.cast(self.target._wit(), method, args, self._options())
        except Err as e:
            raise _raised(e.value) from None


def _encode(kwargs: dict) -> str:
    try:
        return json.dumps(kwargs)
    except (TypeError, ValueError) as e:
        raise BadCallArguments(f"the arguments are not JSON: {e}") from None
