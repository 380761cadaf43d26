#!/usr/bin/env python3
"""Sequential oslo.messaging (18.3.1) callers for fault tests: every call accounted for.

Usage:
    python interop/oslo_load.py --url URL --topic T --threads 8 --seconds 12 [--timeout 3] [--cast]

Each thread calls `add(a=i, b=1)` (or, with --cast, casts `record(n=i)`) in a loop for the given
time, one call at a time, with the timeout given. Prints one JSON object on its last line:
    {"calls": [[start, end, outcome], ...]}
with wall-clock times (time.time()) and outcome "ok", "wrong" or the exception class the caller
saw ("MessagingTimeout"...); a thread still inside a call 5 s after the end is reported as
"lost" for that call. Casts report "ok" once oslo has published them.
"""

import argparse
import json
import os
import threading
import time

from oslo_config import cfg
import oslo_messaging


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--timeout", type=float, default=3)
    parser.add_argument("--cast", action="store_true")
    opts = parser.parse_args()

    # FJORD_OSLO_CONFIG names an oslo config file ([oslo_messaging_rabbit] heartbeat, quorum...).
    config = os.environ.get("FJORD_OSLO_CONFIG")
    cfg.CONF(["--config-file", config] if config else [], project="fjord-load")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=opts.url)
    target = oslo_messaging.Target(topic=opts.topic)
    client = oslo_messaging.get_rpc_client(transport, target, timeout=opts.timeout)

    calls = []
    lock = threading.Lock()
    in_call = {}
    end = time.time() + opts.seconds

    def worker(n):
        i = n * 1_000_000
        while time.time() < end:
            i += 1
            started = time.time()
            with lock:
                in_call[n] = started
            try:
                if opts.cast:
                    client.cast({}, "record", n=i)
                    outcome = "ok"
                else:
                    outcome = "ok" if client.call({}, "add", a=i, b=1) == i + 1 else "wrong"
            except Exception as e:  # every failure the caller sees is recorded by class
                outcome = type(e).__name__
            with lock:
                in_call.pop(n, None)
                calls.append([started, time.time(), outcome])
            if outcome not in ("ok", "wrong"):
                time.sleep(0.05)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(opts.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(end - time.time(), 0) + opts.timeout + 5)
    with lock:
        for started in in_call.values():
            calls.append([started, None, "lost"])
        print(json.dumps({"calls": calls}), flush=True)


if __name__ == "__main__":
    main()
