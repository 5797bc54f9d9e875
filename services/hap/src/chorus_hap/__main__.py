"""`python -m chorus_hap`: run the hap service from CHORUS_* settings."""

from chorus_common.service import main
from chorus_hap.service import HapService

if __name__ == "__main__":
    main(HapService)
