"""Shared fixtures of the Python binding tests (test_bindings_*.py).

ctest sets FMD_LIBRARY (the freshly built libfmd.so) and PYTHONPATH; run by
hand, the package is taken from bindings/python and the library from
FMD_LIBRARY or <repo>/build/libfmd.so.  The fmd package is imported only by
the fixtures, so other tests in this folder do not depend on it."""
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bindings" / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def cpu():
    import fmd
    return fmd.Backend("cpu")


@pytest.fixture
def ring8():
    import fmd
    return fmd.Teacher.mixture("ring8")


@pytest.fixture
def rng():
    return np.random.default_rng(7)
