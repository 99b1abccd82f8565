"""``python -m lwspy``: the ``lwspy`` console script (``python -m lwspy demo``)."""

import sys

from lwspy.cli import main

sys.exit(main())
