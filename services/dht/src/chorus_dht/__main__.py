"""`python -m chorus_dht`: run the dht service from CHORUS_* settings."""

from chorus_common.service import main
from chorus_dht.service import DhtService

if __name__ == "__main__":
    main(DhtService)
