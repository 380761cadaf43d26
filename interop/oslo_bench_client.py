#!/usr/bin/env python3
"""A threaded oslo.messaging (18.3.1) load client, the Python twin of `fjord bench`.

Usage:
    python interop/oslo_bench_client.py --url rabbit://guest:guest@127.0.0.1:5672/ --topic test \
        [--server S] --concurrency 16 --calls 5000 [--size 2500] add a=2 b=3

C threads share one RPCClient (one transport, one reply queue, as the threads of an oslo service
do) and make N calls in all after one untimed warm-up call. `--size` pads each request to about
that many bytes with a `fjord_bench_pad` context entry, exactly as `fjord bench` does. The last
stdout line is one JSON object:
    {"calls": N, "concurrency": C, "seconds": S, "calls_per_s": R, "p50_ms": x, "p99_ms": y, "errors": E,
     "cpu_user_s": U, "cpu_sys_s": K}
"""

import argparse
import json
import math
import resource
import sys
import threading
import time
import uuid

from oslo_config import cfg
import oslo_messaging

PAD_KEY = "fjord_bench_pad"


def parse_args(pairs):
    args = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            sys.exit(f"oslo_bench_client: argument {pair!r} is not name=value")
        try:
            args[name] = json.loads(value)
        except ValueError:
            args[name] = value
    return args


def encoded_size(method, args, ctxt):
    """The size of oslo's envelope for this call (ids of their real length)."""
    msg = {"method": method, "args": args}
    for k, v in ctxt.items():
        msg["_context_" + k] = v
    msg["_msg_id"] = uuid.uuid4().hex
    msg["_reply_q"] = "reply_" + uuid.uuid4().hex
    msg["_unique_id"] = uuid.uuid4().hex
    return len(json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(msg)}))


def pad_context(method, args, size):
    with_key = encoded_size(method, args, {PAD_KEY: ""})
    if size <= with_key:
        return {}
    return {PAD_KEY: "x" * (size - with_key)}


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    rank = math.ceil(p / 100.0 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="rabbit://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--server")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--size", type=int)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("method")
    parser.add_argument("args", nargs="*")
    opts = parser.parse_args()
    if opts.concurrency < 1 or opts.calls < 1:
        sys.exit("oslo_bench_client: --concurrency and --calls must be at least 1")
    args = parse_args(opts.args)
    ctxt = pad_context(opts.method, args, opts.size) if opts.size else {}

    # 18.3.1 needs the global CONF: its tracing options are registered only there.
    cfg.CONF([], project="fjord-bench")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=opts.url)
    target = oslo_messaging.Target(topic=opts.topic, server=opts.server)
    client = oslo_messaging.get_rpc_client(transport, target, timeout=opts.timeout)
    try:
        client.call(ctxt, opts.method, **args)
    except Exception as e:  # noqa: BLE001 - any failure of the warm-up ends the run clearly
        sys.exit(f"oslo_bench_client: the warm-up call failed: {type(e).__name__}: {e}")

    concurrency = min(opts.concurrency, opts.calls)
    counter = iter(range(opts.calls))
    counter_lock = threading.Lock()
    latencies, errors, first_error = [], [0], []
    results_lock = threading.Lock()

    def caller():
        mine, failed = [], 0
        while True:
            with counter_lock:
                if next(counter, None) is None:
                    break
            t = time.perf_counter()
            try:
                client.call(ctxt, opts.method, **args)
                mine.append(time.perf_counter() - t)
            except Exception as e:  # noqa: BLE001 - counted, reported once
                failed += 1
                if not first_error:
                    first_error.append(f"{type(e).__name__}: {e}")
        with results_lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=caller) for _ in range(concurrency)]
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    if first_error:
        sys.stderr.write(f"oslo_bench_client: a call failed: {first_error[0]}\n")
    latencies.sort()
    calls = len(latencies) + errors[0]
    print(json.dumps({
        "calls": calls,
        "concurrency": concurrency,
        "seconds": round(seconds, 3),
        "calls_per_s": round(calls / seconds) if seconds > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 50) * 1e3, 3),
        "p99_ms": round(percentile(latencies, 99) * 1e3, 3),
        "errors": errors[0],
        # CPU of this process over the timed calls, as fjord bench reports it.
        "cpu_user_s": round(cpu_after.ru_utime - cpu_before.ru_utime, 6),
        "cpu_sys_s": round(cpu_after.ru_stime - cpu_before.ru_stime, 6),
    }), flush=True)
    transport.cleanup()
    return 1 if errors[0] == calls else 0


if __name__ == "__main__":
    sys.exit(main())
