"""The shared service behaviour, run against the election service."""

from chorus_common.testing.behaviour import ServiceBehaviour
from chorus_election import ElectionService


class TestElectionBehaviour(ServiceBehaviour):
    service_class = ElectionService
