"""The shared service behaviour, run against the dht service."""

from chorus_common.testing.behaviour import ServiceBehaviour
from chorus_dht import DhtService


class TestDhtBehaviour(ServiceBehaviour):
    service_class = DhtService
    #: one node alone: R = 1 (the default R = 3 with W = 2 would refuse every write)
    settings_overrides = {"dht_replication": 1}
