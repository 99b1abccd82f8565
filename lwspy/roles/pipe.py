"""The pipe role: the loop's own wake fd (lws ``roles/pipe``), read to clear a wake-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwspy.core.role import InternalRole

if TYPE_CHECKING:
    from lwspy.core.wsi import Wsi

__all__ = ["PIPE", "PipeRole"]


class PipeRole(InternalRole):
    """Drains the eventfd (or pipe) and lets the context see why it was woken."""

    name = "pipe"

    def on_readable(self, wsi: Wsi) -> None:
        wsi.ctx.pt.drain_wake()
        wsi.ctx._woken()

    def close_fd(self, wsi: Wsi) -> None:
        pass  # the pt owns the wake fd and closes it last


PIPE = PipeRole()
