"""`python -m bertcli.neighbours CORPUS QUERIES`: exact cosine nearest neighbours (see `bertcli.tasks.embedding.neighbours`)."""

import sys

from bertcli.tasks.embedding.neighbours import main

if __name__ == "__main__":
    sys.exit(main())
