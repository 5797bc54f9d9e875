"""The shared service behaviour, run against the coordinator service."""

from chorus_common.testing.behaviour import ServiceBehaviour
from chorus_coordinator import CoordinatorService


class TestCoordinatorBehaviour(ServiceBehaviour):
    service_class = CoordinatorService
