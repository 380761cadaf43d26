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

# delivery: the first byte picks the AMQP properties (0: oslo's, 1: none, 2: JSON with a charset,
# 3: text/plain), the rest is the body; calls of the types component, and every attack of issue 9.
def enveloped(inner):
    return json.dumps({"oslo.version": "2.0", "oslo.message": inner})


def call(method, args, **fields):
    m = {"method": method, "args": args, "_msg_id": "m1", "_reply_q": "reply_q1",
         "_timeout": None, "_unique_id": "u1", "_context_request_id": "req-1"}
    for k, v in fields.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    return m


def delivery(body, selector=0):
    write("delivery", bytes([selector]) + (body.encode() if isinstance(body, str) else body))


for m in requests["messages"]:
    delivery(m["body"])
for method, args in [
    ("echo_u8", {"v": 7}), ("echo_list", {"v": [1, 2, 3]}), ("echo_string", {"v": "é"}),
    ("echo_record", {"v": {"host_name": "h", "port": 80, "tags": ["a"], "weight": 0.5}}),
    ("echo_nested", {"v": [["a"], []]}), ("echo_variant", {"v": {"circle": 1.5}}),
    ("many_args", {"first_name": "Ada", "last_name": "Lovelace"}), ("nothing", {}),
    ("echo_u8", {"v": 256}), ("echo_u8", {"w": 1}), ("no_such", {}), ("_private", {}),
]:
    delivery(enveloped(json.dumps(call(method, args))))
    delivery(json.dumps(call(method, args)))  # oslo 1.0: no envelope
    delivery(enveloped(json.dumps(call(method, args, _msg_id=None, _reply_q=None))))  # a cast
base = call("echo_u8", {"v": 1})
for field, value in [
    ("_reply_q", "q" * 300), ("_reply_q", "q" * 255), ("_reply_q", ""), ("_reply_q", 5),
    ("_reply_q", None), ("_msg_id", "m" * 300), ("_msg_id", ""), ("_msg_id", 5),
    ("_unique_id", "u" * 300), ("_timeout", 1e20), ("_timeout", -5), ("_timeout", "soon"),
    ("_timeout", 1e308), ("_timeout", 4), ("_timeout", True), ("version", "1.x"),
    ("version", "2.0"), ("namespace", "nowhere"), ("method", 5), ("args", [1]),
]:
    delivery(enveloped(json.dumps({**base, field: value})))
delivery(enveloped(json.dumps(base).replace('"_timeout": null', '"_timeout": 1e400')))
delivery(enveloped(json.dumps(call("echo_string", {"v": "x" * 5000}))))          # over 4 KiB
delivery(enveloped(json.dumps(call("echo_list", {"v": [0] * 200}))))              # too many values
deep = "[" * 200 + '"s"' + "]" * 200
delivery(enveloped(json.dumps(base).replace('{"v": 1}', '{"v": ' + deep + "}")))  # too deep
delivery(enveloped(json.dumps(base)), 1)
delivery(enveloped(json.dumps(base)), 2)
delivery(enveloped(json.dumps(base)), 3)
for garbage in ["not json", "", "[1,2]", '{"oslo.version": "3.0", "oslo.message": "{}"}',
                '{"oslo.version": "2.0", "oslo.message": "{\\"_msg_id\\": \\"m\\", \\"_reply_q\\": \\"q\\", "}',
                '{"oslo.version": "2.0", "oslo.message": 5}', "[" * 300]:
    delivery(garbage)
