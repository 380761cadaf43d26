"""A real oslo.messaging RPC server for fjord's interop tests.

Usage: oslo_server.py [TRANSPORT_URL] [TOPIC] [SERVER]
(defaults from $FJORD_TRANSPORT_URL, $FJORD_TOPIC, $FJORD_SERVER).

Prints `ready` once the server runs; every call to `record` (and `stop`) is
printed as one JSON line {"method", "args", "ctxt_keys", "ctxt"} so tests can
assert that casts and fanout casts arrived.
"""
import json
import os
import sys
import threading
import time

from oslo_config import cfg
import oslo_messaging

_print_lock = threading.Lock()


def emit(obj):
    with _print_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def _ctx_dict(ctxt):
    if isinstance(ctxt, dict):
        return ctxt
    to_dict = getattr(ctxt, "to_dict", None)
    return to_dict() if to_dict else {}


class CalcEndpoint:
    """Default namespace, no version (serves 1.0)."""

    def add(self, ctxt, a, b):
        return a + b

    def echo_context(self, ctxt):
        return _ctx_dict(ctxt)

    def fail(self, ctxt, message="bad value"):
        raise ValueError(message)

    def record(self, ctxt, **kwargs):
        c = _ctx_dict(ctxt)
        emit({"method": "record", "args": kwargs, "ctxt_keys": sorted(c), "ctxt": c})

    def stop(self, ctxt, **kwargs):
        c = _ctx_dict(ctxt)
        emit({"method": "stop", "args": kwargs, "ctxt_keys": sorted(c), "ctxt": c})

    def slow(self, ctxt, seconds):
        """Sleeps: oslo's server sends call-monitor heartbeats meanwhile."""
        time.sleep(seconds)
        return seconds

    def _secret(self, ctxt):
        return "secret"


class NamespacedEndpoint:
    """Namespace `calc`, version 1.1."""

    target = oslo_messaging.Target(namespace="calc", version="1.1")

    def multiply(self, ctxt, a, b):
        return a * b


class StateEndpoint:
    """Namespace `state`: oslo.messaging's own functional-test endpoint (TestServerEndpoint), which
    keeps state between calls; fjord's `stateful` test component does the same through wasi:keyvalue."""

    target = oslo_messaging.Target(namespace="state")

    def __init__(self):
        self._ival = 0
        self._sval = ""
        self._lock = threading.Lock()

    def add(self, ctxt, increment):
        with self._lock:
            self._ival += increment
            return self._ival

    def subtract(self, ctxt, increment):
        with self._lock:
            if self._ival < increment:
                raise ValueError("ival can't go negative!")
            self._ival -= increment
            return self._ival

    def append(self, ctxt, text):
        with self._lock:
            self._sval += text
            return self._sval

    def ival(self, ctxt):
        return self._ival

    def sval(self, ctxt):
        return self._sval


class RelayEndpoint:
    """Namespace `relay`: an endpoint that is a client too, as fjord's `relay` test component's
    `forward`: calls `method` of `to` (a dict with `topic` and optional `server`, `version`) with
    `args` (JSON text) through the server's own transport and returns the result as JSON text. The
    benchmark's Python chain (client -> A -> B) is this endpoint calling another server."""

    target = oslo_messaging.Target(namespace="relay")

    def __init__(self, transport):
        self._transport = transport
        self._clients = {}
        self._lock = threading.Lock()

    def _client(self, to):
        key = (to["topic"], to.get("server"), to.get("version"))
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                target = oslo_messaging.Target(topic=to["topic"], server=to.get("server"),
                                               version=to.get("version"))
                client = oslo_messaging.get_rpc_client(self._transport, target)
                self._clients[key] = client
            return client

    def forward(self, ctxt, to, method, args):
        return json.dumps(self._client(to).call(ctxt, method, **json.loads(args)))


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "FJORD_TRANSPORT_URL", "rabbit://guest:guest@127.0.0.1:5672/")
    topic = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("FJORD_TOPIC", "test")
    server = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("FJORD_SERVER", "server1")

    # 18.3.1 needs the global CONF: its tracing options are registered only there.
    # FJORD_OSLO_CONFIG names an oslo config file ([oslo_messaging_rabbit] queue options...).
    config = os.environ.get("FJORD_OSLO_CONFIG")
    cfg.CONF(["--config-file", config] if config else [], project="fjord-interop")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=url)
    target = oslo_messaging.Target(topic=topic, server=server)
    rpc_server = oslo_messaging.get_rpc_server(
        transport, target, [CalcEndpoint(), NamespacedEndpoint(), StateEndpoint(), RelayEndpoint(transport)], executor="threading")
    rpc_server.start()
    with _print_lock:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        rpc_server.stop()
        rpc_server.wait()


if __name__ == "__main__":
    main()
