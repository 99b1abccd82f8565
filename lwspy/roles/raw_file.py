"""The raw file role: an adopted pollable fd: pipe, tty, char device (lws ``roles/raw-file``)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from typing import TYPE_CHECKING

from lwspy.core.protocol import Reason
from lwspy.core.role import RX_CHUNK, RoleOps

if TYPE_CHECKING:
    from lwspy.core.wsi import Wsi

__all__ = ["RAW_FILE", "RawFileRole", "byte_stream"]


class RawFileRole(RoleOps):
    """Reads become RAW_RX_FILE; end of file closes the wsi with "end of file"."""

    name = "raw_file"
    rx_reason = Reason.RAW_RX_FILE
    writeable_reason = Reason.RAW_WRITEABLE_FILE
    close_reason = Reason.RAW_CLOSE_FILE
    adopt_reason = Reason.RAW_ADOPT_FILE

    def on_readable(self, wsi: Wsi) -> None:
        if not wsi._rx_on:  # closed (flushing) by an earlier callback of this pass
            return
        try:
            data = os.read(wsi.fd, RX_CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == errno.EBADF and _write_only(wsi.fd):
                # The write end of a pipe polls as an error once its reader has gone.
                wsi._close_now("peer closed")
            else:
                wsi._fail_io(e)
            return
        if data:
            wsi._call(Reason.RAW_RX_FILE, data)
        else:
            wsi._rx_on = False
            wsi.close("end of file")

    def send(self, wsi: Wsi, data: bytes | bytearray | memoryview) -> int:
        return os.write(wsi.fd, data)

    def close_fd(self, wsi: Wsi) -> None:
        with contextlib.suppress(OSError):  # already closed behind our back
            os.close(wsi.fd)


def byte_stream(fd: int, mode: int) -> bool:
    """True when ``fd`` (of ``st_mode`` ``mode``) carries bytes, not messages.

    A pipe (unless in packet mode, ``O_DIRECT``), a stream socket and a tty are byte
    streams; a datagram or seqpacket socket, a packet-mode pipe and any other character
    device (a tun device takes one packet per write) are not: their buffered writes must
    stay apart.
    """
    if stat.S_ISFIFO(mode):
        import fcntl  # adopt_file only: `import lwspy` stays cheap

        return not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
    if stat.S_ISSOCK(mode):
        sock = socket.socket(fileno=fd)  # reads the socket's own type
        try:
            return sock.type == socket.SOCK_STREAM
        finally:
            sock.detach()
    return os.isatty(fd)


def _write_only(fd: int) -> bool:
    import fcntl  # only on this error path: `import lwspy` stays cheap

    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
    except OSError:
        return False


RAW_FILE = RawFileRole()
