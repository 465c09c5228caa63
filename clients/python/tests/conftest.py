"""Fixtures for the tests against a running gateway.

scripts/polyglot-test.sh starts one (clients/testgateway: an in-process
Kafka broker, a store and a gateway, plus a cuttable TCP proxy) and sets:

    CONFGATE_ADDR         the gateway, host:port
    CONFGATE_PROXY_ADDR   a TCP proxy to it that the tests cut and restore
    CONFGATE_CONTROL_URL  the proxy's control endpoint
    CONFGATE_BIN          the confgate CLI (cross-checks; optional)
"""

from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

import confgate


def _env(name: str) -> str:
    v = os.environ.get(name, "")
    if not v:
        pytest.fail(f"{name} is not set: run scripts/polyglot-test.sh, which starts a gateway for these tests")
    return v


@pytest.fixture(scope="session")
def addr() -> str:
    return _env("CONFGATE_ADDR")


@pytest.fixture(scope="session")
def proxy_addr() -> str:
    return _env("CONFGATE_PROXY_ADDR")


@pytest.fixture(scope="session")
def control_url() -> str:
    return _env("CONFGATE_CONTROL_URL")


@pytest.fixture
def client(addr: str) -> Iterator[confgate.Client]:
    with confgate.Client([addr]) as c:
        yield c


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test writes under."""
    return f"py-{uuid.uuid4().hex[:12]}/"
