"""The scheduler half of the nova example in Python: ``wit/scheduler/scheduler.wit``
(fjord:scheduler@4.5.0), the same answers as the Rust ``endpoints/scheduler``.

An endpoint that is a client too: ``select_destinations`` asks each compute node of
``COMPUTE_HOSTS`` (the endpoint's env, comma-separated; ``COMPUTE_TOPIC`` if the topic is not
``compute``) for its free RAM, picks the one with the most that fits, casts
``build_and_run_instance`` to it and returns it, or raises ``nova.exception.NoValidHost``.
The host's config must grant the calls: ``calls = ["compute.*"]``.
Build: ``scripts/build-python scheduler-py``.
"""

import logging
import os

from fjord_guest import RemoteError, endpoint
from fjord_guest.rpc import CallError, Client, Target
from wit_world.exports.scheduler import Destination

LOG = logging.getLogger(__name__)

# How long one compute node may take to say what it has free: a node that is down must not
# take the whole deadline.
ASK_TIMEOUT = 2.0


@endpoint
class Scheduler:
    """nova-scheduler, reduced to what the example needs."""

    def select_destinations(self, ctx, spec):
        if not spec.name or spec.ram_mb == 0:
            raise RemoteError.builtin("ValueError", "the request spec needs a name and ram_mb > 0")
        hosts = os.environ.get("COMPUTE_HOSTS", "")
        compute = Client(Target(topic=os.environ.get("COMPUTE_TOPIC", "compute")))
        best = None
        for host in (h.strip() for h in hosts.split(",")):
            if not host:
                continue
            try:
                free = compute.prepare(server=host, version="5.0", timeout=ASK_TIMEOUT).call(
                    "free_resources")
            except CallError as e:
                LOG.warning("compute %s did not answer: %s", host, e)
                continue
            if free["free_ram_mb"] >= spec.ram_mb and (
                    best is None or free["free_ram_mb"] > best["free_ram_mb"]):
                best = free
        if best is None:
            raise RemoteError(
                "nova.exception", "NoValidHost",
                f"No valid host was found. No compute node of [{hosts}] has {spec.ram_mb} MB free")
        compute.prepare(server=best["host"], version="5.0").cast(
            "build_and_run_instance", instance={"name": spec.name, "ram_mb": spec.ram_mb})
        LOG.info("%s goes to %s", spec.name, best["host"])
        return Destination(host=best["host"], free_ram_mb=best["free_ram_mb"])
