"""``python -m nnmpc.host.cli``: the ``nnmpc`` command."""

import sys

from . import main

sys.exit(main())
