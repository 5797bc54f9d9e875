"""`python -m chorus_election`: run the election service from CHORUS_* settings."""

from chorus_common.service import main
from chorus_election.service import ElectionService

if __name__ == "__main__":
    main(ElectionService)
