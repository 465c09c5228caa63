"""Errors of the client, and the google.rpc.Status details gateways attach
to failed writes."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

from ._types import Version
from .v1 import config_pb2 as pb

# The trailing metadata key of a gRPC status with details: a serialized
# google.rpc.Status.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
_PRECONDITION_FAILURE = "type.googleapis.com/confgate.v1.PreconditionFailure"


class ConfgateError(Exception):
    """Base of the errors this package raises (besides grpc.RpcError for
    gateway answers it has no more specific error for)."""


class PreconditionFailed(ConfgateError, grpc.RpcError):
    """A conditional put, delete or apply whose precondition did not hold:
    nothing was written. keys lists, for each key whose precondition
    failed, its current version, or None when it is absent.

    It is also a grpc.RpcError (code() is FAILED_PRECONDITION), so code
    that caught the gateway's answer before keeps working."""

    def __init__(self, message: str, keys: Sequence[Tuple[str, Optional[Version]]],
                 cause: Optional[grpc.RpcError] = None) -> None:
        super().__init__(message)
        self.keys: List[Tuple[str, Optional[Version]]] = list(keys)
        self.cause = cause

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.FAILED_PRECONDITION

    def details(self) -> str:
        return str(self)


def _status_class() -> Any:
    """google.rpc.Status, built from its descriptor in a private pool: the
    package does not depend on googleapis-common-protos, and a private pool
    cannot clash with it when it is installed."""
    pool = descriptor_pool.DescriptorPool()
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    pool.Add(any_file)
    f = descriptor_pb2.FileDescriptorProto(name="google/rpc/status.proto", package="google.rpc",
                                           syntax="proto3", dependency=["google/protobuf/any.proto"])
    m = f.message_type.add(name="Status")
    fd = descriptor_pb2.FieldDescriptorProto
    m.field.add(name="code", number=1, type=fd.TYPE_INT32, label=fd.LABEL_OPTIONAL)
    m.field.add(name="message", number=2, type=fd.TYPE_STRING, label=fd.LABEL_OPTIONAL)
    m.field.add(name="details", number=3, type=fd.TYPE_MESSAGE, label=fd.LABEL_REPEATED,
                type_name=".google.protobuf.Any")
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


_Status = _status_class()


def status_details_bin(code: int, message: str, *details: "pb.PreconditionFailure") -> bytes:
    """A serialized google.rpc.Status (for fake gateways in tests)."""
    st = _Status(code=code, message=message)
    for d in details:
        st.details.add(type_url="type.googleapis.com/" + d.DESCRIPTOR.full_name, value=d.SerializeToString())
    return bytes(st.SerializeToString())


def precondition_failure(err: grpc.RpcError) -> Optional["pb.PreconditionFailure"]:
    """The PreconditionFailure detail of a gRPC error, or None when it has
    none (or it does not parse)."""
    md = getattr(err, "trailing_metadata", None)
    try:
        pairs = md() if callable(md) else None
    except Exception:  # pragma: no cover (a call without metadata)
        pairs = None
    for k, v in pairs or ():
        if k != STATUS_DETAILS_KEY or not isinstance(v, bytes):
            continue
        try:
            st = _Status.FromString(v)
            for a in st.details:
                if a.type_url == _PRECONDITION_FAILURE:
                    return pb.PreconditionFailure.FromString(a.value)
        except Exception:
            return None
    return None


def convert_write_error(err: grpc.RpcError, conditional: bool) -> BaseException:
    """PreconditionFailed for a FAILED_PRECONDITION answer carrying a
    PreconditionFailure detail, or to a write that had a precondition
    (the gateway's message then stands alone); err itself otherwise."""
    code = err.code() if callable(getattr(err, "code", None)) else None
    if code != grpc.StatusCode.FAILED_PRECONDITION:
        return err
    detail = precondition_failure(err)
    if detail is None and not conditional:
        return err
    keys = []
    if detail is not None:
        keys = [(kv.key, Version(kv.version.partition, kv.version.offset) if kv.HasField("version") else None)
                for kv in detail.keys]
    msg = err.details() if callable(getattr(err, "details", None)) else ""
    return PreconditionFailed(msg or "precondition failed", keys, err)
