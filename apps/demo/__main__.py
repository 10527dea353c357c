"""``python -m apps.demo``: the same as the ``collage-demo`` command."""

import sys

from apps.demo.app import main

if __name__ == "__main__":
  sys.exit(main())
