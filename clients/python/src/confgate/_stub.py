"""Typed views of the generated gRPC stub.

The generated config_pb2_grpc module carries no type hints (grpcio-tools
emits none for stubs), so every call through it would be Any. These
protocols name the request and response types of the calls this package
makes, checked by mypy --strict against grpcio's typeshed stubs; the
objects are the generated ConfigServiceStub, unchanged.
"""

from __future__ import annotations

from typing import Protocol

import grpc
import grpc.aio

from .v1 import config_pb2 as pb
from .v1 import config_pb2_grpc as pb_grpc


class Stub(Protocol):
    """ConfigServiceStub on a grpc.Channel."""

    Subscribe: grpc.UnaryStreamMultiCallable[pb.SubscribeRequest, pb.SubscribeResponse]
    GetSnapshot: grpc.UnaryStreamMultiCallable[pb.GetSnapshotRequest, pb.GetSnapshotResponse]
    Get: grpc.UnaryUnaryMultiCallable[pb.GetRequest, pb.GetResponse]
    Put: grpc.UnaryUnaryMultiCallable[pb.PutRequest, pb.PutResponse]
    Delete: grpc.UnaryUnaryMultiCallable[pb.DeleteRequest, pb.DeleteResponse]
    Apply: grpc.UnaryUnaryMultiCallable[pb.ApplyRequest, pb.ApplyResponse]
    Report: grpc.UnaryUnaryMultiCallable[pb.ReportRequest, pb.ReportResponse]


class AioStub(Protocol):
    """ConfigServiceStub on a grpc.aio.Channel."""

    Subscribe: grpc.aio.UnaryStreamMultiCallable[pb.SubscribeRequest, pb.SubscribeResponse]
    GetSnapshot: grpc.aio.UnaryStreamMultiCallable[pb.GetSnapshotRequest, pb.GetSnapshotResponse]
    Get: grpc.aio.UnaryUnaryMultiCallable[pb.GetRequest, pb.GetResponse]
    Put: grpc.aio.UnaryUnaryMultiCallable[pb.PutRequest, pb.PutResponse]
    Delete: grpc.aio.UnaryUnaryMultiCallable[pb.DeleteRequest, pb.DeleteResponse]
    Apply: grpc.aio.UnaryUnaryMultiCallable[pb.ApplyRequest, pb.ApplyResponse]
    Report: grpc.aio.UnaryUnaryMultiCallable[pb.ReportRequest, pb.ReportResponse]


def stub(channel: grpc.Channel) -> Stub:
    s: Stub = pb_grpc.ConfigServiceStub(channel)  # type: ignore[no-untyped-call]
    return s


def aio_stub(channel: grpc.aio.Channel) -> AioStub:
    s: AioStub = pb_grpc.ConfigServiceStub(channel)  # type: ignore[no-untyped-call]
    return s
