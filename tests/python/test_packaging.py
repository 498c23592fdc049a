"""`pip install bindings/python` gives a package that finds its library with no
environment variable: setup.py bundles the CMake-built libfmd.so into the
package.  Installed into a fresh virtual environment (with Debian's
site-packages for numpy), imported from elsewhere without FMD_LIBRARY or
PYTHONPATH, it loads the bundled copy and samples."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_pip_install_finds_its_library(tmp_path):
    lib = os.environ.get("FMD_LIBRARY", str(REPO / "build" / "libfmd.so"))
    if not Path(lib).is_file():
        pytest.skip("libfmd.so is not built")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True,
                   timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("FMD_LIBRARY", "PYTHONPATH")}
    # a copy of the package, so pip's build files stay out of the source tree
    src = tmp_path / "src"
    shutil.copytree(REPO / "bindings" / "python", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    p = subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-build-isolation",
                        "--no-index", src],
                       capture_output=True, text=True, env=dict(env, FMD_LIBRARY=lib), timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    code = ("import fmd, numpy as np; print(fmd.library_path); "
            "x = fmd.Teacher.mixture('ring8').sample(8, steps=2); assert x.shape == (8, 2)")
    p = subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().startswith(str(venv)), p.stdout   # the bundled copy, not the build tree
