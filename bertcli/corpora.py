"""`python -m bertcli.corpora NAME DIR`: the packaged real corpora as files (they live in `bertcli.data.corpora`)."""

import sys

from bertcli.data.corpora import main

if __name__ == "__main__":
    main(sys.argv[1:])
