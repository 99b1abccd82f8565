"""The library's logger ("lwspy"), with the ``logging`` import put off until needed.

``import lwspy`` must stay cheap, and ``logging`` costs about half of it. Until the
application imports ``logging`` itself nobody can have set a level or a handler, so a
debug or info record could only be dropped: those calls return at once. Warnings and
errors import ``logging`` and go through it (its last-resort handler prints them).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

__all__ = ["DEBUG", "INFO", "WARNING", "log"]

DEBUG = 10
INFO = 20
WARNING = 30


class _Log:
    """The subset of ``logging.Logger`` the library uses, bound to the "lwspy" logger."""

    __slots__ = ("_logger",)

    def __init__(self) -> None:
        self._logger: logging.Logger | None = None

    def _real(self, needed: bool) -> logging.Logger | None:
        logger = self._logger
        if logger is None:
            if not needed and "logging" not in sys.modules:
                return None
            import logging

            logger = self._logger = logging.getLogger("lwspy")
        return logger

    def isEnabledFor(self, level: int) -> bool:
        """As ``logging.Logger.isEnabledFor``."""
        logger = self._logger
        if logger is None:  # the common case asks no more than this
            logger = self._real(level >= WARNING)
            if logger is None:
                return False
        return logger.isEnabledFor(level)

    def debug(self, msg: str, *args: object, **kwargs: Any) -> None:
        """Log at DEBUG, if anyone could be listening."""
        logger = self._real(False)
        if logger is not None:
            logger.debug(msg, *args, **kwargs)

    def info(self, msg: str, *args: object, **kwargs: Any) -> None:
        """Log at INFO, if anyone could be listening."""
        logger = self._real(False)
        if logger is not None:
            logger.info(msg, *args, **kwargs)

    def warning(self, msg: str, *args: object, **kwargs: Any) -> None:
        """Log at WARNING."""
        logger = self._real(True)
        assert logger is not None
        logger.warning(msg, *args, **kwargs)

    def error(self, msg: str, *args: object, **kwargs: Any) -> None:
        """Log at ERROR."""
        logger = self._real(True)
        assert logger is not None
        logger.error(msg, *args, **kwargs)

    def exception(self, msg: str, *args: object, **kwargs: Any) -> None:
        """Log at ERROR with the current exception's traceback."""
        logger = self._real(True)
        assert logger is not None
        logger.exception(msg, *args, **kwargs)


log = _Log()
