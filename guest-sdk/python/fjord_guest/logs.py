"""Python's ``logging`` into the host's log (``fjord:endpoint/log``).

The host tags every line with the endpoint, the method and the request id, and caps what one call
may write (64 KiB), as it does for the guest's stdout and stderr.
"""

import logging

from wit_world.imports import log as _log

_LEVELS = (
    (logging.ERROR, _log.Level.ERROR),
    (logging.WARNING, _log.Level.WARN),
    (logging.INFO, _log.Level.INFO),
    (logging.DEBUG, _log.Level.DEBUG),
)


def _level(levelno: int) -> "_log.Level":
    for threshold, level in _LEVELS:
        if levelno >= threshold:
            return level
    return _log.Level.TRACE


class LogHandler(logging.Handler):
    """A ``logging.Handler`` writing each record to the host's log at its level.

    ``CRITICAL`` and ``ERROR`` are the host's error, ``WARNING`` warn, ``INFO`` info, ``DEBUG``
    debug, anything lower trace. :func:`install_logging` puts one on the root logger when
    ``fjord_guest`` is imported.

    Example::

        import logging
        LOG = logging.getLogger(__name__)
        LOG.warning("divisor %d is negative", divisor)   # host: WARN ... divisor -3 is negative
    """

    def __init__(self, level: int = logging.NOTSET):
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _log.log(_level(record.levelno), self.format(record))
        except Exception:  # noqa: BLE001 - logging must never fail the call (logging's own rule)
            self.handleError(record)


def install_logging(level: int = logging.INFO) -> None:
    """Route the root logger to the host's log at ``level`` (INFO by default), unless a
    :class:`LogHandler` is already there. Called on ``import fjord_guest``.

    Example: ``fjord_guest.install_logging(logging.DEBUG)`` to send debug records too (the host's
    own level, ``RUST_LOG``, still decides what it prints).
    """
    root = logging.getLogger()
    if not any(isinstance(h, LogHandler) for h in root.handlers):
        root.addHandler(LogHandler())
    root.setLevel(level)
