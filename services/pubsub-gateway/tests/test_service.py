"""The shared service behaviour, run against the pubsub-gateway service."""

from chorus_common.testing.behaviour import ServiceBehaviour
from chorus_gateway import GatewayService


class TestGatewayBehaviour(ServiceBehaviour):
    service_class = GatewayService
