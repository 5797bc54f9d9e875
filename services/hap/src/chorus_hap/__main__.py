"""`python -m chorus_hap`: the web service, or the terminal UI when CHORUS_HAP_MODE=terminal."""

import os
import sys

from chorus_common.service import main
from chorus_hap.service import HapService

if __name__ == "__main__":
    if os.environ.get("CHORUS_HAP_MODE", "web") == "terminal":
        from chorus_hap.tui import main as terminal

        sys.exit(terminal(sys.argv[1:]))
    main(HapService)
