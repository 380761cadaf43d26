"""The oslo.messaging request context of the call being served (``fjord:endpoint/context``)."""

import json
from typing import Any, Iterator, List, Optional

from wit_world.imports import context as _context

_MISSING = object()


class Context:
    """The caller's ``ctxt`` dict, read from the host on demand.

    Every call runs in a fresh instance, so a context never shows another call's keys. Values are
    decoded from the JSON the caller sent (a string, a list, a number, ``None``...).

    Example, for ``client.call({"user_id": "alice", "project_id": "p1", "roles": ["admin"]}, ...)``::

        def whoami(self, ctx):
            ctx.user                    # "alice"  (user_id, else user)
            ctx.project                 # "p1"     (project_id, else project, else tenant)
            ctx.request_id              # None: the caller sent none
            ctx["roles"]                # ["admin"]
            ctx.get("region", "local")  # "local": absent
            "roles" in ctx              # True
            ctx.to_dict()               # every key the caller sent
    """

    __slots__ = ()

    @property
    def request_id(self) -> Optional[str]:
        """The context's ``request_id`` (oslo services send ``req-<uuid>``), or ``None``.

        Example: ``LOG.info("serving %s", ctx.request_id)``
        """
        return _context.request_id()

    @property
    def user(self) -> Optional[str]:
        """The caller's user: ``user_id``, else ``user``; ``None`` when neither is a string.

        Example: ``owner = ctx.user or "anonymous"``
        """
        return _context.user()

    @property
    def project(self) -> Optional[str]:
        """The caller's project: ``project_id``, else ``project``, else ``tenant``.

        Example: ``scope = ctx.project or "anonymous"``
        """
        return _context.project()

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, decoded from JSON, or ``default`` when the caller did not send it.

        Example: ``if ctx.get("is_admin", False): ...``
        """
        text = _context.get(key)
        if text is None:
            return default
        return json.loads(text)

    def __getitem__(self, key: str) -> Any:
        """``ctx["roles"]``: the value of ``key``; ``KeyError`` when the caller did not send it."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        """``"roles" in ctx``."""
        return isinstance(key, str) and _context.get(key) is not None

    def keys(self) -> List[str]:
        """Every key the caller sent, in no particular order.

        Example: ``for key in ctx.keys(): LOG.debug("%s=%r", key, ctx[key])``
        """
        return list(_context.keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def to_dict(self) -> dict:
        """The whole context as a dict, as oslo's ``ctxt`` (one host call per key).

        Example: ``LOG.debug("context %s", ctx.to_dict())``
        """
        return {key: self[key] for key in self.keys()}

    def __repr__(self) -> str:
        return f"Context(request_id={self.request_id!r}, user={self.user!r}, project={self.project!r})"
