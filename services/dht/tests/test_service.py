"""The shared service behaviour, run against the dht service."""

from chorus_common.testing.behaviour import ServiceBehaviour
from chorus_dht import DhtService


class TestDhtBehaviour(ServiceBehaviour):
    service_class = DhtService
