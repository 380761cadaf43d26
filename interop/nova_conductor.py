"""A Python nova-conductor-like caller: the real oslo.messaging client calling
select_destinations on a scheduler, as nova's conductor does
(client.prepare(version=...).call(ctxt, 'select_destinations', **kw)).

Usage: nova_conductor.py URL SCHEDULER_TOPIC < cases

Each stdin line is a JSON case {"id", "spec", "exmods": bool}; each answer is one
JSON line {"id", "result"} or {"id", "class", "module", "message", "exc_type",
"raised"}: "raised" is the class Python raised; "class" and "module" the class it
is an instance of (oslo raises an allowed remote class as a subclass named
`<class>_Remote` in module `<module>_Remote`).
With "exmods" the transport has allowed_remote_exmods=["nova.exception"], so a
remote NoValidHost is raised as nova.exception.NoValidHost (this directory's
stand-in for nova's module); without it, as oslo_messaging.RemoteError.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from oslo_config import cfg
import oslo_messaging

import nova.exception


def main():
    url, topic = sys.argv[1], sys.argv[2]
    cfg.CONF([], project="fjord-interop")
    clients = {}
    for exmods in (False, True):
        transport = oslo_messaging.get_rpc_transport(
            cfg.CONF, url=url,
            allowed_remote_exmods=["nova.exception"] if exmods else [])
        clients[exmods] = oslo_messaging.RPCClient(
            transport, oslo_messaging.Target(topic=topic), timeout=30)
    for line in sys.stdin:
        case = json.loads(line)
        client = clients[bool(case.get("exmods"))].prepare(version="4.0")
        ctxt = {"request_id": "req-" + case["id"], "user_id": "conductor"}
        try:
            result = client.call(ctxt, "select_destinations", spec=case["spec"])
            answer = {"id": case["id"], "result": result}
        except Exception as e:  # every outcome is reported, none ends the run
            raised = type(e)
            cls = raised.__mro__[1] if raised.__name__.endswith("_Remote") else raised
            answer = {"id": case["id"], "class": cls.__name__, "module": cls.__module__,
                      "message": str(e), "exc_type": getattr(e, "exc_type", None),
                      "raised": raised.__name__,
                      "is_novalidhost": isinstance(e, nova.exception.NoValidHost)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
