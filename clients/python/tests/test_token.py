"""Bearer tokens (token=, token_file=, insecure_token=): validation, the
loopback rule, token file rotation, and the metadata a fake gateway sees
from Subscription and Client."""

from __future__ import annotations

import os
import threading
import time
from concurrent import futures
from typing import List

import grpc
import pytest

import confgate
from confgate import _channel
from confgate.v1 import config_pb2 as pb
from confgate.v1 import config_pb2_grpc as pb_grpc

from test_fake_gateway import INITIAL, gateways, hold, subscribe  # noqa: F401 (fixture)
from test_unit import cur, ent, snapshot

TOKEN_A = "cgt_" + "a" * 43
TOKEN_B = "cgt_" + "b" * 43


def auth_of(ctx: grpc.ServicerContext) -> str:
    return "|".join(v for k, v in ctx.invocation_metadata() if k == "authorization")


@pytest.mark.parametrize("tok,want", [
    (TOKEN_A, None),
    ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", None),
    ("", "empty"),
    ("Bearer " + TOKEN_A, "Bearer"),
    ("two words", "offset 3"),
    ("ünï", "offset 0"),
])
def test_check_token(tok: str, want) -> None:
    if want is None:
        _channel.check_token(tok)
        return
    with pytest.raises(ValueError, match=want) as e:
        _channel.check_token(tok)
    assert len(tok) < 5 or tok not in str(e.value)


@pytest.mark.parametrize("target,want", [
    ("127.0.0.1:1", True), ("[::1]:1", True), ("localhost:1", True), ("dns:///localhost:1", True),
    ("unix:///run/cg.sock", True), ("10.0.0.5:50051", False), ("gw.example:443", False),
    ("localhost.evil.com:1", False), ("0.0.0.0:1", False),
])
def test_loopback_target(target: str, want: bool) -> None:
    assert _channel.loopback_target(target) is want


def test_plaintext_to_a_remote_gateway_is_refused() -> None:
    with pytest.raises(ValueError, match="refusing to send the token in plaintext to 10.0.0.5:1"):
        confgate.Client(["127.0.0.1:1", "10.0.0.5:1"], token=TOKEN_A)
    with pytest.raises(ValueError, match="plaintext"):
        confgate.Subscription(["gw.example:1"], token=TOKEN_A)
    confgate.Client(["10.0.0.5:1"], token=TOKEN_A, insecure_token=True).close()
    confgate.Client(["10.0.0.5:1"], token=TOKEN_A, credentials=grpc.ssl_channel_credentials()).close()
    with pytest.raises(ValueError, match="exclude each other"):
        confgate.Client(["127.0.0.1:1"], token=TOKEN_A, token_file="/x")


def test_token_file_rotation(tmp_path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN_A + "\n")
    now = [100.0]
    src = _channel.TokenSource(token_file=str(path), clock=lambda: now[0])
    assert src.token() == TOKEN_A
    tmp = tmp_path / "token.new"
    tmp.write_text("  " + TOKEN_B + "\n")
    os.replace(tmp, path)  # as a Kubernetes projected volume swaps files
    assert src.token() == TOKEN_A  # within the check interval
    now[0] += _channel.TOKEN_FILE_CHECK
    assert src.token() == TOKEN_B
    # Broken, then gone: the last good token stays.
    path.write_text("not a token")
    now[0] += _channel.TOKEN_FILE_CHECK
    assert src.token() == TOKEN_B
    path.unlink()
    now[0] += _channel.TOKEN_FILE_CHECK
    assert src.token() == TOKEN_B
    path.write_text(TOKEN_A)
    now[0] += _channel.TOKEN_FILE_CHECK
    assert src.token() == TOKEN_A
    # Never valid, or missing: raises at construction, without the content.
    path.write_text("secret words")
    with pytest.raises(ValueError, match="space") as e:
        _channel.TokenSource(token_file=str(path))
    assert "secret" not in str(e.value)
    with pytest.raises(OSError):
        _channel.TokenSource(token_file=str(tmp_path / "missing"))


def test_subscription_sends_the_token_and_rotates_on_reconnect(gateways, tmp_path) -> None:  # noqa: F811
    path = tmp_path / "token"
    path.write_text(TOKEN_A + "\n")
    seen: List[str] = []
    drop = threading.Event()

    def script(n, req, ctx):
        seen.append(auth_of(ctx))
        if n == 0:
            yield from snapshot(cur(1), INITIAL, ent("a", "1", 0, 0))
            drop.wait(10)
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "draining")
        yield from hold(ctx)

    g = gateways(script)
    with subscribe([g.addr], token_file=str(path)) as sub:
        sub.wait_synced(timeout=5)
        assert seen[0] == "Bearer " + TOKEN_A
        tmp = tmp_path / "token.new"
        tmp.write_text(TOKEN_B + "\n")
        os.replace(tmp, path)
        time.sleep(_channel.TOKEN_FILE_CHECK + 0.1)
        drop.set()
        g.request(1)
        assert seen[1] == "Bearer " + TOKEN_B


class UnaryGateway(pb_grpc.ConfigServiceServicer):
    """Answers Get, Put and GetSnapshot, recording the authorization metadata."""

    def __init__(self) -> None:
        self.seen: List[str] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_ConfigServiceServicer_to_server(self, self.server)
        self.addr = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def Get(self, request, context):
        self.seen.append(auth_of(context))
        return pb.GetResponse(entry=ent("a", "1", 0, 0), cursor=cur(1).encode())

    def Put(self, request, context):
        self.seen.append(auth_of(context))
        return pb.PutResponse(version=pb.Version(partition=0, offset=1), cursor=cur(2).encode())

    def GetSnapshot(self, request, context):
        self.seen.append(auth_of(context))
        yield pb.GetSnapshotResponse(end=snapshot(cur(1), INITIAL)[-1].snapshot_end)


@pytest.mark.parametrize("kw,want", [
    ({"token": TOKEN_A}, "Bearer " + TOKEN_A),
    ({}, ""),
])
def test_client_sends_the_token_on_every_call(kw, want) -> None:
    g = UnaryGateway()
    try:
        with confgate.Client([g.addr], **kw) as c:
            assert c.get("a").value == b"1"
            c.put("a", "2")
            c.snapshot()
        assert g.seen == [want] * 3
    finally:
        g.server.stop(grace=None)
