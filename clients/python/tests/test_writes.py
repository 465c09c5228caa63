"""Conditional and retry-safe writes (preconditions, request IDs, apply)
against fake gateways in this process: what the client sends, the request
ID it keeps across a retry, and how it reads a PreconditionFailure."""

from __future__ import annotations

import re
import threading
from concurrent import futures
from typing import Callable, List, Optional, Tuple

import grpc
import pytest

import confgate
from confgate._errors import STATUS_DETAILS_KEY, status_details_bin
from confgate.v1 import config_pb2 as pb
from confgate.v1 import config_pb2_grpc as pb_grpc

from test_unit import cur

# answer(method, n, request, context) returns the response of call n (over
# all methods) or aborts.
Answer = Callable[[str, int, object, grpc.ServicerContext], object]


class WriteGateway(pb_grpc.ConfigServiceServicer):
    """Answers Put, Delete and Apply as answer says, recording requests."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.lock = threading.Lock()
        self.calls: List[Tuple[str, object]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_ConfigServiceServicer_to_server(self, self.server)
        self.addr = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def _serve(self, method: str, request, context):
        with self.lock:
            n = len(self.calls)
            self.calls.append((method, request))
        return self.answer(method, n, request, context)

    def Put(self, request, context):
        return self._serve("put", request, context)

    def Delete(self, request, context):
        return self._serve("delete", request, context)

    def Apply(self, request, context):
        return self._serve("apply", request, context)

    def requests(self) -> List[object]:
        with self.lock:
            return [r for _, r in self.calls]


@pytest.fixture
def start():
    started: List[WriteGateway] = []

    def start(answer: Answer) -> WriteGateway:
        g = WriteGateway(answer)
        started.append(g)
        return g

    yield start
    for g in started:
        g.server.stop(grace=None)


def ok(method: str, n: int, req, ctx):
    v = pb.Version(partition=1, offset=10 + n)
    if method == "put":
        return pb.PutResponse(version=v, cursor=cur(0, 11 + n).encode())
    if method == "delete":
        return pb.DeleteResponse(version=v, cursor=cur(0, 11 + n).encode())
    return pb.ApplyResponse(versions=[pb.Version(partition=i % 2, offset=10 + i) for i in range(len(req.operations))],
                            cursor=cur(20, 20).encode())


def unavailable(method, n, req, ctx):
    ctx.abort(grpc.StatusCode.UNAVAILABLE, "draining")


def failed(*keys: Tuple[str, Optional[Tuple[int, int]]], detail: bool = True) -> Answer:
    def answer(method, n, req, ctx):
        if detail:
            f = pb.PreconditionFailure(keys=[
                pb.KeyVersion(key=k, version=pb.Version(partition=v[0], offset=v[1])) if v else pb.KeyVersion(key=k)
                for k, v in keys])
            ctx.set_trailing_metadata(((STATUS_DETAILS_KEY, status_details_bin(9, "precondition failed", f)),))
        ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, "precondition failed")
    return answer


def test_a_request_id_is_generated_per_call_and_kept_on_retry(start) -> None:
    down, up = start(unavailable), start(ok)
    with confgate.Client([down.addr, up.addr]) as c:
        w1 = c.put("a", "1")
        w2 = c.delete("a")
        w3 = c.apply([confgate.Put("a", "2")])
    sent = [r.request_id for r in down.requests()]
    assert sent == [r.request_id for r in up.requests()], "a retry sends the same request ID"
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in sent)
    assert len(set(sent)) == 3, "each call has its own"
    assert [w1.request_id, w2.request_id, w3.request_id] == sent
    assert (w1.partition, w1.offset, w1.version, w1.duplicate) == (1, 10, (1, 10), False)
    assert w1.cursor == str(cur(0, 11))


def test_given_request_id_and_duplicate(start) -> None:
    def answer(method, n, req, ctx):
        if method == "put":
            return pb.PutResponse(version=pb.Version(partition=2, offset=7), cursor=cur(0, 0, 8).encode(), duplicate=True)
        if method == "delete":
            return pb.DeleteResponse(version=pb.Version(partition=2, offset=9), cursor=cur(0, 0, 10).encode(),
                                     duplicate=True)
        return pb.ApplyResponse(versions=[pb.Version(partition=0, offset=3)], cursor=cur(4).encode(), duplicate=True)

    g = start(answer)
    with confgate.Client([g.addr]) as c:
        w = c.put("a", "1", request_id="deploy-42/a")
        d = c.delete("a", request_id="deploy-42/del")
        a = c.apply([confgate.Delete("a")], request_id="deploy-42/set")
    assert [r.request_id for r in g.requests()] == ["deploy-42/a", "deploy-42/del", "deploy-42/set"]
    assert w.duplicate and w.request_id == "deploy-42/a" and w.version == confgate.Version(2, 7)
    assert d.duplicate and d.version == (2, 9)
    assert a.duplicate and a.versions == (confgate.Version(0, 3),) and a.request_id == "deploy-42/set"
    assert a.cursor == str(cur(4))


def test_preconditions_are_sent(start) -> None:
    g = start(ok)
    entry = confgate.Entry("k", b"v", 3, 33)
    with confgate.Client([g.addr]) as c:
        c.put("k", "v")
        c.put("k", "v", if_absent=True)
        c.put("k", "v", if_version=(1, 5))
        c.put("k", "v", if_version=confgate.Version(2, 6))
        c.put("k", "v", if_version=entry)
        c.delete("k", if_version=entry.version)
        c.delete("k", if_absent=True)
        with pytest.raises(ValueError, match="exclude"):
            c.put("k", "v", if_absent=True, if_version=(1, 5))
        with pytest.raises(ValueError, match="non-negative"):
            c.delete("k", if_version=(-1, 5))
        with pytest.raises(TypeError):
            c.put("k", "v", if_version="1:5")
    conds = [r.precondition if r.HasField("precondition") else None for r in g.requests()]
    assert conds == [
        None,
        pb.Precondition(absent=True),
        pb.Precondition(version=pb.Version(partition=1, offset=5)),
        pb.Precondition(version=pb.Version(partition=2, offset=6)),
        pb.Precondition(version=pb.Version(partition=3, offset=33)),
        pb.Precondition(version=pb.Version(partition=3, offset=33)),
        pb.Precondition(absent=True),
    ]


def test_apply_sends_the_change_set(start) -> None:
    g = start(ok)
    raw = pb.Operation(key="c", value=b"raw")
    with confgate.Client([g.addr]) as c:
        r = c.apply([
            confgate.Put("a", "1", content_type="text/plain", headers=[("by", "test")], if_absent=True),
            confgate.Delete("b", if_version=(0, 4)),
            raw,
        ], wait_applied=True)
        c.apply([confgate.Put("a", b"\x00")], validate_only=True)
        with pytest.raises(TypeError, match="confgate.Put"):
            c.apply([("a", "1")])
    req, req2 = g.requests()
    assert list(req.operations) == [
        pb.Operation(key="a", value=b"1", content_type="text/plain", headers=[pb.Header(key="by", value=b"test")],
                     precondition=pb.Precondition(absent=True)),
        pb.Operation(key="b", delete=True, precondition=pb.Precondition(version=pb.Version(partition=0, offset=4))),
        raw,
    ]
    assert req.wait_applied and not req.validate_only and req.request_id == r.request_id
    assert r.versions == ((0, 10), (1, 11), (0, 12)) and r.cursor == str(cur(20, 20)) and not r.duplicate
    assert req2.validate_only and not req2.wait_applied


def test_precondition_failed_carries_the_current_versions(start) -> None:
    g = start(failed(("a", (1, 5)), ("b", None)))
    with confgate.Client([g.addr]) as c:
        for call in (lambda: c.put("a", "1", if_version=(1, 4)),
                     lambda: c.delete("a", if_absent=True),
                     lambda: c.apply([confgate.Put("a", "1", if_absent=True), confgate.Delete("b", if_version=(0, 1))])):
            with pytest.raises(confgate.PreconditionFailed) as e:
                call()
            assert e.value.keys == [("a", confgate.Version(1, 5)), ("b", None)]
            assert isinstance(e.value, confgate.ConfgateError) and isinstance(e.value, grpc.RpcError)
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert str(e.value) == "precondition failed" == e.value.details()
            assert e.value.cause is not None and e.value.cause.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len(g.requests()) == 3, "a failed precondition is not retried"


def test_precondition_failed_without_its_detail(start) -> None:
    g = start(failed(detail=False))
    with confgate.Client([g.addr]) as c:
        with pytest.raises(confgate.PreconditionFailed) as e:
            c.put("a", "1", if_absent=True)
        assert e.value.keys == [] and str(e.value) == "precondition failed"
        # An unconditional write has no precondition to blame: the
        # gateway's error is raised as it is.
        with pytest.raises(grpc.RpcError) as e2:
            c.put("a", "1")
        assert not isinstance(e2.value, confgate.PreconditionFailed)
        assert e2.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_the_detail_is_read_even_for_an_unconditional_write(start) -> None:
    # An operation given as a raw pb.Operation may carry a precondition the
    # client did not look at; the detail alone decides.
    g = start(failed(("a", None)))
    with confgate.Client([g.addr]) as c:
        with pytest.raises(confgate.PreconditionFailed) as e:
            c.put("a", "1")
    assert e.value.keys == [("a", None)]


def test_other_errors_pass_through(start) -> None:
    g = start(lambda m, n, r, ctx: ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "request ID reused for other keys"))
    with confgate.Client([g.addr]) as c:
        with pytest.raises(grpc.RpcError) as e:
            c.apply([confgate.Put("a", "1", if_absent=True)], request_id="x")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not isinstance(e.value, confgate.PreconditionFailed)
