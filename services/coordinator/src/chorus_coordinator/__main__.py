"""`python -m chorus_coordinator`: run the coordinator service from CHORUS_* settings."""

from chorus_common.service import main
from chorus_coordinator.service import CoordinatorService

if __name__ == "__main__":
    main(CoordinatorService)
