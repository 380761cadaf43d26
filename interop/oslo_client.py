#!/usr/bin/env python3
"""A real oslo.messaging (18.3.1) RPC client, driven by JSON lines, for interop tests.

Usage:
    python interop/oslo_client.py --url rabbit://guest:guest@127.0.0.1:5672/ --topic test < cases.jsonl
    python interop/oslo_client.py --url rabbit://guest:guest@127.0.0.1:5672/ --topic test --scenario

Case mode reads one JSON object per line from stdin:
    {"id": "x", "kind": "call"|"cast", "method": "add", "args": {...},
     "version": "1.0"?, "namespace": "..."?, "server": "..."?, "fanout": bool?,
     "timeout": secs?, "call_monitor_timeout": secs?, "retry": n?, "exchange": "..."?, "context": {...}?}
and prints one JSON line per case on stdout (stderr carries oslo's own logging):
    {"id": "x", "result": 5}
    {"id": "x", "exception": "TypeError", "exc_type": null, "message": "...", "module": "builtins"}
    {"id": "x", "exception": "RemoteError", "exc_type": "NoSuchMethod", "message": "...", "value": "...", ...}
A cast prints {"id": "x", "result": null} once the cast has been published. Any failure, expected or
not (a bad input line included), is reported as an exception line; the loop never stops early.

`exception` is the Python class name of what oslo raised, with the `_Remote` suffix that oslo adds to
rebuilt remote exceptions removed (`module` keeps the real module, e.g. `builtins` or `..._Remote`).
`message` is `str(e)`; for rebuilt remote exceptions oslo appends the remote traceback lines to it.
`value` is the bare message: `RemoteError.value`, else the first line of `str(e)`.

Scenario mode runs the founding example exactly:
    client.call({}, 'add', a=2, b=3)
    client.prepare(version='1.0').call({}, 'add', a=2, b=3)
printing each result on its own line (`5` twice against the calculator); it exits non-zero on failure.

Note: oslo.messaging 18.3.1 needs the global cfg.CONF (a private ConfigOpts fails every call with
NoSuchOptError: oslo_messaging_tracing).
"""

import argparse
import json
import sys

from oslo_config import cfg
import oslo_messaging

_REMOTE_POSTFIX = "_Remote"

PREPARE_KEYS = ("version", "namespace", "server", "fanout", "timeout", "retry", "exchange",
                "call_monitor_timeout")


def emit(obj):
    sys.stdout.write(json.dumps(obj, default=repr) + "\n")
    sys.stdout.flush()


def describe_exception(case_id, exc):
    cls = type(exc)
    name = cls.__name__
    if name.endswith(_REMOTE_POSTFIX):
        name = name[: -len(_REMOTE_POSTFIX)]
    out = {
        "id": case_id,
        "exception": name,
        "exc_type": getattr(exc, "exc_type", None) if isinstance(exc, oslo_messaging.RemoteError) else None,
        "message": str(exc),
        "module": cls.__module__,
    }
    if isinstance(exc, oslo_messaging.RemoteError):
        out["value"] = exc.value
        out["traceback"] = exc.traceback
    else:
        # rebuilt remote exceptions carry the remote traceback after the first line
        out["value"] = str(exc).split("\n", 1)[0]
    return out


def run_case(client, case):
    kind = case.get("kind", "call")
    method = case["method"]
    args = case.get("args") or {}
    if not isinstance(args, dict):
        raise TypeError("args must be a JSON object")
    ctxt = case.get("context") or {}
    prepare = {k: case[k] for k in PREPARE_KEYS if case.get(k) is not None}
    cctxt = client.prepare(**prepare) if prepare else client
    if kind == "call":
        return cctxt.call(ctxt, method, **args)
    if kind == "cast":
        cctxt.cast(ctxt, method, **args)
        return None
    raise ValueError(f"unknown kind {kind!r} (call or cast)")


def run_cases(client, stream):
    failures = 0
    for lineno, line in enumerate(stream, 1):
        line = line.strip()
        if not line:
            continue
        case_id = None
        try:
            case = json.loads(line)
            if not isinstance(case, dict):
                raise ValueError(f"line {lineno}: a case must be a JSON object")
            case_id = case.get("id")
            result = run_case(client, case)
            emit({"id": case_id, "result": result})
        except Exception as exc:  # report everything, never stop the loop
            failures += 1
            emit(describe_exception(case_id, exc))
    return failures


def run_scenario(client):
    ok = True
    for label, cctxt in (("call", client), ("call version=1.0", client.prepare(version="1.0"))):
        try:
            result = cctxt.call({}, "add", a=2, b=3)
            print(json.dumps(result), flush=True)
            print(f"{label} add(a=2, b=3) -> {result!r}", file=sys.stderr, flush=True)
        except Exception as exc:
            ok = False
            emit(describe_exception(label, exc))
    return 0 if ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="rabbit://guest:guest@127.0.0.1:5672/", help="transport URL")
    parser.add_argument("--topic", default="test", help="target topic")
    parser.add_argument("--exchange", default=None, help="target exchange (default: control_exchange)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="default call timeout in seconds (oslo default 60)")
    parser.add_argument("--scenario", action="store_true",
                        help="run the founding example: add(a=2, b=3) twice, the second with version 1.0")
    opts = parser.parse_args(argv)

    cfg.CONF([], project="fjord-interop")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=opts.url)
    target = oslo_messaging.Target(topic=opts.topic, exchange=opts.exchange)
    client = oslo_messaging.get_rpc_client(transport, target, timeout=opts.timeout) \
        if hasattr(oslo_messaging, "get_rpc_client") \
        else oslo_messaging.RPCClient(transport, target, timeout=opts.timeout)
    try:
        if opts.scenario:
            return run_scenario(client)
        run_cases(client, sys.stdin)
        return 0
    finally:
        transport.cleanup()


if __name__ == "__main__":
    sys.exit(main())
