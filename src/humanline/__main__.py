"""`python -m humanline` runs the command line."""

import sys

from humanline.cli import main

sys.exit(main())
