"""The schedule of a subscription's streams (_base.Reconnects), which the
threaded and the asyncio run loops share: which address each attempt goes
to, how the backoff grows and when it starts over, and when the loop stops.
No gateway: the streams' ends are given."""

from __future__ import annotations

import random
import time
from typing import List, Optional, Tuple

import grpc
import pytest

from confgate._base import Reconnects
from confgate._core import Core, StreamEnded, settings

BACKOFF_MIN, BACKOFF_MAX = 0.001, 0.008


class RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "from the test"


def new_core() -> Core:
    return Core(settings(
        ["a:1", "b:2", "c:3"], ["app/"], on_change=None, credentials=None, backoff_min=BACKOFF_MIN,
        backoff_max=BACKOFF_MAX, max_receive_message_length=None, channel_options=(), shuffle=False, token=None,
        token_file=None, insecure_token=False, client_id=None, service="", labels=None, report_interval=-1,
        state_file=None, state_file_interval=None))


UNAVAILABLE = RpcError(grpc.StatusCode.UNAVAILABLE)
REFUSED = RpcError(grpc.StatusCode.INVALID_ARGUMENT)  # not resumed: the selector, for good

# A stream's end: whether it applied a message, how long it stayed up
# (seconds), and the error that ended it.
Stream = Tuple[bool, float, BaseException]


@pytest.mark.parametrize("streams, want", [
    pytest.param([(False, 0, UNAVAILABLE)] * 5,
                 [("a:1", 0.001), ("b:2", 0.002), ("c:3", 0.004), ("a:1", 0.008), ("b:2", 0.008)],
                 id="failures double the backoff up to backoff_max, round the addresses"),
    pytest.param([(False, 0, UNAVAILABLE), (False, 0, UNAVAILABLE), (True, BACKOFF_MAX, StreamEnded()),
                  (False, 0, UNAVAILABLE)],
                 [("a:1", 0.001), ("b:2", 0.002), ("c:3", 0.001), ("a:1", 0.002)],
                 id="a stream that applied a message and stayed up backoff_max starts the backoff over"),
    pytest.param([(False, 0, UNAVAILABLE), (True, 0, UNAVAILABLE), (False, BACKOFF_MAX, UNAVAILABLE)],
                 [("a:1", 0.001), ("b:2", 0.002), ("c:3", 0.004)],
                 id="a stream that applied a message but dropped at once, or stayed up idle, does not"),
    pytest.param([(False, 0, UNAVAILABLE), (False, 0, REFUSED)],
                 [("a:1", 0.001), ("b:2", None)],
                 id="a refused selector stops the loop"),
])
def test_schedule(monkeypatch: pytest.MonkeyPatch, streams: List[Stream],
                  want: List[Tuple[str, Optional[float]]]) -> None:
    # The largest draw of the jitter, so that the waits show the bound.
    monkeypatch.setattr(random, "uniform", lambda lo, hi: hi)
    core = new_core()
    r = Reconnects(core)
    got: List[Tuple[str, Optional[float]]] = []
    for delivered, up, err in streams:
        addr, resumed = r.begin()
        assert not resumed  # the view never synced
        time.sleep(up)
        core.disconnected()
        wait = r.ended(delivered, err)
        got.append((addr, wait))
    assert got == want
    assert core.status().reconnects == len(streams) - 1
    assert core.status().last_error is streams[-1][2]
