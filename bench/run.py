#!/usr/bin/env python3
"""fjord's benchmark (issue 14), driven by scripts/bench (which builds everything first).

Measures, in one run and against the same RabbitMQ, interleaved (every system of a cell runs
before the next cell, and with --repeat N the whole sweep runs N times): the oslo-shaped floor
(THE reference), the bare floor (for context), fjord -> fjord-host, oslo.messaging client ->
fjord-host, fjord -> Python oslo server, Python -> Python; at 1, 16 and 64 callers, with the
small `add` and 2.5 KB requests. For every run it takes calls/s, p50 and p99 and the CPU time
per call of the server process (/proc/PID/stat utime+stime, before and after), of the client
process (its own getrusage over the timed calls; the whole child's rusage too, in the JSON) and
of the broker (beam.smp, /proc). It checks that 64 KB requests complete, times fjord-host from
start to consuming (cached and uncached compiled components), reads its RSS (idle and under the
16-caller load), prints the table and the goal ratios, writes them to OUT.md and OUT.json, and
draws throughput versus callers into OUT.png and CPU per call by process into OUT-cpu.png.

Every process it starts is stopped on exit; topics and queues are unique to the run.
"""

import argparse
import glob
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
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# FJORD_BENCH_BIN: another directory of the same binaries (an earlier build, to compare).
RELEASE = os.environ.get("FJORD_BENCH_BIN") or os.path.join(ROOT, "target", "release")
GUESTS = os.path.join(ROOT, "target", "wasm32-wasip2", "release")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
SYSTEMS = [
    ("floor", "oslo-shaped floor (lapin; oslo's AMQP work, no dispatch, no sandbox)"),
    ("bare-floor", "bare lapin floor (no envelope, no confirms, auto-ack)"),
    ("fjord->fjord", "fjord client -> fjord-host"),
    ("oslo->fjord", "oslo.messaging client -> fjord-host"),
    ("fjord->python", "fjord client -> oslo.messaging server"),
    ("python->python", "oslo.messaging client -> oslo.messaging server"),
]
# The server process of each system (a key of `servers` in main).
SERVER_OF = {"floor": "floor-server", "bare-floor": "bare-server", "fjord->fjord": "fjord-host",
             "oslo->fjord": "fjord-host", "fjord->python": "oslo-server", "python->python": "oslo-server"}
CLIENT_OF = {"floor": "floor-client", "bare-floor": "bare-client", "fjord->fjord": "fjord bench",
             "oslo->fjord": "oslo client", "fjord->python": "fjord bench", "python->python": "oslo client"}
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
METRICS = ["calls_per_s", "p50_ms", "p99_ms", "server_us", "server_sys_us", "client_us", "client_sys_us",
           "broker_us"]

children = []


def fail(message):
    sys.stderr.write(f"bench: {message}\n")
    sys.exit(1)


def start(cmd, ready, env=None, timeout=60):
    """Starts a long-running process and waits until a line of its output contains `ready`;
    returns (process, seconds from spawn to that line)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    children.append(proc)
    lines = []
    found = threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line)
            del lines[:-200]
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


def cpu_seconds(pid):
    """(user, system) CPU seconds of a whole process (all its threads), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # utime and stime are fields 14 and 15 of proc(5); fields[0] here is field 3.
    return int(fields[11]) / CLOCK_TICK, int(fields[12]) / CLOCK_TICK


def broker_pid(port):
    """The process listening on `port` (RabbitMQ's beam.smp), found through /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{cols[9]}]")
        except OSError:
            continue
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            if os.readlink(fd) in inodes:
                return int(fd.split("/")[2])
        except OSError:
            continue
    return None


def load(cmd, what, server_pid, broker):
    """Runs a load client; its last stdout line is the JSON report. Adds CPU per call: the
    server's and the broker's from /proc deltas, the client's from its own report (the timed
    calls only) and from wait4 (the whole process, start-up included)."""
    server0, broker0 = cpu_seconds(server_pid), cpu_seconds(broker)
    out = tempfile.TemporaryFile(mode="w+")
    err = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    server1, broker1 = cpu_seconds(server_pid), cpu_seconds(broker)
    out.seek(0)
    err.seek(0)
    lines = out.read().strip().splitlines()
    stderr = err.read()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        fail(f"{what}: no report (exit {proc.returncode}); stderr:\n{stderr[-2000:]}")
    if proc.returncode != 0 or report.get("errors"):
        sys.stderr.write(f"bench: {what}: {report.get('errors')} errors; stderr:\n{stderr[-1000:]}\n")
    calls = max(report["calls"], 1)
    us = lambda seconds, n=calls: round(seconds * 1e6 / n, 1)  # noqa: E731
    if server0 and server1:
        # The server also answered the client's untimed warm-up call.
        report["server_us"] = us(sum(server1) - sum(server0), calls + 1)
        report["server_sys_us"] = us(server1[1] - server0[1], calls + 1)
    if broker0 and broker1:
        report["broker_us"] = us(sum(broker1) - sum(broker0), calls + 1)
    if report.get("cpu_user_s") is not None:
        report["client_us"] = us(report["cpu_user_s"] + report["cpu_sys_s"])
        report["client_sys_us"] = us(report["cpu_sys_s"])
    report["client_process_us"] = us(rusage.ru_utime + rusage.ru_stime)
    return report


def host_config(path, topic, topics):
    with open(path, "w") as f:
        f.write(f'transport_url = "{URL}"\n')
        for t, wasm in [(topic, "calculator"), (topics[0], "greeter"), (topics[1], "types")]:
            f.write(f'[[server]]\ntopic = "{t}"\nserver = "bench"\n'
                    f'endpoints = ["{os.path.join(GUESTS, wasm + ".wasm")}"]\n')


def median_report(runs):
    """Per metric, the median over the repeated runs of a cell."""
    merged = dict(runs[0])
    for key in METRICS:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            merged[key] = statistics.median(values)
    merged["errors"] = sum(r["errors"] for r in runs)
    merged["runs"] = len(runs)
    return merged


def main():
    global URL
    parser = argparse.ArgumentParser(description="fjord's benchmark (issue 14)")
    parser.add_argument("--url", default=os.environ.get("FJORD_TRANSPORT_URL",
                                                        "rabbit://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "bench"),
                        help="writes OUT.md, OUT.json, OUT.png and OUT-cpu.png")
    parser.add_argument("--callers", default="1,16,64")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every call count")
    parser.add_argument("--repeat", type=int, default=1,
                        help="sweeps over every cell; each metric's median is kept")
    parser.add_argument("--systems", default=",".join(s for s, _ in SYSTEMS),
                        help="a subset of: " + ", ".join(s for s, _ in SYSTEMS))
    parser.add_argument("--sizes", default="small,2.5KB", help="small, 2.5KB or both")
    parser.add_argument("--quick", action="store_true",
                        help="skip the start-up, RSS and 64 KB checks")
    parser.add_argument("--only-keyvalue", action="store_true",
                        help="only the keyvalue rows (counter increment beside add)")
    parser.add_argument("--only-chain", action="store_true",
                        help="only the chain rows (client -> endpoint A -> endpoint B, fjord and Python)")
    opts = parser.parse_args()
    URL = opts.url
    amqp = URL.replace("rabbit://", "amqp://", 1)
    if amqp.endswith("/"):
        amqp += "%2f"
    callers = [int(c) for c in opts.callers.split(",")]
    systems = [s for s, _ in SYSTEMS if s in opts.systems.split(",")]
    sizes = [(n, s) for n, s in [("small", None), ("2.5KB", 2500)] if n in opts.sizes.split(",")]
    run = f"fjbench_{uuid.uuid4().hex[:10]}"
    work = tempfile.mkdtemp(prefix="fjord-bench-")
    os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
    env = dict(os.environ, RUST_LOG="warn,fjord_host=info")
    # The first host of the URL is the broker measured.
    broker = broker_pid(urllib.parse.urlsplit(amqp.split(",")[0]).port or 5672)
    if opts.only_keyvalue or opts.only_chain:
        (keyvalue_bench if opts.only_keyvalue else chain_bench)(opts, work, env, run, broker)
        shutil.rmtree(work, ignore_errors=True)
        return
    load_at_start = os.getloadavg()

    # fjord-host with three endpoints (calculator, greeter, types), each its own server.
    host_topic = f"{run}_host"
    cfg = os.path.join(work, "host.toml")
    host_config(cfg, host_topic, [f"{run}_greeter", f"{run}_types"])
    host_cmd = [os.path.join(RELEASE, "fjord-host"), "--config", cfg]
    startup, memory = {}, {}
    if not opts.quick:
        cold_env = dict(env, XDG_CACHE_HOME=os.path.join(work, "cold-cache"))
        proc, startup["uncached_ms"] = start(host_cmd, "fjord-host ready", env=cold_env)
        stop(proc)
        proc, startup["cached_ms"] = start(host_cmd, "fjord-host ready", env=cold_env)
        stop(proc)
    host, _ = start(host_cmd, "fjord-host ready", env=env)
    time.sleep(1)
    memory["idle_mib"] = rss_mib(host.pid)

    py_topic = f"{run}_py"
    py_server, _ = start([PYTHON, os.path.join(ROOT, "interop", "oslo_server.py"), URL, py_topic, "bench"],
                         "ready")
    floor_topic = f"{run}_floor"
    floor, _ = start([os.path.join(RELEASE, "floor-server"), "--url", amqp, "--topic", floor_topic], "ready")
    bare_queue = f"{run}_bare"
    bare, _ = start([os.path.join(RELEASE, "bare-server"), "--url", amqp, "--queue", bare_queue], "ready")
    servers = {"floor-server": floor.pid, "bare-server": bare.pid, "fjord-host": host.pid,
               "oslo-server": py_server.pid}

    fjord = os.path.join(RELEASE, "fjord")
    oslo = [PYTHON, os.path.join(ROOT, "interop", "oslo_bench_client.py")]

    def command(system, c, calls, size):
        sized = ["--size", str(size)] if size else []
        common = ["--concurrency", str(c), "--calls", str(calls)] + sized
        if system == "floor":
            return [os.path.join(RELEASE, "floor-client"), "--url", amqp, "--topic", floor_topic] + common
        if system == "bare-floor":
            return [os.path.join(RELEASE, "bare-client"), "--url", amqp, "--queue", bare_queue] + common
        topic = host_topic if system.endswith("fjord") else py_topic
        client = [fjord, "bench"] if system.startswith("fjord") else oslo
        return client + ["--url", URL, "--topic", topic] + common + ["add", "a=2", "b=3"]

    def calls_for(system, c):
        python_any = system in ("oslo->fjord", "python->python", "fjord->python")
        n = (600 if c == 1 else 2500) if python_any else (2500 if c == 1 else 8000)
        return max(int(n * opts.scale), c)

    runs = {}
    peak = [0.0]
    for rep in range(opts.repeat):
        if opts.repeat > 1:
            print(f"sweep {rep + 1} of {opts.repeat} (load average {os.getloadavg()[0]:.2f})", flush=True)
        for size_name, size in sizes:
            for c in callers:
                for system in systems:
                    sampling = threading.Event()
                    if system == "fjord->fjord" and c == 16:
                        def sample():
                            while not sampling.is_set():
                                peak[0] = max(peak[0], rss_mib(host.pid))
                                time.sleep(0.02)
                        threading.Thread(target=sample, daemon=True).start()
                    r = load(command(system, c, calls_for(system, c), size), f"{system} c={c} {size_name}",
                             servers[SERVER_OF[system]], broker)
                    sampling.set()
                    runs.setdefault((system, c, size_name), []).append(r)
                    print(f"  {system:15} {size_name:6} c={c:<3} {r['calls_per_s']:>8.0f}/s "
                          f"p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms  cpu us/call: "
                          f"server {r.get('server_us', float('nan')):7.1f} "
                          f"client {r.get('client_us', float('nan')):7.1f} "
                          f"broker {r.get('broker_us', float('nan')):6.1f}"
                          f"{'  errors ' + str(r['errors']) if r['errors'] else ''}", flush=True)
    results = {cell: median_report(rs) for cell, rs in runs.items()}
    memory["load16_mib"] = peak[0]

    big = {}
    if not opts.quick:
        for system in [s for s in ["floor", "fjord->fjord", "oslo->fjord", "fjord->python"] if s in systems]:
            r = load(command(system, 16, 200, 65536), f"{system} 64KB", servers[SERVER_OF[system]], broker)
            big[system] = r
            print(f"  {system:15} 64KB   c=16  {r['calls']} calls, {r['errors']} errors, "
                  f"{r['calls_per_s']:.0f}/s", flush=True)
    memory["after_mib"] = rss_mib(host.pid)
    stop_all()
    write_report(opts, results, systems, sizes, callers, startup, memory, big, load_at_start, broker)
    keyvalue_bench(opts, work, env, run, broker)
    chain_bench(opts, work, env, run, broker)
    shutil.rmtree(work, ignore_errors=True)


def keyvalue_bench(opts, work, env, run, broker):
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
                runs = [load(cmd, f"{method} {store} c={c}", proc.pid, broker) for _ in range(opts.repeat)]
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
    write_rows(opts, "keyvalue", "fjord keyvalue benchmark (counter increment beside add)", lines, goals, rows)


def write_rows(opts, suffix, title, lines, goals, rows):
    """Prints a table of rows and its goals and writes them to OUT-suffix.md and OUT-suffix.json."""
    goal_lines = ["| measure | value | goal | met |", "|---|---|---|---|"]
    goal_lines += [f"| {name} | {value:.2f} | {goal} | {'yes' if ok else 'NO'} |" for name, value, goal, ok in goals]
    text = (f"# {title}\n\n" + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            + f", load average {os.getloadavg()[0]:.2f}\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(goal_lines) + "\n")
    print("\n" + text)
    with open(f"{opts.out}-{suffix}.md", "w") as f:
        f.write(text)
    with open(f"{opts.out}-{suffix}.json", "w") as f:
        json.dump({"rows": rows, "goals": [dict(name=n, value=v, goal=g, met=ok) for n, v, g, ok in goals]}, f,
                  indent=1)


def chain_bench(opts, work, env, run, broker):
    """Issue 10: a two-hop chain, client -> endpoint A -> endpoint B, where A is a client too. fjord:
    one fjord-host serving the `relay` test component (A, whose `forward` calls B through
    fjord:endpoint/rpc) and the calculator (B). Python: two oslo.messaging servers, A's `relay`
    namespace forwarding to B's `add` through its own RPC client. Beside them the single hop
    (client -> B) of each. The same load generator (`fjord bench`) drives all four, at 1 and 16
    callers, interleaved. Server CPU per call is the sum over the chain's server processes.
    Writes OUT-chain.md and OUT-chain.json."""
    fjord = os.path.join(RELEASE, "fjord")
    relay, calculator = (os.path.join(GUESTS, w + ".wasm") for w in ("relay", "calculator"))
    a, b = f"{run}_chain_a", f"{run}_chain_b"
    cfg = os.path.join(work, "chain.toml")
    with open(cfg, "w") as f:
        f.write(f'transport_url = "{URL}"\n'
                f'[[server]]\ntopic = "{a}"\nserver = "bench"\n'
                f'endpoints = [{{ path = "{relay}", calls = ["{b}"] }}]\n'
                f'[[server]]\ntopic = "{b}"\nserver = "bench"\nendpoints = ["{calculator}"]\n')
    host, _ = start([os.path.join(RELEASE, "fjord-host"), "--config", cfg], "fjord-host ready", env=env)
    pa, pb = f"{run}_pychain_a", f"{run}_pychain_b"
    server_py = os.path.join(ROOT, "interop", "oslo_server.py")
    py_a, _ = start([PYTHON, server_py, URL, pa, "bench"], "ready")
    py_b, _ = start([PYTHON, server_py, URL, pb, "bench"], "ready")
    add = ["add", "a=2", "b=3"]

    def forward(to):
        hop = json.dumps({"topic": to, "fanout": False})
        return ["forward", f"to={hop}", "method=add", "args=" + json.dumps(json.dumps({"a": 2, "b": 3}))]

    # (name, topic, namespace, method and args, server processes whose CPU counts)
    rows_of = [
        ("fjord single hop", b, None, add, [host.pid]),
        ("fjord chain", a, None, forward(b), [host.pid]),
        ("Python single hop", pb, None, add, [py_b.pid]),
        ("Python chain", pa, "relay", forward(pb), [py_a.pid, py_b.pid]),
    ]
    rows = []
    for c in [1, 16]:
        for name, topic, namespace, call, pids in rows_of:
            python = name.startswith("Python")
            n = max(int(((500 if c == 1 else 2000) if python else (2000 if c == 1 else 6000)) * opts.scale), c)
            cmd = ([fjord, "bench", "--url", URL, "--topic", topic, "--concurrency", str(c), "--calls", str(n)]
                   + (["--namespace", namespace] if namespace else []) + call)
            runs = []
            for _ in range(opts.repeat):
                before = [cpu_seconds(p) for p in pids]
                r = load(cmd, f"{name} c={c}", pids[0], broker)
                after = [cpu_seconds(p) for p in pids]
                if all(before) and all(after):
                    spent = sum(sum(x) - sum(y) for x, y in zip(after, before))
                    r["server_us"] = round(spent * 1e6 / (max(r["calls"], 1) + 1), 1)
                runs.append(r)
            r = sorted(runs, key=lambda r: r["calls_per_s"])[len(runs) // 2]
            rows.append(dict(system=name, callers=c, **r))
            print(f"  {name:17} c={c:<3} {r['calls_per_s']:>8.0f}/s p50 {r['p50_ms']:7.3f} ms "
                  f"p99 {r['p99_ms']:7.3f} ms  servers {r.get('server_us', float('nan')):7.1f} us/call"
                  f"{'  errors ' + str(r['errors']) if r['errors'] else ''}", flush=True)
    for proc in (host, py_a, py_b):
        stop(proc)

    def row(name, c):
        return next(r for r in rows if (r["system"], r["callers"]) == (name, c))

    lines = ["| system | callers | calls/s | p50 ms | p99 ms | servers' CPU us/call | errors |",
             "|---|---|---|---|---|---|---|"]
    for c in [1, 16]:
        for name, *_ in rows_of:
            r = row(name, c)
            lines.append(f"| {name} | {c} | {r['calls_per_s']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                         f"{fmt(r.get('server_us'), 1)} | {r['errors']} |")
    speed = row("fjord chain", 16)["calls_per_s"] / max(row("Python chain", 16)["calls_per_s"], 1e-9)
    goals = [("fjord chain / Python chain calls/s, 16 callers", speed, ">= 5", speed >= 5)]
    for c in [1, 16]:
        p50 = row("fjord chain", c)["p50_ms"] / max(row("fjord single hop", c)["p50_ms"], 1e-9)
        goals.append((f"fjord chain p50 / fjord single hop p50, {c} callers", p50, "<= 2.2", p50 <= 2.2))
    write_rows(opts, "chain", "fjord chain benchmark (client -> endpoint A -> endpoint B)", lines, goals, rows)


def fmt(v, digits=0):
    return "-" if v is None else f"{v:.{digits}f}"


def write_report(opts, results, systems, sizes, callers, startup, memory, big, load_at_start, broker):
    size_names = [n for n, _ in sizes]
    lines = ["| system | size | callers | calls/s | p50 ms | p99 ms | server us/call | client us/call "
             "| broker us/call | errors |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    cpu_lines = ["| system | size | callers | server process | server us/call (sys) | client process "
                 "| client us/call (sys) | client process incl. start-up | broker us/call |",
                 "|---|---|---|---|---|---|---|---|---|"]
    for size_name in size_names:
        for system in systems:
            for c in callers:
                r = results.get((system, c, size_name))
                if not r:
                    continue
                lines.append(f"| {system} | {size_name} | {c} | {r['calls_per_s']:.0f} | {r['p50_ms']:.3f} | "
                             f"{r['p99_ms']:.3f} | {fmt(r.get('server_us'))} | {fmt(r.get('client_us'))} | "
                             f"{fmt(r.get('broker_us'))} | {r['errors']} |")
                cpu_lines.append(
                    f"| {system} | {size_name} | {c} | {SERVER_OF[system]} | {fmt(r.get('server_us'), 1)} "
                    f"({fmt(r.get('server_sys_us'), 1)}) | {CLIENT_OF[system]} | {fmt(r.get('client_us'), 1)} "
                    f"({fmt(r.get('client_sys_us'), 1)}) | {fmt(r.get('client_process_us'), 1)} | "
                    f"{fmt(r.get('broker_us'), 1)} |")

    def ratio(a, b, key="calls_per_s"):
        if a and b and a.get(key) is not None and b.get(key):
            return a[key] / b[key]
        return float("nan")

    goals = []
    for size_name in size_names:
        g = lambda s, c: results.get((s, c, size_name))  # noqa: E731
        for c in callers:
            v = ratio(g("fjord->fjord", c), g("floor", c))
            goals.append((f"fjord/floor calls/s, {c} caller(s), {size_name}", v, ">= 0.9", v >= 0.9))
        if 16 in callers:
            v = ratio(g("fjord->fjord", 16), g("floor", 16), "p99_ms")
            goals.append((f"fjord p99 / floor p99, 16 callers, {size_name}", v, "<= 1.3", v <= 1.3))
            v = ratio(g("fjord->fjord", 16), g("floor", 16), "server_us")
            goals.append((f"fjord-host / floor-server CPU per call, 16 callers, {size_name}", v, "<= 1.2",
                          v <= 1.2))
            v = ratio(g("fjord->python", 16), g("fjord->fjord", 16), "server_us")
            goals.append((f"Python oslo server / fjord-host CPU per call, 16 callers, {size_name}", v, ">= 20",
                          v >= 20))
            v = ratio(g("fjord->fjord", 16), g("floor", 16), "client_us")
            goals.append((f"fjord bench / floor-client CPU per call, 16 callers, {size_name}", v, "<= 1.2",
                          v <= 1.2))
            v = ratio(g("fjord->fjord", 16), g("bare-floor", 16))
            goals.append((f"fjord/bare floor calls/s, 16 callers, {size_name} (info)", v, "(info)", True))
        for c in callers:
            v = ratio(g("oslo->fjord", c), g("python->python", c))
            goals.append((f"oslo->fjord / oslo->python calls/s, {c} caller(s), {size_name}", v, ">= 1", v >= 1))
    if startup:
        goals.append(("fjord-host start to consuming, 3 endpoints, cached (ms)", startup["cached_ms"] * 1e3,
                      "<= 300", startup["cached_ms"] * 1e3 <= 300))
        goals.append(("fjord-host start to consuming, 3 endpoints, uncached (ms)", startup["uncached_ms"] * 1e3,
                      "(info)", True))
        goals.append(("fjord-host RSS idle, 3 endpoints (MiB)", memory["idle_mib"], "<= 64",
                      memory["idle_mib"] <= 64))
        if memory["load16_mib"]:
            goals.append(("fjord-host RSS peak under 16 callers (MiB)", memory["load16_mib"], "<= 128",
                          memory["load16_mib"] <= 128))
    for system, r in big.items():
        goals.append((f"64 KB requests complete, {system}", r["calls"] - r["errors"], f"== {r['calls']}",
                      r["errors"] == 0))
    goal_lines = ["| measure | value | goal | met |", "|---|---|---|---|"]
    goal_lines += [f"| {name} | {value:.2f} | {goal} | {'yes' if ok else 'NO'} |" for name, value, goal, ok in goals]

    load_now = os.getloadavg()
    text = ("# fjord benchmark\n\n" + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            + f", load average {load_at_start[0]:.2f} at start, {load_now[0]:.2f} at end; "
            + f"--repeat {opts.repeat} --scale {opts.scale}; broker pid {broker or 'not found'}\n\n"
            + "Every system of a cell runs before the next cell (interleaved); with --repeat N each metric "
            + "is the median of N sweeps. CPU per call: server and broker from /proc/PID/stat over each "
            + "run; the client's own getrusage over its timed calls. The broker is shared: its figure "
            + "includes whatever else used it meanwhile.\n\n"
            + "\n".join(lines) + "\n\n## CPU per call by process (us, user + system; system in brackets)\n\n"
            + "\n".join(cpu_lines) + "\n\n## Goals\n\n" + "\n".join(goal_lines) + "\n")
    print("\n" + text)
    out = opts.out
    with open(out + ".md", "w") as f:
        f.write(text)
    with open(out + ".json", "w") as f:
        json.dump({"results": [dict(system=s, callers=c, size=z, **r) for (s, c, z), r in results.items()],
                   "startup": startup, "memory": memory, "load_at_start": load_at_start, "load_at_end": load_now,
                   "goals": [dict(name=n, value=v, goal=g, met=ok) for n, v, g, ok in goals]}, f, indent=1)
    try:
        chart(out + ".png", results, systems, size_names, callers)
        cpu_chart(out + "-cpu.png", results, systems, size_names, callers)
        print(f"wrote {out}.md, {out}.json, {out}.png and {out}-cpu.png")
    except ImportError:
        print(f"wrote {out}.md and {out}.json (matplotlib missing: no charts)")


def chart(path, results, systems, size_names, callers):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(size_names), figsize=(5.5 * len(size_names), 4.5), sharey=True,
                             squeeze=False)
    labels = dict(SYSTEMS)
    for ax, size_name in zip(axes[0], size_names):
        for system in systems:
            ys = [results.get((system, c, size_name), {}).get("calls_per_s", 0) for c in callers]
            ax.plot(callers, ys, marker="o", label=labels[system])
        ax.set_xscale("log", base=2)
        ax.set_xticks(callers, [str(c) for c in callers])
        ax.set_xlabel("callers in flight")
        ax.set_title(f"add, {'small' if size_name == 'small' else '2.5 KB'} requests")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("calls/s")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def cpu_chart(path, results, systems, size_names, callers):
    """CPU per call of the server, client and broker processes of each system, at 16 callers (or
    the middle caller count), log scale: Python's processes cost tens of times what Rust's do."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    c = 16 if 16 in callers else callers[len(callers) // 2]
    fig, axes = plt.subplots(1, len(size_names), figsize=(6 * len(size_names), 4.8), sharey=True, squeeze=False)
    parts = [("server_us", "server process"), ("client_us", "client process"), ("broker_us", "broker (beam.smp)")]
    width = 0.27
    for ax, size_name in zip(axes[0], size_names):
        for i, (key, label) in enumerate(parts):
            xs = [j + (i - 1) * width for j in range(len(systems))]
            ys = [results.get((s, c, size_name), {}).get(key) or 0 for s in systems]
            ax.bar(xs, ys, width, label=label)
        ax.set_xticks(range(len(systems)), systems, rotation=25, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"CPU per call, {c} callers, {'small' if size_name == 'small' else '2.5 KB'} requests")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].set_ylabel("CPU us per call (user + system)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    finally:
        stop_all()
