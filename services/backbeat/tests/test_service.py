"""The shared service behaviour, run against the backbeat service."""

from chorus_backbeat import BackbeatService
from chorus_common.testing.behaviour import ServiceBehaviour


class TestBackbeatBehaviour(ServiceBehaviour):
    service_class = BackbeatService
