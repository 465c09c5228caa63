"""Channel construction shared by Subscription and Client."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import grpc

# The largest message the client accepts, as the Go client: gateways keep
# snapshot chunks and deltas near 1 MiB, so this only has to fit the largest
# single entry plus framing. gRPC's own default is 4 MiB.
DEFAULT_MAX_RECEIVE = 16 << 20


# Keepalive pings, as the Go client: a connection silent for 20 s is pinged,
# and closed when the ping is not answered within 10 s, so a gateway that
# vanished without closing the connection (host lost, network partition) is
# left for another instead of waited on until TCP gives up. Gateways refuse
# pings more often than every 5 s.
DEFAULT_KEEPALIVE = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)


def build_options(max_receive: Optional[int], extra: Sequence[Tuple[str, Any]]) -> List[Tuple[str, Any]]:
    """The channel options: defaults, then extra, which overrides them."""
    given = {k for k, _ in extra}
    opts: List[Tuple[str, Any]] = [kv for kv in DEFAULT_KEEPALIVE if kv[0] not in given]
    if max_receive is not None and "grpc.max_receive_message_length" not in given:
        opts.append(("grpc.max_receive_message_length", max_receive))
    opts.extend(extra)
    return opts


def open_channel(addr: str, credentials: Optional[grpc.ChannelCredentials],
                 options: Sequence[Tuple[str, Any]]) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(addr, options=list(options))
    return grpc.secure_channel(addr, credentials, options=list(options))


def check_addrs(addrs: Sequence[str]) -> List[str]:
    if isinstance(addrs, str):
        raise TypeError("addrs must be a list of addresses, not one string")
    out = list(addrs)
    if not out:
        raise ValueError("addrs is empty: name at least one gateway address")
    for i, a in enumerate(out):
        if not a:
            raise ValueError(f"addrs[{i}] is empty")
    return out
