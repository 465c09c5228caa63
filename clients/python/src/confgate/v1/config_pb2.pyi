from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SnapshotReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SNAPSHOT_REASON_UNSPECIFIED: _ClassVar[SnapshotReason]
    SNAPSHOT_REASON_INITIAL: _ClassVar[SnapshotReason]
    SNAPSHOT_REASON_HISTORY_EXPIRED: _ClassVar[SnapshotReason]
    SNAPSHOT_REASON_TOPIC_CHANGED: _ClassVar[SnapshotReason]
    SNAPSHOT_REASON_SLOW_SUBSCRIBER: _ClassVar[SnapshotReason]
    SNAPSHOT_REASON_STATE_REBUILT: _ClassVar[SnapshotReason]

class FleetState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLEET_STATE_UNSPECIFIED: _ClassVar[FleetState]
    FLEET_STATE_IN_SYNC: _ClassVar[FleetState]
    FLEET_STATE_BEHIND: _ClassVar[FleetState]
    FLEET_STATE_DIVERGED: _ClassVar[FleetState]
    FLEET_STATE_NOT_REPORTING: _ClassVar[FleetState]
    FLEET_STATE_UNKNOWN: _ClassVar[FleetState]
SNAPSHOT_REASON_UNSPECIFIED: SnapshotReason
SNAPSHOT_REASON_INITIAL: SnapshotReason
SNAPSHOT_REASON_HISTORY_EXPIRED: SnapshotReason
SNAPSHOT_REASON_TOPIC_CHANGED: SnapshotReason
SNAPSHOT_REASON_SLOW_SUBSCRIBER: SnapshotReason
SNAPSHOT_REASON_STATE_REBUILT: SnapshotReason
FLEET_STATE_UNSPECIFIED: FleetState
FLEET_STATE_IN_SYNC: FleetState
FLEET_STATE_BEHIND: FleetState
FLEET_STATE_DIVERGED: FleetState
FLEET_STATE_NOT_REPORTING: FleetState
FLEET_STATE_UNKNOWN: FleetState

class Version(_message.Message):
    __slots__ = ("partition", "offset")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("key", "value", "version", "content_type", "headers")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    version: Version
    content_type: str
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., version: _Optional[_Union[Version, _Mapping]] = ..., content_type: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ...) -> None: ...

class Selector(_message.Message):
    __slots__ = ("prefixes",)
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    prefixes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, prefixes: _Optional[_Iterable[str]] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("put", "delete")
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    put: Entry
    delete: Deletion
    def __init__(self, put: _Optional[_Union[Entry, _Mapping]] = ..., delete: _Optional[_Union[Deletion, _Mapping]] = ...) -> None: ...

class Deletion(_message.Message):
    __slots__ = ("key", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    version: Version
    def __init__(self, key: _Optional[str] = ..., version: _Optional[_Union[Version, _Mapping]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("selector", "resume_cursor", "client")
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    RESUME_CURSOR_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    selector: Selector
    resume_cursor: bytes
    client: ClientInfo
    def __init__(self, selector: _Optional[_Union[Selector, _Mapping]] = ..., resume_cursor: _Optional[bytes] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class ClientInfo(_message.Message):
    __slots__ = ("client_id", "service", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    service: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, client_id: _Optional[str] = ..., service: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("client", "selector", "applied_cursor", "digest", "rejections")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    APPLIED_CURSOR_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    client: ClientInfo
    selector: Selector
    applied_cursor: bytes
    digest: bytes
    rejections: _containers.RepeatedCompositeFieldContainer[Rejection]
    def __init__(self, client: _Optional[_Union[ClientInfo, _Mapping]] = ..., selector: _Optional[_Union[Selector, _Mapping]] = ..., applied_cursor: _Optional[bytes] = ..., digest: _Optional[bytes] = ..., rejections: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("key", "version", "reason")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key: str
    version: Version
    reason: str
    def __init__(self, key: _Optional[str] = ..., version: _Optional[_Union[Version, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFleetRequest(_message.Message):
    __slots__ = ("prefix", "service", "behind_cursor")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    BEHIND_CURSOR_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    service: str
    behind_cursor: bytes
    def __init__(self, prefix: _Optional[str] = ..., service: _Optional[str] = ..., behind_cursor: _Optional[bytes] = ...) -> None: ...

class FleetClient(_message.Message):
    __slots__ = ("client", "selector", "gateway", "connected_since_unix_ms", "last_report_unix_ms", "applied_cursor", "digest", "state", "lag_records", "rejections")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_REPORT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_CURSOR_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAG_RECORDS_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    client: ClientInfo
    selector: Selector
    gateway: str
    connected_since_unix_ms: int
    last_report_unix_ms: int
    applied_cursor: bytes
    digest: bytes
    state: FleetState
    lag_records: int
    rejections: _containers.RepeatedCompositeFieldContainer[Rejection]
    def __init__(self, client: _Optional[_Union[ClientInfo, _Mapping]] = ..., selector: _Optional[_Union[Selector, _Mapping]] = ..., gateway: _Optional[str] = ..., connected_since_unix_ms: _Optional[int] = ..., last_report_unix_ms: _Optional[int] = ..., applied_cursor: _Optional[bytes] = ..., digest: _Optional[bytes] = ..., state: _Optional[_Union[FleetState, str]] = ..., lag_records: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ...) -> None: ...

class ServiceSummary(_message.Message):
    __slots__ = ("service", "in_sync", "behind", "diverged", "not_reporting", "unknown")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    IN_SYNC_FIELD_NUMBER: _ClassVar[int]
    BEHIND_FIELD_NUMBER: _ClassVar[int]
    DIVERGED_FIELD_NUMBER: _ClassVar[int]
    NOT_REPORTING_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    service: str
    in_sync: int
    behind: int
    diverged: int
    not_reporting: int
    unknown: int
    def __init__(self, service: _Optional[str] = ..., in_sync: _Optional[int] = ..., behind: _Optional[int] = ..., diverged: _Optional[int] = ..., not_reporting: _Optional[int] = ..., unknown: _Optional[int] = ...) -> None: ...

class GetFleetResponse(_message.Message):
    __slots__ = ("clients", "services", "cursor")
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    clients: _containers.RepeatedCompositeFieldContainer[FleetClient]
    services: _containers.RepeatedCompositeFieldContainer[ServiceSummary]
    cursor: bytes
    def __init__(self, clients: _Optional[_Iterable[_Union[FleetClient, _Mapping]]] = ..., services: _Optional[_Iterable[_Union[ServiceSummary, _Mapping]]] = ..., cursor: _Optional[bytes] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("snapshot_chunk", "snapshot_end", "delta", "progress")
    SNAPSHOT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_END_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    snapshot_chunk: SnapshotChunk
    snapshot_end: SnapshotEnd
    delta: Delta
    progress: Progress
    def __init__(self, snapshot_chunk: _Optional[_Union[SnapshotChunk, _Mapping]] = ..., snapshot_end: _Optional[_Union[SnapshotEnd, _Mapping]] = ..., delta: _Optional[_Union[Delta, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ...) -> None: ...

class SnapshotEnd(_message.Message):
    __slots__ = ("cursor", "reason", "reset", "entry_count", "digest")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    ENTRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    cursor: bytes
    reason: SnapshotReason
    reset: bool
    entry_count: int
    digest: bytes
    def __init__(self, cursor: _Optional[bytes] = ..., reason: _Optional[_Union[SnapshotReason, str]] = ..., reset: _Optional[bool] = ..., entry_count: _Optional[int] = ..., digest: _Optional[bytes] = ...) -> None: ...

class Delta(_message.Message):
    __slots__ = ("changes", "cursor", "coalesced")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    COALESCED_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    cursor: bytes
    coalesced: bool
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., cursor: _Optional[bytes] = ..., coalesced: _Optional[bool] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("cursor", "lag_records", "stale")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LAG_RECORDS_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    cursor: bytes
    lag_records: int
    stale: bool
    def __init__(self, cursor: _Optional[bytes] = ..., lag_records: _Optional[int] = ..., stale: _Optional[bool] = ...) -> None: ...

class GetSnapshotRequest(_message.Message):
    __slots__ = ("selector", "min_cursor")
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    MIN_CURSOR_FIELD_NUMBER: _ClassVar[int]
    selector: Selector
    min_cursor: bytes
    def __init__(self, selector: _Optional[_Union[Selector, _Mapping]] = ..., min_cursor: _Optional[bytes] = ...) -> None: ...

class GetSnapshotResponse(_message.Message):
    __slots__ = ("chunk", "end")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    chunk: SnapshotChunk
    end: SnapshotEnd
    def __init__(self, chunk: _Optional[_Union[SnapshotChunk, _Mapping]] = ..., end: _Optional[_Union[SnapshotEnd, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("key", "min_cursor")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MIN_CURSOR_FIELD_NUMBER: _ClassVar[int]
    key: str
    min_cursor: bytes
    def __init__(self, key: _Optional[str] = ..., min_cursor: _Optional[bytes] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("entry", "cursor")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    entry: Entry
    cursor: bytes
    def __init__(self, entry: _Optional[_Union[Entry, _Mapping]] = ..., cursor: _Optional[bytes] = ...) -> None: ...

class Precondition(_message.Message):
    __slots__ = ("absent", "version")
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    absent: bool
    version: Version
    def __init__(self, absent: _Optional[bool] = ..., version: _Optional[_Union[Version, _Mapping]] = ...) -> None: ...

class PreconditionFailure(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[KeyVersion]
    def __init__(self, keys: _Optional[_Iterable[_Union[KeyVersion, _Mapping]]] = ...) -> None: ...

class KeyVersion(_message.Message):
    __slots__ = ("key", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    version: Version
    def __init__(self, key: _Optional[str] = ..., version: _Optional[_Union[Version, _Mapping]] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("key", "value", "content_type", "headers", "wait_applied", "precondition", "request_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    WAIT_APPLIED_FIELD_NUMBER: _ClassVar[int]
    PRECONDITION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    content_type: str
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    wait_applied: bool
    precondition: Precondition
    request_id: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., content_type: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., wait_applied: _Optional[bool] = ..., precondition: _Optional[_Union[Precondition, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ("version", "cursor", "duplicate")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    version: Version
    cursor: bytes
    duplicate: bool
    def __init__(self, version: _Optional[_Union[Version, _Mapping]] = ..., cursor: _Optional[bytes] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("key", "wait_applied", "precondition", "request_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    WAIT_APPLIED_FIELD_NUMBER: _ClassVar[int]
    PRECONDITION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    wait_applied: bool
    precondition: Precondition
    request_id: str
    def __init__(self, key: _Optional[str] = ..., wait_applied: _Optional[bool] = ..., precondition: _Optional[_Union[Precondition, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("version", "cursor", "duplicate")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    version: Version
    cursor: bytes
    duplicate: bool
    def __init__(self, version: _Optional[_Union[Version, _Mapping]] = ..., cursor: _Optional[bytes] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("key", "delete", "value", "content_type", "headers", "precondition")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    PRECONDITION_FIELD_NUMBER: _ClassVar[int]
    key: str
    delete: bool
    value: bytes
    content_type: str
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    precondition: Precondition
    def __init__(self, key: _Optional[str] = ..., delete: _Optional[bool] = ..., value: _Optional[bytes] = ..., content_type: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., precondition: _Optional[_Union[Precondition, _Mapping]] = ...) -> None: ...

class ApplyRequest(_message.Message):
    __slots__ = ("operations", "request_id", "wait_applied", "validate_only")
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_APPLIED_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[Operation]
    request_id: str
    wait_applied: bool
    validate_only: bool
    def __init__(self, operations: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ..., request_id: _Optional[str] = ..., wait_applied: _Optional[bool] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("versions", "cursor", "duplicate")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[Version]
    cursor: bytes
    duplicate: bool
    def __init__(self, versions: _Optional[_Iterable[_Union[Version, _Mapping]]] = ..., cursor: _Optional[bytes] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class DiffRequest(_message.Message):
    __slots__ = ("prefix", "from_cursor", "to_cursor")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    FROM_CURSOR_FIELD_NUMBER: _ClassVar[int]
    TO_CURSOR_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    from_cursor: bytes
    to_cursor: bytes
    def __init__(self, prefix: _Optional[str] = ..., from_cursor: _Optional[bytes] = ..., to_cursor: _Optional[bytes] = ...) -> None: ...

class DiffResponse(_message.Message):
    __slots__ = ("changes", "from_cursor", "to_cursor", "last")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    FROM_CURSOR_FIELD_NUMBER: _ClassVar[int]
    TO_CURSOR_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[KeyDiff]
    from_cursor: bytes
    to_cursor: bytes
    last: bool
    def __init__(self, changes: _Optional[_Iterable[_Union[KeyDiff, _Mapping]]] = ..., from_cursor: _Optional[bytes] = ..., to_cursor: _Optional[bytes] = ..., last: _Optional[bool] = ...) -> None: ...

class KeyDiff(_message.Message):
    __slots__ = ("key", "before", "after")
    KEY_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    key: str
    before: Entry
    after: Entry
    def __init__(self, key: _Optional[str] = ..., before: _Optional[_Union[Entry, _Mapping]] = ..., after: _Optional[_Union[Entry, _Mapping]] = ...) -> None: ...
