"""`python -m chorus_gateway`: run the pubsub-gateway service from CHORUS_* settings."""

from chorus_common.service import main
from chorus_gateway.service import GatewayService

if __name__ == "__main__":
    main(GatewayService)
