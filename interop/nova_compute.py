"""A Python nova-compute-like oslo.messaging server: the same methods as fjord's
endpoints/compute (wit/compute/compute.wit), version 5.0.

Usage: nova_compute.py URL TOPIC HOST RAM_MB

Prints `ready`, then one JSON line per build_and_run_instance it receives.
"""
import json
import sys
import threading
import time

from oslo_config import cfg
import oslo_messaging


class ComputeEndpoint:
    target = oslo_messaging.Target(version="5.0")

    def __init__(self, host, ram_mb):
        self.host = host
        self.ram_mb = ram_mb
        self.used = 0
        self.instances = []
        self.lock = threading.Lock()

    def free_resources(self, ctxt):
        with self.lock:
            return {"host": self.host, "free_ram_mb": self.ram_mb - self.used}

    def build_and_run_instance(self, ctxt, instance):
        with self.lock:
            self.used += instance["ram_mb"]
            self.instances.append(instance["name"])
        sys.stdout.write(json.dumps({"built": instance, "ctxt": ctxt}) + "\n")
        sys.stdout.flush()

    def instances(self, ctxt):
        with self.lock:
            return list(self.instances)


def main():
    url, topic, host, ram = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cfg.CONF([], project="fjord-interop")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=url)
    server = oslo_messaging.get_rpc_server(
        transport, oslo_messaging.Target(topic=topic, server=host),
        [ComputeEndpoint(host, ram)], executor="threading")
    server.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()
        server.wait()


if __name__ == "__main__":
    main()
