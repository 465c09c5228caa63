"""A state file is portable between the Go client and this one: each reads
what the other wrote, and for the same view both write the same bytes. The
Go side is the test tool clients/gostatefile: scripts/polyglot-test.sh
builds it once and names it in CONFGATE_GOSTATEFILE; without that variable
(pytest run alone) the fixture builds it with the Go toolchain. The
Go-written file comes from a real subscription to the test gateway (see
conftest.py)."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
from typing import Any, Dict, List

import pytest

import confgate
from confgate._statefile import read_state_file, write_state_file

from test_unit import cur


@pytest.fixture(scope="session")
def gostatefile(tmp_path_factory: pytest.TempPathFactory) -> str:
    built = os.environ.get("CONFGATE_GOSTATEFILE", "")
    if built:
        return built
    out = str(tmp_path_factory.mktemp("go") / "gostatefile")
    subprocess.run(["go", "build", "-o", out, "./clients/gostatefile"],
                   cwd=pathlib.Path(__file__).resolve().parents[3], check=True, timeout=600)
    return out


def go(binary: str, *args: str) -> Dict[str, Any]:
    p = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr  # non-zero: the file was not written or not loaded
    out: Dict[str, Any] = json.loads(p.stdout)
    return out


def entries_of(out: Dict[str, Any]) -> List[confgate.Entry]:
    return [confgate.Entry(e["key"], base64.b64decode(e["value"]), e["partition"], int(e["offset"]),
                           e["content_type"],
                           tuple(confgate.Header(h["key"], base64.b64decode(h["value"])) for h in e["headers"]))
            for e in out["entries"]]


def test_go_reads_a_file_written_here(gostatefile: str, tmp_path: pathlib.Path) -> None:
    es = [confgate.Entry("app/a", b"1", 0, 4, "text/plain", (confgate.Header("by", b"py"),)),
          confgate.Entry("app/b/\u00e9", bytes(range(256)), 2, 9),
          confgate.Entry("app/c", b"", 1, 0)]
    d = confgate.Digest()
    for e in es:
        d.add(e.key, e.value, e.partition, e.offset)
    v = confgate.View({e.key: e for e in es}, str(cur(5, 1, 10)), d.to_bytes())
    path = tmp_path / "py.state"
    write_state_file(str(path), ["app/"], v)
    out = go(gostatefile, "-mode", "read", "-prefix", "app/", "-file", str(path))
    assert out["from_file"]
    assert out["cursor"] == v.cursor and out["digest"] == v.digest.hex()
    assert entries_of(out) == v.entries()


def test_a_file_written_by_go_is_read_here(gostatefile: str, client: confgate.Client, addr: str, prefix: str,
                                           tmp_path: pathlib.Path) -> None:
    for i in range(5):
        client.put(f"{prefix}k{i}", f"v{i}", content_type="text/plain", wait_applied=i == 4)
    path = tmp_path / "go.state"
    out = go(gostatefile, "-mode", "write", "-addr", addr, "-prefix", prefix, "-file", str(path))
    assert len(out["entries"]) == 5
    r = read_state_file(str(path), [prefix])
    assert [r.entries[k] for k in sorted(r.entries)] == entries_of(out)
    assert str(r.cursor) == out["cursor"] and r.digest.to_bytes().hex() == out["digest"]
    # The same view written here is the same file, byte for byte.
    mine = tmp_path / "py.state"
    write_state_file(str(mine), [prefix], confgate.View(r.entries, str(r.cursor), r.digest.to_bytes()))
    assert mine.read_bytes() == path.read_bytes()
    # And a subscription boots from it, then resumes from its cursor.
    with confgate.Subscription([addr], [prefix], state_file=path, report_interval=-1) as sub:
        sub.wait_loaded(timeout=0)
        assert sub.cursor == out["cursor"] and sub.view().entries() == entries_of(out)
        sub.wait_synced(timeout=20)
        assert sub.status().state_file_error is None
