"""The shared service behaviour, run against the licensing service."""

from chorus_common.testing.behaviour import ServiceBehaviour
from chorus_licensing import LicensingService


class TestLicensingBehaviour(ServiceBehaviour):
    service_class = LicensingService
