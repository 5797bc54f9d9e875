"""`python -m chorus_backbeat`: run the backbeat service from CHORUS_* settings."""

from chorus_backbeat.service import BackbeatService
from chorus_common.service import main

if __name__ == "__main__":
    main(BackbeatService)
