"""The stateful example in Python: ``wit/counter/counter.wit`` (fjord:counter@1.0.0), named
counters kept in the ``default`` key-value bucket, the same answers as the Rust
``endpoints/counter`` (and the same stored values: the two can share a bucket).

Grant it the bucket: ``endpoints = [{ path = "counter-py.wasm", keyvalue = ["default"] }]``.
Build: ``scripts/build-python counter-py``.
"""

from componentize_py_types import Err

from fjord_guest import endpoint, keyvalue

BUCKET = "default"


@endpoint
class Counter:
    """Counters that outlive calls, host restarts and (with Redis) hosts."""

    def increment(self, ctx, name, by):
        try:
            return keyvalue.open(BUCKET).increment(name, by)
        except keyvalue.KeyvalueError as e:
            raise Err(str(e))

    def get(self, ctx, name):
        try:
            return keyvalue.open(BUCKET).get_int(name) or 0
        except keyvalue.KeyvalueError as e:
            raise Err(str(e))
