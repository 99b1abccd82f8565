"""The netlink role's dumps: their own socket, a timeout, retries, and the drain after
ENOBUFS; driven with a fake clock and fake socket errors. The kernel here is the host's
(read only: these tests change nothing in it)."""

from __future__ import annotations

import errno
import logging
import os
import socket
from typing import Any

import pytest

import lwspy.roles.netlink as netlink_mod
from lwspy import Context, SmdClass
from lwspy.core.wsi import WsiState
from lwspy.net.nlmsg import NLM_F_APPEND, NLM_F_DUMP_INTR, NLM_F_MULTI, DoneMsg, ErrorMsg, RouteMsg
from lwspy.roles.netlink import DUMP_TIMEOUT, Phase, RouteWatcher
from tests.conftest import FakeClock
from tests.helpers import open_fds
from tests.test_route import copy, gone, new, rt


def _watcher(ctx: Context) -> RouteWatcher:
    watcher = ctx._netlink
    assert watcher is not None
    return watcher


def _until_live(ctx: Context, passes: int = 500) -> None:
    watcher = _watcher(ctx)
    for _ in range(passes):
        if watcher.phase is Phase.LIVE:
            return
        ctx.service(5)
    raise AssertionError(f"still {watcher.phase}")


class FailingSock:
    """Stands in for a real socket whose reads fail as scripted (then it reads on)."""

    def __init__(self, real: socket.socket, errors: list[int]) -> None:
        self.real = real
        self.errors = errors

    def recv(self, n: int) -> bytes:
        if self.errors:
            code = self.errors.pop(0)
            if code == errno.EAGAIN:
                raise BlockingIOError(code, os.strerror(code))
            raise OSError(code, os.strerror(code))
        return self.real.recv(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_the_dump_runs_on_its_own_socket_which_closes_when_it_ends() -> None:
    before = open_fds()
    with Context(netlink=True) as ctx:
        watcher = _watcher(ctx)
        dump = watcher._dump
        assert dump is not None and dump.wsi is not None and dump.wsi is not watcher.wsi
        assert watcher.phase is Phase.DUMPING
        dump_wsi = dump.wsi
        _until_live(ctx)
        assert dump_wsi.state is WsiState.CLOSED and dump_wsi.fd not in ctx.pt.fds
        assert watcher.coldplug_done and len(watcher.table) > 0
        assert watcher.stats["dumps"] == 1
        # the selector, the wake fd, the event socket, the socket that asks about
        # lifetimes, the policy (rules) socket
        assert len(open_fds()) == len(before) + 5
    assert open_fds() == before


def test_destroy_while_a_dump_runs_releases_its_socket() -> None:
    before = open_fds()
    ctx = Context(netlink=True)
    assert _watcher(ctx).phase is Phase.DUMPING
    ctx.destroy()
    assert open_fds() == before


def test_a_dump_that_gets_no_answer_starts_again_on_a_new_socket(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with Context(netlink=True, clock=clock) as ctx:
        watcher = _watcher(ctx)
        assert watcher._dump is not None and watcher._dump.wsi is not None
        stuck = watcher._dump.wsi
        ctx.pt.set_events(stuck, 0)  # nothing is read: as if the kernel never answered
        ctx.service(0)
        clock.advance(DUMP_TIMEOUT - 0.1)
        ctx.service(0)
        assert watcher._dump.wsi is stuck and watcher.stats["dumps"] == 1
        with caplog.at_level(logging.WARNING, logger="lwspy"):
            clock.advance(0.2)
            ctx.service(0)
        assert "no dump answer" in caplog.text
        assert stuck.state is WsiState.CLOSED and watcher.stats["dumps"] == 2
        _until_live(ctx)
        assert watcher.coldplug_done and len(watcher.table) > 0


def test_a_dump_socket_that_cannot_be_opened_is_tried_again(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = netlink_mod.open_netlink
    refusals = [OSError(errno.EMFILE, "Too many open files")]

    def open_netlink(groups: int = netlink_mod.RTMGRP_SUBSCRIBE) -> socket.socket:
        if groups == 0 and refusals:
            raise refusals.pop()
        return real(groups)

    monkeypatch.setattr(netlink_mod, "open_netlink", open_netlink)
    with Context(netlink=True, clock=clock) as ctx:
        watcher = _watcher(ctx)
        assert watcher.phase is Phase.DUMPING and watcher._dump is not None
        assert watcher._dump.wsi is None
        watcher._send_dump_step()  # nothing to send on
        clock.advance(DUMP_TIMEOUT + 0.1)
        ctx.service(0)
        assert watcher._dump.wsi is not None
        _until_live(ctx)
        assert watcher.stats["dumps"] == 2 and len(watcher.table) > 0


def test_an_interrupted_dump_is_taken_again_and_replies_of_other_steps_are_ignored() -> None:
    with Context(netlink=True) as ctx:
        watcher = _watcher(ctx)
        dump = watcher._dump
        assert dump is not None and dump.wsi is not None
        stray = RouteMsg(24, NLM_F_MULTI, dump.seq + 1000, dump.pid, (rt("198.51.100.0/24"),))
        assert not watcher._dump_reply(dump, stray) and len(dump.routes) == 0
        done = DoneMsg(dump.seq, dump.pid, NLM_F_MULTI | NLM_F_DUMP_INTR, 0)
        assert watcher._dump_reply(dump, done)
        assert watcher._dump is not dump and watcher.stats["dumps"] == 2
        _until_live(ctx)
        assert len(watcher.table) > 0


def test_a_refused_dump_step_is_sent_again(clock: FakeClock) -> None:
    with Context(netlink=True, clock=clock) as ctx:
        watcher = _watcher(ctx)
        dump = watcher._dump
        assert dump is not None and dump.wsi is not None
        seq = dump.seq
        assert not watcher._dump_reply(dump, ErrorMsg(seq, dump.pid, errno.EBUSY))
        assert watcher._retry.scheduled
        clock.advance(netlink_mod.RETRY_DELAY)
        ctx.service(0)
        assert dump.seq != seq  # asked again
        _until_live(ctx)


def test_a_failed_dump_read_starts_the_dump_again(clock: FakeClock) -> None:
    with Context(netlink=True, clock=clock) as ctx:
        watcher = _watcher(ctx)
        dump = watcher._dump
        assert dump is not None and dump.wsi is not None and dump.wsi.sock is not None
        real = dump.wsi.sock
        dump.wsi.sock = FailingSock(real, [errno.EIO])  # type: ignore[assignment]
        ctx.service(0)
        assert dump.wsi is None and watcher.phase is Phase.DUMPING
        clock.advance(netlink_mod.RETRY_DELAY)
        ctx.service(0)
        assert watcher._dump is not dump
        _until_live(ctx)
        assert watcher.stats["dumps"] == 2


def test_enobufs_drains_the_event_socket_then_dumps_again_and_changes_nothing() -> None:
    seen: list[bytes] = []
    with Context(netlink=True) as ctx:
        ctx.smd.register(lambda c, ts, p: seen.append(p), SmdClass.NETWORK)
        watcher = _watcher(ctx)
        _until_live(ctx)
        routes = list(watcher.table)
        generation = watcher.table.generation
        real = watcher.sock
        # ENOBUFS, then what was queued before the loss (dropped), then more lost, then empty
        watcher.sock = FailingSock(real, [errno.ENOBUFS])  # type: ignore[assignment]
        watcher._queue.append(rt())  # type: ignore[arg-type]  # queued before: dropped too
        watcher.readable()
        assert watcher.phase is Phase.DUMPING and not watcher._queue
        assert watcher.stats["enobufs"] == 1
        watcher.sock = real
        _until_live(ctx)
        assert watcher.stats["resyncs"] == 1 and watcher.stats["dumps"] == 2
        assert watcher.table.generation == generation and list(watcher.table) == routes
        ctx.service(0)
        assert seen == []  # nothing changed: nothing announced


def test_the_drain_goes_on_through_more_losses_and_over_passes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with Context(netlink=True) as ctx:
        watcher = _watcher(ctx)
        _until_live(ctx)
        real = watcher.sock
        watcher.sock = FailingSock(real, [errno.ENOBUFS, errno.ENOBUFS])  # type: ignore[assignment]
        monkeypatch.setattr(netlink_mod, "DRAIN_READS_PER_PASS", 1)
        watcher.readable()  # ENOBUFS, then one read in the drain: a second ENOBUFS
        assert watcher.phase is Phase.DRAINING and watcher.stats["enobufs"] == 2
        watcher.sock = FailingSock(real, [errno.EIO])  # type: ignore[assignment]
        with caplog.at_level(logging.ERROR, logger="lwspy"):
            watcher.readable()
        assert "recv failed" in caplog.text and watcher.phase is Phase.DRAINING
        watcher.sock = real
        watcher.readable()  # empty at once: the dump starts
        assert watcher.phase is Phase.DUMPING
        _until_live(ctx)
        assert watcher.stats["resyncs"] == 1


def test_a_failed_event_read_is_said_and_the_role_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with Context(netlink=True) as ctx:
        watcher = _watcher(ctx)
        _until_live(ctx)
        real = watcher.sock
        watcher.sock = FailingSock(real, [errno.EIO])  # type: ignore[assignment]
        with caplog.at_level(logging.ERROR, logger="lwspy"):
            watcher.readable()
        assert "recv failed" in caplog.text and watcher.phase is Phase.LIVE
        watcher.sock = real


def test_events_queued_during_a_dump_are_applied_in_order_after_it_a_slice_a_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bytes] = []
    monkeypatch.setattr(netlink_mod, "REPLAY_SLICE", 1)
    monkeypatch.setattr(netlink_mod, "RESYNC_SLICE", 2)
    with Context(netlink=True) as ctx:
        ctx.smd.register(lambda c, ts, p: seen.append(p), SmdClass.NETWORK)
        watcher = _watcher(ctx)
        _until_live(ctx)
        real = watcher.sock
        watcher.sock = FailingSock(real, [errno.ENOBUFS])  # type: ignore[assignment]
        watcher.readable()
        watcher.sock = real
        assert watcher.phase is Phase.DUMPING
        # Events as the event socket would have queued them while the dump runs: a route
        # that comes and goes, and one that stays (synthetic: the kernel never had them).
        come_and_go, stays, later = rt("198.18.7.0/24"), rt("198.18.8.0/24"), rt("198.18.9.0/24")
        watcher._queue.extend([new(come_and_go), gone(come_and_go), new(stays)])
        phases = []
        for _ in range(500):
            phases.append(watcher.phase)
            if watcher.phase is Phase.SWAPPING and Phase.SWAPPING not in phases[:-1]:
                watcher._queue.append(new(later))  # came while the table is swapped
            if watcher.phase is Phase.LIVE:
                break
            ctx.service(5)
        # the dump's last pass replays the first event, each later pass one more
        assert phases.count(Phase.REPLAYING) == 2
        assert phases.count(Phase.SWAPPING) >= 2 and Phase.CATCHING_UP in phases
        table = watcher.table
        assert not any(r.dst == "198.18.7.0" for r in table)  # came, then went
        assert table.lookup("198.18.8.1") is stays and table.lookup("198.18.9.1") is later
        ctx.service(0)
        assert b'{"rt":"add"}' in seen


def test_a_live_table_changed_during_the_swap_is_compared_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(netlink_mod, "RESYNC_SLICE", 2)
    with Context(netlink=True) as ctx:
        watcher = _watcher(ctx)
        _until_live(ctx)
        before = len(watcher.table)
        real = watcher.sock
        watcher.sock = FailingSock(real, [errno.ENOBUFS])  # type: ignore[assignment]
        watcher.readable()
        watcher.sock = real
        for _ in range(500):
            if watcher.phase is Phase.SWAPPING:
                break
            ctx.service(5)
        ctx.service(0)  # one slice done
        assert watcher.phase is Phase.SWAPPING
        watcher.table.add(rt("198.18.5.0/24"))  # e.g. a timer of the table's own
        _until_live(ctx)
        assert len(watcher.table) == before  # the swap took the dump's table, as compared again
        assert not any(r.dst == "198.18.5.0" for r in watcher.table)


def test_a_replayed_delete_of_what_the_dump_lacks_takes_no_other_route() -> None:
    with Context(netlink=True) as ctx:
        watcher = _watcher(ctx)
        _until_live(ctx)
        real = watcher.sock
        watcher.sock = FailingSock(real, [errno.ENOBUFS])  # type: ignore[assignment]
        watcher.readable()
        watcher.sock = real
        # Two IPv4 routes of one key (ip route append); the first deleted, and its delete
        # replayed once more (as when the dump was taken after it): the second stays.
        first, second = rt("198.18.6.0/24", oif=5), rt("198.18.6.0/24", oif=6)
        watcher._queue.extend(
            [
                new(first, nl_flags=NLM_F_APPEND),
                new(second, nl_flags=NLM_F_APPEND),
                gone(copy(first)),
                gone(copy(first), copy(second, oif=7)),
            ]
        )
        _until_live(ctx)
        assert [r for r in watcher.table if r.dst == "198.18.6.0"] == [second]
