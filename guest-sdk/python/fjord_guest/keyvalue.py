"""State that outlives a call: buckets of ``wasi:keyvalue@0.2.0-draft`` (as in Rust's
``fjord_guest::keyvalue``, the same interface Spin and wasmCloud components use).

Each call runs in a fresh instance, so anything an endpoint remembers between calls goes into a
bucket the host's config grants it (``keyvalue = ["default"]``); opening another raises
:class:`AccessDenied`. Writes are durable when they return. ``increment`` is atomic (also across
hosts sharing Redis); a read followed by a write is not. A counter is stored as its decimal text,
so Rust and Python endpoints read each other's.

The endpoint's world must include ``wasi:keyvalue/imports@0.2.0-draft`` beside
``fjord:endpoint/imports`` (``endpoints/counter-py/wit/world.wit``).

Example (``endpoints/counter-py/app.py``)::

    from fjord_guest import keyvalue

    def increment(self, ctx, name, by):
        return keyvalue.open("default").increment(name, by)
"""

from typing import Iterable, List, Optional, Tuple, Union

from componentize_py_types import Err
from wit_world.imports import atomics as _atomics
from wit_world.imports import batch as _batch
from wit_world.imports import store as _store


class KeyvalueError(Exception):
    """A key-value operation failed (the store's error: a limit, Redis unreachable...).

    Example: ``except KeyvalueError as e: LOG.warning("state unavailable: %s", e)``
    """


class AccessDenied(KeyvalueError):
    """The endpoint is not granted this bucket (``keyvalue = [...]`` in the host's config).

    Example: ``except AccessDenied as e: LOG.error("no grant for %s", e.bucket)``
    """

    def __init__(self, bucket: str):
        super().__init__(f"access to bucket {bucket!r} is denied: grant it in the host's config "
                         f"(keyvalue = [\"{bucket}\"])")
        self.bucket = bucket


class NoSuchStore(KeyvalueError):
    """The host has no store for the bucket.

    Example: ``except NoSuchStore: return 0``
    """


def _raised(error, bucket: str) -> KeyvalueError:
    if isinstance(error, _store.Error_AccessDenied):
        return AccessDenied(bucket)
    if isinstance(error, _store.Error_NoSuchStore):
        return NoSuchStore(f"no store for bucket {bucket!r}")
    return KeyvalueError(str(getattr(error, "value", error)))


def open(name: str) -> "Bucket":  # noqa: A001 (the WIT function's name, as in Rust's SDK)
    """Opens the bucket ``name``; raises :class:`AccessDenied` if it is not granted.

    Example: ``bucket = keyvalue.open("default")``
    """
    try:
        return Bucket(name, _store.open(name))
    except Err as e:
        raise _raised(e.value, name) from None


Value = Union[bytes, str]


class Bucket:
    """One granted bucket. Values are bytes (``str`` is stored as UTF-8).

    Example::

        bucket = keyvalue.open("default")
        bucket.set("greeting", "hello")
        bucket.get_string("greeting")   # "hello"
        bucket.increment("visits")      # 1, then 2...
    """

    def __init__(self, name: str, handle):
        self.name = name
        self._handle = handle

    def _call(self, function, *args):
        try:
            return function(*args)
        except Err as e:
            raise _raised(e.value, self.name) from None

    def get(self, key: str) -> Optional[bytes]:
        """The value of ``key``, or ``None``.

        Example: ``raw = bucket.get("blob")``
        """
        return self._call(self._handle.get, key)

    def get_string(self, key: str) -> Optional[str]:
        """The value of ``key`` as UTF-8 text, or ``None``.

        Example: ``bucket.get_string("greeting")``
        """
        value = self.get(key)
        return None if value is None else bytes(value).decode("utf-8")

    def get_int(self, key: str) -> Optional[int]:
        """A counter (what ``increment`` keeps, as decimal text), or ``None``.

        Example: ``bucket.get_int("visits") or 0``
        """
        text = self.get_string(key)
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            raise KeyvalueError(f"the value of {key!r} in bucket {self.name!r} is not a counter") \
                from None

    def set(self, key: str, value: Value) -> None:
        """Sets ``key`` to ``value``.

        Example: ``bucket.set("greeting", "hello")``
        """
        self._call(self._handle.set, key, _bytes(value))

    def delete(self, key: str) -> None:
        """Deletes ``key`` (nothing happens if it is absent).

        Example: ``bucket.delete("greeting")``
        """
        self._call(self._handle.delete, key)

    def exists(self, key: str) -> bool:
        """Whether ``key`` has a value.

        Example: ``if not bucket.exists("seeded"): ...``
        """
        return self._call(self._handle.exists, key)

    def increment(self, key: str, delta: int = 1) -> int:
        """Adds ``delta`` (0 or more) to the counter ``key`` atomically; its new value.

        Example: ``bucket.increment("visits")``
        """
        return self._call(_atomics.increment, self._handle, key, delta)

    def keys(self) -> List[str]:
        """Every key of the bucket, page after page.

        Example: ``for key in bucket.keys(): ...``
        """
        keys: List[str] = []
        cursor = None
        while True:
            page = self._call(self._handle.list_keys, cursor)
            keys.extend(page.keys)
            if page.cursor is None:
                return keys
            cursor = page.cursor

    def get_many(self, keys: Iterable[str]) -> List[Optional[bytes]]:
        """The values of ``keys``, in order (``None`` for an absent one).

        Example: ``a, b = bucket.get_many(["a", "b"])``
        """
        found = self._call(_batch.get_many, self._handle, list(keys))
        return [None if pair is None else pair[1] for pair in found]

    def set_many(self, pairs: Iterable[Tuple[str, Value]]) -> None:
        """Sets every ``(key, value)``.

        Example: ``bucket.set_many([("a", "1"), ("b", "2")])``
        """
        self._call(_batch.set_many, self._handle, [(k, _bytes(v)) for k, v in pairs])

    def delete_many(self, keys: Iterable[str]) -> None:
        """Deletes every key of ``keys``.

        Example: ``bucket.delete_many(["a", "b"])``
        """
        self._call(_batch.delete_many, self._handle, list(keys))


def _bytes(value: Value) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)
