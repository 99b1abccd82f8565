"""The library's logger; see :mod:`lwspy._log` (``logging`` is imported only when needed)."""

from __future__ import annotations

from lwspy._log import DEBUG, INFO, WARNING, log

__all__ = ["DEBUG", "INFO", "WARNING", "log"]
