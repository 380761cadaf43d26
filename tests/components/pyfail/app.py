"""Test endpoint of the Python guest SDK: uncaught exceptions, RemoteError, context, logging."""

import json
import logging

from fjord_guest import RemoteError, endpoint

LOG = logging.getLogger("pyfail")


class QuotaExceeded(Exception):
    """An exception of the endpoint's own module: the caller sees class QuotaExceeded of `app`."""


@endpoint
class Pyfail:
    def floordiv(self, ctx, a, b):
        return a // b

    def reject(self, ctx, module, class_, message):
        raise RemoteError(module, class_, message)

    def refuse(self, ctx, module, class_, message):
        raise RemoteError(module, class_, message)

    def custom(self, ctx, message):
        raise QuotaExceeded(message)

    def context_value(self, ctx, key):
        return json.dumps(ctx[key], sort_keys=True)

    def context_ids(self, ctx):
        return " ".join(v or "-" for v in (ctx.request_id, ctx.user, ctx.project))

    def shout(self, ctx, level, message):
        LOG.log(logging.getLevelName(level.upper()), "%s", message)

    def recover(self, ctx):
        try:
            {}["missing"]
        except KeyError as e:
            return f"recovered from KeyError {e}"

    def hog(self, ctx, mib):
        block = bytearray(mib << 20)
        return len(block) >> 20

    def spin(self, ctx):
        while True:
            pass
