"""confgate client for Python.

    import confgate

    sub = confgate.Subscription(["127.0.0.1:50051"], ["payments/"])
    sub.wait_synced(timeout=10)
    print(sub.view().get("payments/db/timeout"))

Subscription keeps a live, resumable local view of a selector (view()
returns it as an immutable Mapping[str, Entry]); Client makes one-shot
calls (get, put, delete, apply, snapshot). confgate.aio has both for
asyncio. The generated protobuf and gRPC modules are confgate.v1.config_pb2
and confgate.v1.config_pb2_grpc.
"""

from ._cursor import Cursor
from ._digest import Digest, entry_hash
from ._errors import ConfgateError, PreconditionFailed
from ._replica import ProtocolViolation
from ._report import DEFAULT_REPORT_INTERVAL
from ._statefile import StateFileError
from ._types import (DELETE, LOADED, PUT, RESET, SNAPSHOT, ApplyResult, Delete, Entry, Event, Header, Put, Snapshot, Status,
                     Version, WriteResult)
from ._view import View
from .client import Client
from .subscription import StreamEnded, Subscription, SubscriptionClosed

__version__ = "0.2.0"

__all__ = [
    "ApplyResult",
    "Client",
    "ConfgateError",
    "Cursor",
    "DEFAULT_REPORT_INTERVAL",
    "DELETE",
    "Delete",
    "Digest",
    "Entry",
    "Event",
    "Header",
    "LOADED",
    "PUT",
    "PreconditionFailed",
    "ProtocolViolation",
    "Put",
    "RESET",
    "SNAPSHOT",
    "Snapshot",
    "StateFileError",
    "Status",
    "StreamEnded",
    "Subscription",
    "SubscriptionClosed",
    "Version",
    "View",
    "WriteResult",
    "entry_hash",
]
