"""The examples run: the Python distillation example (a numpy teacher), the
PyTorch-teacher example, and the embedded C program on the student the first
one saved (it must write a PNG)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EX = REPO / "examples" / "python"


def run(args, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "bindings" / "python") + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{args} failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def test_distill_mixture_then_embedded_sample(tmp_path):
    out = run([sys.executable, str(EX / "distill_mixture.py"), "--steps", "40", "--batch", "32",
               "--width", "16", "--student", "s.fmd", "--png", "m.png"], tmp_path)
    assert "one-step student" in out and "map error" in out
    assert (tmp_path / "s.fmd").exists()
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    exe = os.environ.get("FMD_EMBEDDED_SAMPLE")
    if not exe:
        pytest.skip("FMD_EMBEDDED_SAMPLE (the built examples/embedded_sample) not given")
    env = dict(os.environ)
    # prepend: the library's own dependencies may live on the inherited path
    # (oneDNN unpacked from .gpudeps on the GPU machine, scripts/gpu-check.sh)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        d for d in (os.path.dirname(os.environ["FMD_LIBRARY"]), env.get("LD_LIBRARY_PATH")) if d)
    p = subprocess.run([exe, "s.fmd", "e.png", "500", "3"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "500 samples of dim 2" in p.stdout
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    p = subprocess.run([exe, "absent.fmd", "e.png"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0 and "absent.fmd" in p.stderr


def test_torch_teacher_example(tmp_path):
    pytest.importorskip("torch")
    out = run([sys.executable, str(EX / "torch_teacher.py"), "--train-steps", "20", "--steps",
               "10", "--student", "t.fmd"], tmp_path)
    assert "map error" in out and (tmp_path / "t.fmd").exists()
