"""``python -m delgrad.tools``: the ``delgrad`` command without the console script."""

import sys

from delgrad.tools._cli import main

if __name__ == "__main__":
    sys.exit(main())
