"""The Python examples of docs/clients.md run as they are, against the test
gateway (see conftest.py): every ```python block that follows the marker
<!-- example: python --> is written to a file and run with this
interpreter, the address in CONFGATE_ADDR, as a reader would run it."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from typing import List, Tuple

import pytest

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "clients.md"
MARKER = re.compile(r"^<!-- example: python -->\n```python\n(.*?)^```$", re.M | re.S)


def examples() -> List[Tuple[int, str]]:
    text = DOC.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in MARKER.finditer(text)]


def test_the_examples_are_found() -> None:
    # A marker whose block does not follow it at once, or a block that lost
    # its marker, would silently stop being run.
    markers = re.findall(r"^<!-- example: python -->$", DOC.read_text(encoding="utf-8"), re.M)
    assert len(markers) == len(examples()) >= 3


@pytest.mark.parametrize("line, code", examples(), ids=[f"clients.md:{n}" for n, _ in examples()])
def test_example_runs(addr: str, tmp_path: pathlib.Path, line: int, code: str) -> None:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, CONFGATE_ADDR=addr, PYTHONWARNINGS="error::DeprecationWarning")
    p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, (f"docs/clients.md:{line}: the example exited with {p.returncode}\n"
                               f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    assert p.stdout.strip(), "the example printed nothing"
