#!/usr/bin/env python3
"""Writes the seed corpora: message bodies captured from the real oslo.messaging 18.3.1
(oslo/tests/vectors) for `envelope`, and the values of host/tests/all/convert.rs plus the
captured keyword arguments for `convert`. Run once before the first fuzzing run; the fuzzer's
minimized corpus (corpus/<target>) is what is kept."""
import hashlib, json, os, sys

here = os.path.dirname(os.path.abspath(__file__))
vectors = os.path.join(here, "..", "oslo", "tests", "vectors")


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


requests = json.load(open(os.path.join(vectors, "oslo-18.3.1-requests.json")))
replies = json.load(open(os.path.join(vectors, "oslo-18.3.1-replies.json")))
for m in requests["messages"] + replies["replies"]:
    write("envelope", m["body"])
    inner = json.loads(json.loads(m["body"])["oslo.message"])
    write("envelope", json.dumps(inner))  # oslo 1.0: no envelope
    if "args" in inner:
        write("convert", json.dumps(inner["args"]))
for req in replies["requests_sent"].values():
    write("envelope", json.dumps(req))
    write("convert", json.dumps(req["args"]))

values = [
    True, -128, 255, 4294967295, -9223372036854775808, 18446744073709551615, 1.5, -0.25, 2.0,
    "é", "hello, world", "", [1, 2, 3], [], [["a"], [], ["b", "c"]], ["x", 7],
    {"host_name": "h", "port": 80, "tags": ["a"], "weight": 0.5},
    {"host_name": "h", "port": 80, "tags": []}, None, "x", "dark_green", "dark-green",
    {"circle": 1.5}, "unit_point", {"unit_point": None}, ["read", "exec_all"],
    {"ok": "fine"}, {"err": 3},
]
for v in values:
    write("convert", json.dumps(v))
    write("convert", json.dumps({"v": v}))
write("convert", json.dumps({"first_name": "Ada", "last_name": "Lovelace", "age": 36}))
write("convert", json.dumps({"first_name": "Ada", "last_name": "Lovelace"}))
