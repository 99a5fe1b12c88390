"""``python -m pyro_vaes``: the command line (see :mod:`pyro_vaes.app.cli`)."""

import sys

from pyro_vaes.app.cli import main

sys.exit(main())
