"""docs/api.md documents every function libfmd.so exports and every public
function of include/fmd.h; docs/python.md names every public Python name."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import fmd
from test_bindings_core import header_functions

REPO = Path(__file__).resolve().parents[2]
API_MD = REPO / "docs" / "api.md"
PY_MD = REPO / "docs" / "python.md"


def documented(text):
    """Function names given a heading or a prototype/backticked call in api.md."""
    return set(re.findall(r"\b(fmd_\w+)\s*\(", text)) | set(re.findall(r"`(fmd_\w+)`", text))


def exported_functions(lib):
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) not found")
    out = subprocess.run([nm, "-D", "--defined-only", lib], check=True, capture_output=True,
                         text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "T" and parts[2].startswith("fmd_"):
            names.add(parts[2].split("@")[0])
    return names


def test_exported_symbols_are_documented():
    syms = exported_functions(os.path.realpath(fmd.library_path))
    assert len(syms) > 40
    missing = sorted(syms - documented(API_MD.read_text()))
    assert not missing, f"exported by libfmd.so but absent from docs/api.md: {missing}"


def test_header_functions_are_documented():
    missing = sorted(set(header_functions()) - documented(API_MD.read_text()))
    assert not missing, f"declared in fmd.h but absent from docs/api.md: {missing}"


def test_api_md_names_no_unknown_functions():
    known = set(header_functions())
    text = API_MD.read_text()
    headed = set()
    for line in text.splitlines():
        if line.startswith("### "):
            headed |= set(re.findall(r"`(fmd_\w+)`", line))
    stale = sorted(n for n in headed if n not in known)
    assert not stale, f"docs/api.md documents functions fmd.h does not declare: {stale}"


def test_python_names_are_documented():
    text = PY_MD.read_text()
    missing = [n for n in fmd.__all__ if not re.search(r"\b" + re.escape(n) + r"\b", text)]
    assert not missing, f"public names of the fmd package absent from docs/python.md: {missing}"
