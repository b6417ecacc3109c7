"""`python -m service.cli …`: the same as the `ledger` command."""

import sys

from service.cli import main

sys.exit(main())
