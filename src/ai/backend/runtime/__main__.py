"""``python -m ai.backend.runtime --handler pkg.mod:attr --socket PATH`` (stdlib only)."""

import sys

from ai.backend.runtime.entry import main

if __name__ == "__main__":
    sys.exit(main())
