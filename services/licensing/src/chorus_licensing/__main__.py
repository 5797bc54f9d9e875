"""`python -m chorus_licensing`: run the licensing service from CHORUS_* settings."""

from chorus_common.service import main
from chorus_licensing.service import LicensingService

if __name__ == "__main__":
    main(LicensingService)
