"""The shared service behaviour, run against the hap service."""

from chorus_common.testing.behaviour import ServiceBehaviour
from chorus_hap import HapService


class TestHapBehaviour(ServiceBehaviour):
    service_class = HapService
