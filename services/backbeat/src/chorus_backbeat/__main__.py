"""`python -m chorus_backbeat`: run the backbeat service from CHORUS_* settings."""

from chorus_common.service import main

from chorus_backbeat.service import BackbeatService

if __name__ == "__main__":
    main(BackbeatService)
