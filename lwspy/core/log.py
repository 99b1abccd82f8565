"""The library's logger; callers guard costly arguments with ``isEnabledFor``."""

from __future__ import annotations

import logging

log = logging.getLogger("lwspy")
DEBUG = logging.DEBUG
