"""The shared service behaviour, run against the licensing service with a valid license."""

from chorus_common.testing.behaviour import ServiceBehaviour
from chorus_licensing import LicensingService

from .conftest import BEHAVIOUR_LICENSE


class TestLicensingBehaviour(ServiceBehaviour):
    service_class = LicensingService
    settings_overrides = {
        "license_file": BEHAVIOUR_LICENSE.license_file,
        "license_issuer_key": str(BEHAVIOUR_LICENSE.issuer_public_key_file),
    }
    process_env = {
        "CHORUS_LICENSE_FILE": str(BEHAVIOUR_LICENSE.license_file),
        "CHORUS_LICENSE_ISSUER_KEY": str(BEHAVIOUR_LICENSE.issuer_public_key_file),
    }
