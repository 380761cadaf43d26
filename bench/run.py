#!/usr/bin/env python3
"""The benchmark of issue 4, driven by scripts/bench (which builds everything first).

Measures, in one run and against the same RabbitMQ: the raw lapin floor, fjord -> fjord-host,
oslo.messaging client -> fjord-host, fjord -> Python oslo server, Python -> Python; at 1, 16 and
64 callers, with the small `add` and 2.5 KB requests; checks that 64 KB requests complete; and
fjord-host's start-up time (cached and uncached compiled components) and RSS (idle and under the
16-caller load). Prints a table and the goal ratios, writes them to OUT.md and OUT.json and draws
throughput versus callers into OUT.png.

Every process it starts is stopped on exit; topics and queues are unique to the run.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
GUESTS = os.path.join(ROOT, "target", "wasm32-wasip2", "release")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
SYSTEMS = [
    ("floor", "lapin floor (Rust, no envelope, no sandbox)"),
    ("floor+confirms", "lapin floor with oslo's confirms and acks"),
    ("fjord->fjord", "fjord client -> fjord-host"),
    ("oslo->fjord", "oslo.messaging client -> fjord-host"),
    ("fjord->python", "fjord client -> oslo.messaging server"),
    ("python->python", "oslo.messaging client -> oslo.messaging server"),
]

children = []


def fail(message):
    sys.stderr.write(f"bench: {message}\n")
    sys.exit(1)


def start(cmd, ready, env=None, timeout=60):
    """Starts a long-running process and waits until a line of its output contains `ready`;
    returns (process, seconds from spawn to that line)."""
    log = tempfile.TemporaryFile(mode="w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    children.append(proc)
    lines = []
    found = threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line)
            log.write(line)
            if ready in line and not found.is_set():
                found.elapsed = time.perf_counter() - t0
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout):
        stop(proc)
        fail(f"{cmd[0]} did not print {ready!r} within {timeout}s; its output:\n" + "".join(lines[-30:]))
    return proc, found.elapsed


def stop(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def stop_all():
    for proc in reversed(children):
        stop(proc)


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def load(cmd, what):
    """Runs a load client; its last stdout line is the JSON report."""
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = out.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        fail(f"{what}: no report (exit {out.returncode}); stderr:\n{out.stderr[-2000:]}")
    if out.returncode != 0 or report.get("errors"):
        sys.stderr.write(f"bench: {what}: {report.get('errors')} errors; stderr:\n{out.stderr[-1000:]}\n")
    return report


def host_config(path, topic, topics):
    with open(path, "w") as f:
        f.write(f'transport_url = "{URL}"\n')
        for t, wasm in [(topic, "calculator"), (topics[0], "greeter"), (topics[1], "types")]:
            f.write(f'[[server]]\ntopic = "{t}"\nserver = "bench"\n'
                    f'endpoints = ["{os.path.join(GUESTS, wasm + ".wasm")}"]\n')


def main():
    global URL
    parser = argparse.ArgumentParser(description="fjord's benchmark (issue 4)")
    parser.add_argument("--url", default=os.environ.get("FJORD_TRANSPORT_URL",
                                                        "rabbit://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "bench"),
                        help="writes OUT.md, OUT.json and OUT.png")
    parser.add_argument("--callers", default="1,16,64")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every call count")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is kept")
    parser.add_argument("--only-keyvalue", action="store_true",
                        help="only the keyvalue rows (counter increment beside add)")
    opts = parser.parse_args()
    URL = opts.url
    amqp = URL.replace("rabbit://", "amqp://", 1)
    if amqp.endswith("/"):
        amqp += "%2f"
    callers = [int(c) for c in opts.callers.split(",")]
    run = f"fjbench_{uuid.uuid4().hex[:10]}"
    work = tempfile.mkdtemp(prefix="fjord-bench-")
    os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
    env = dict(os.environ, RUST_LOG="warn,fjord_host=info")
    if opts.only_keyvalue:
        keyvalue_bench(opts, work, env, run)
        shutil.rmtree(work, ignore_errors=True)
        return

    # fjord-host with three endpoints (calculator, greeter, types), each its own server.
    host_topic = f"{run}_host"
    cfg = os.path.join(work, "host.toml")
    host_config(cfg, host_topic, [f"{run}_greeter", f"{run}_types"])
    host_cmd = [os.path.join(RELEASE, "fjord-host"), "--config", cfg]
    cold_env = dict(env, XDG_CACHE_HOME=os.path.join(work, "cold-cache"))
    startup = {}
    proc, startup["uncached_ms"] = start(host_cmd, "fjord-host ready", env=cold_env)
    stop(proc)
    proc, startup["cached_ms"] = start(host_cmd, "fjord-host ready", env=cold_env)
    stop(proc)
    host, _ = start(host_cmd, "fjord-host ready", env=env)
    time.sleep(1)
    memory = {"idle_mib": rss_mib(host.pid)}

    py_topic = f"{run}_py"
    start([PYTHON, os.path.join(ROOT, "interop", "oslo_server.py"), URL, py_topic, "bench"], "ready")
    floor_queue = f"{run}_floor"
    start([os.path.join(RELEASE, "floor-server"), "--url", amqp, "--queue", floor_queue], "ready")
    start([os.path.join(RELEASE, "floor-server"), "--url", amqp, "--queue", floor_queue + "_c",
           "--confirms"], "ready")

    fjord = os.path.join(RELEASE, "fjord")
    oslo = [PYTHON, os.path.join(ROOT, "interop", "oslo_bench_client.py")]

    def command(system, c, calls, size):
        sized = ["--size", str(size)] if size else []
        common = ["--concurrency", str(c), "--calls", str(calls)] + sized
        if system == "floor":
            return [os.path.join(RELEASE, "floor-client"), "--url", amqp, "--queue", floor_queue] + common
        if system == "floor+confirms":
            return [os.path.join(RELEASE, "floor-client"), "--url", amqp, "--queue", floor_queue + "_c",
                    "--confirms"] + common
        topic = host_topic if system.endswith("fjord") else py_topic
        client = [fjord, "bench"] if system.startswith("fjord") else oslo
        return client + ["--url", URL, "--topic", topic] + common + ["add", "a=2", "b=3"]

    def calls_for(system, c):
        python_client = system in ("oslo->fjord", "python->python")
        python_any = python_client or system == "fjord->python"
        n = (600 if c == 1 else 2500) if python_any else (2500 if c == 1 else 8000)
        return max(int(n * opts.scale), c)

    results = {}
    peak = [0.0]
    for size_name, size in [("small", None), ("2.5KB", 2500)]:
        for c in callers:
            for system, _ in SYSTEMS:
                sampling = threading.Event()
                if system == "fjord->fjord" and c == 16:
                    def sample():
                        while not sampling.is_set():
                            peak[0] = max(peak[0], rss_mib(host.pid))
                            time.sleep(0.02)
                    threading.Thread(target=sample, daemon=True).start()
                runs = [load(command(system, c, calls_for(system, c), size), f"{system} c={c} {size_name}")
                        for _ in range(opts.repeat)]
                sampling.set()
                report = sorted(runs, key=lambda r: r["calls_per_s"])[len(runs) // 2]
                results[(system, c, size_name)] = report
                print(f"  {system:15} {size_name:6} c={c:<3} {report['calls_per_s']:>8.0f}/s "
                      f"p50 {report['p50_ms']:7.3f} ms  p99 {report['p99_ms']:7.3f} ms"
                      f"{'  errors ' + str(report['errors']) if report['errors'] else ''}", flush=True)
    memory["load16_mib"] = peak[0]

    big = {}
    for system in ["floor", "fjord->fjord", "oslo->fjord", "fjord->python"]:
        r = load(command(system, 16, 200, 65536), f"{system} 64KB")
        big[system] = r
        print(f"  {system:15} 64KB   c=16  {r['calls']} calls, {r['errors']} errors, "
              f"{r['calls_per_s']:.0f}/s", flush=True)
    memory["after_mib"] = rss_mib(host.pid)
    stop_all()
    write_report(opts.out, results, callers, startup, memory, big)
    keyvalue_bench(opts, work, env, run)
    shutil.rmtree(work, ignore_errors=True)


def keyvalue_bench(opts, work, env, run):
    """Issue 11: the counter endpoint's `increment` (an atomic wasi:keyvalue increment, durable
    before the reply) at 1 and 16 callers, with the embedded store and with Redis, beside `add`
    served by the same host. The embedded host is restarted for each row and stopped gracefully,
    so that its log line `N writes in M commits` gives the fsyncs per call of that row alone.
    Writes OUT-keyvalue.md and OUT-keyvalue.json."""
    import re
    fjord = os.path.join(RELEASE, "fjord")
    counter, calculator = (os.path.join(GUESTS, w + ".wasm") for w in ("counter", "calculator"))
    redis_prefix = f"{run}:"

    def host_for(store, topic):
        cfg = os.path.join(work, f"kv-{store}.toml")
        section = (f'[keyvalue]\npath = "{os.path.join(work, "kv-state.redb")}"\n' if store == "embedded"
                   else f'[keyvalue]\nurl = "redis://127.0.0.1:6379/0"\nprefix = "{redis_prefix}"\n')
        with open(cfg, "w") as f:
            f.write(f'transport_url = "{URL}"\n[[server]]\ntopic = "{topic}"\nserver = "bench"\n'
                    f'endpoints = [{{ path = "{counter}", keyvalue = ["default"] }}, "{calculator}"]\n'
                    + section)
        log = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen([os.path.join(RELEASE, "fjord-host"), "--config", cfg], stdout=log,
                                stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        children.append(proc)
        deadline = time.time() + 60
        while True:
            log.seek(0)
            text = log.read()
            if "fjord-host ready" in text:
                return proc, log
            if proc.poll() is not None or time.time() > deadline:
                stop(proc)
                fail(f"fjord-host ({store} keyvalue) did not start:\n{text[-3000:]}")
            time.sleep(0.05)

    def fsyncs(proc, log):
        stop(proc)
        log.seek(0)
        m = re.search(r"(\d+) writes in (\d+) commits", log.read())
        return (int(m.group(2)) / int(m.group(1))) if m and int(m.group(1)) else float("nan")

    rows = []
    for store in ["embedded", "redis"]:
        for c in [1, 16]:
            topic = f"{run}_kv_{store}_{c}"
            proc, log = host_for(store, topic)
            n = max(int((1500 if c == 1 else 8000) * opts.scale), c)
            for method, args in [("add", ["a=2", "b=3"]), ("increment", ["name=bench", "by=1"])]:
                cmd = [fjord, "bench", "--url", URL, "--topic", topic, "--concurrency", str(c),
                       "--calls", str(n), method] + args
                runs = [load(cmd, f"{method} {store} c={c}") for _ in range(opts.repeat)]
                r = sorted(runs, key=lambda r: r["calls_per_s"])[len(runs) // 2]
                rows.append(dict(store=store, callers=c, method=method, **r))
                print(f"  {method:9} {store:8} c={c:<3} {r['calls_per_s']:>8.0f}/s p50 {r['p50_ms']:7.3f} ms "
                      f"p99 {r['p99_ms']:7.3f} ms{'  errors ' + str(r['errors']) if r['errors'] else ''}",
                      flush=True)
            per_call = fsyncs(proc, log) if store == "embedded" else None
            rows[-1]["fsyncs_per_call"] = per_call
            if per_call is not None:
                print(f"  increment embedded c={c}: {per_call:.3f} fsyncs per call (group commit)", flush=True)
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "DEL", f"{redis_prefix}default"],
                   capture_output=True)

    lines = ["| store | callers | add calls/s | increment calls/s | increment / add | increment p50 ms | "
             "increment p99 ms | fsyncs per increment |", "|---|---|---|---|---|---|---|---|"]
    goals = []
    for store in ["embedded", "redis"]:
        for c in [1, 16]:
            add = next(r for r in rows if (r["store"], r["callers"], r["method"]) == (store, c, "add"))
            inc = next(r for r in rows if (r["store"], r["callers"], r["method"]) == (store, c, "increment"))
            ratio = inc["calls_per_s"] / add["calls_per_s"] if add["calls_per_s"] else float("nan")
            f = inc.get("fsyncs_per_call")
            lines.append(f"| {store} | {c} | {add['calls_per_s']:.0f} | {inc['calls_per_s']:.0f} | {ratio:.2f} | "
                         f"{inc['p50_ms']:.3f} | {inc['p99_ms']:.3f} | {'-' if f is None else f'{f:.3f}'} |")
            if c == 16:
                goal = 0.8 if store == "embedded" else 0.7
                goals.append((f"increment / add calls/s, 16 callers, {store}", ratio, f">= {goal}", ratio >= goal))
    goal_lines = ["| measure | value | goal | met |", "|---|---|---|---|"]
    goal_lines += [f"| {name} | {value:.2f} | {goal} | {'yes' if ok else 'NO'} |" for name, value, goal, ok in goals]
    text = ("# fjord keyvalue benchmark (counter increment beside add)\n\n"
            + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            + f", load average {os.getloadavg()[0]:.2f}\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(goal_lines) + "\n")
    print("\n" + text)
    with open(opts.out + "-keyvalue.md", "w") as f:
        f.write(text)
    with open(opts.out + "-keyvalue.json", "w") as f:
        json.dump({"rows": rows, "goals": [dict(name=n, value=v, goal=g, met=ok) for n, v, g, ok in goals]}, f,
                  indent=1)


def write_report(out, results, callers, startup, memory, big):
    lines = ["| system | size | callers | calls/s | p50 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|---|"]
    for size_name in ["small", "2.5KB"]:
        for system, _ in SYSTEMS:
            for c in callers:
                r = results.get((system, c, size_name))
                if r:
                    lines.append(f"| {system} | {size_name} | {c} | {r['calls_per_s']:.0f} | "
                                 f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['errors']} |")

    def ratio(a, b, key="calls_per_s"):
        return a[key] / b[key] if a and b and b[key] else float("nan")

    goals = []
    for size_name in ["small", "2.5KB"]:
        g = lambda s, c: results.get((s, c, size_name))  # noqa: E731
        for c in [1, 16]:
            if c in callers:
                v = ratio(g("fjord->fjord", c), g("floor", c))
                goals.append((f"fjord/floor calls/s, {c} caller(s), {size_name}", v, ">= 0.85", v >= 0.85))
        if 16 in callers:
            v = ratio(g("fjord->fjord", 16), g("python->python", 16))
            goals.append((f"fjord/oslo calls/s, 16 callers, {size_name}", v, ">= 12", v >= 12))
            v = ratio(g("fjord->fjord", 16), g("floor", 16), "p99_ms")
            goals.append((f"fjord p99 / floor p99, 16 callers, {size_name}", v, "<= 2", v <= 2))
        for c in [1, 16]:
            if c in callers:
                v = ratio(g("fjord->fjord", c), g("floor+confirms", c))
                goals.append((f"fjord / floor with confirms+acks, {c} caller(s), {size_name} (info)", v,
                              "(info)", True))
        for c in callers:
            v = ratio(g("oslo->fjord", c), g("python->python", c))
            goals.append((f"oslo->fjord / oslo->python calls/s, {c} caller(s), {size_name}", v, ">= 1", v >= 1))
    goals.append(("fjord-host start to consuming, 3 endpoints, cached (ms)", startup["cached_ms"] * 1e3,
                  "<= 300", startup["cached_ms"] * 1e3 <= 300))
    goals.append(("fjord-host start to consuming, 3 endpoints, uncached (ms)", startup["uncached_ms"] * 1e3,
                  "(info)", True))
    goals.append(("fjord-host RSS idle, 3 endpoints (MiB)", memory["idle_mib"], "<= 64", memory["idle_mib"] <= 64))
    goals.append(("fjord-host RSS peak under 16 callers (MiB)", memory["load16_mib"], "<= 128",
                  memory["load16_mib"] <= 128))
    for system, r in big.items():
        goals.append((f"64 KB requests complete, {system}", r["calls"] - r["errors"], f"== {r['calls']}",
                      r["errors"] == 0))
    goal_lines = ["| measure | value | goal | met |", "|---|---|---|---|"]
    goal_lines += [f"| {name} | {value:.2f} | {goal} | {'yes' if ok else 'NO'} |" for name, value, goal, ok in goals]

    text = ("# fjord benchmark\n\n" + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            + f", load average {os.getloadavg()[0]:.2f}\n\n" + "\n".join(lines)
            + "\n\n" + "\n".join(goal_lines) + "\n")
    print("\n" + text)
    with open(out + ".md", "w") as f:
        f.write(text)
    with open(out + ".json", "w") as f:
        json.dump({"results": [dict(system=s, callers=c, size=z, **r) for (s, c, z), r in results.items()],
                   "startup": startup, "memory": memory,
                   "goals": [dict(name=n, value=v, goal=g, met=ok) for n, v, g, ok in goals]}, f, indent=1)
    try:
        chart(out + ".png", results, callers)
        print(f"wrote {out}.md, {out}.json and {out}.png")
    except ImportError:
        print(f"wrote {out}.md and {out}.json (matplotlib missing: no chart)")


def chart(path, results, callers):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, size_name in zip(axes, ["small", "2.5KB"]):
        for system, label in SYSTEMS:
            ys = [results.get((system, c, size_name), {}).get("calls_per_s", 0) for c in callers]
            ax.plot(callers, ys, marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(callers, [str(c) for c in callers])
        ax.set_xlabel("callers in flight")
        ax.set_title(f"add, {'small' if size_name == 'small' else '2.5 KB'} requests")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("calls/s")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    finally:
        stop_all()
