"""`python -m radius_op25b` is the `op25b` command."""

import sys

from radius_op25b.cli import main

sys.exit(main())
