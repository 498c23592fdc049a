"""A student remembers how it was made: the distiller records the guidance, the
teacher's identity and its options in every checkpoint and student file;
`fmd export` writes the deployable student with that record, `fmd info` shows
it, `fmd eval` and `fmd sample --teacher` use the student's guidance, and an
explicit --cfg that differs gets a warning naming both values."""
import json
import os
import subprocess

import numpy as np
import pytest

FMD = os.environ.get("FMD_CLI", "fmd")
ENV = dict(os.environ, FMD_NUM_THREADS="1", FMD_BACKEND="cpu", OMP_WAIT_POLICY="PASSIVE")
T = "mixture:classes4-d32"


def scores(p):
    """The eval results without the timings."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads(p.stdout)["results"]]


def run(*args, ok=True):
    p = subprocess.run([FMD, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=300)
    if ok:
        assert p.returncode == 0, f"fmd {' '.join(map(str, args))} failed:\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def guided(tmp_path_factory):
    d = tmp_path_factory.mktemp("made")
    ck, st = d / "ck.fmd", d / "s.fmd"
    run("distill", "--teacher", T, "--out", ck, "--steps", 20, "--batch", 64, "--cfg", 3,
        "--cfg-interval", "0.1,0.9", "-q")
    p = run("export", ck, "--out", st, "--json")
    assert json.loads(p.stdout)["num_params"] > 0
    return d, ck, st


def test_export_keeps_weights_and_record(guided):
    d, ck, st = guided
    assert st.stat().st_size < ck.stat().st_size / 3   # no training state
    info = json.loads(run("info", st, "--json").stdout)
    meta = info["metadata"] if "metadata" in info else info
    text = json.dumps(meta)
    assert '"made.guidance": "3"' in text and '"made.guidance_lo": "0.1' in text, text[:2000]
    assert "made.teacher" in text and "classes" in text and '"made.distill_steps": "20"' in text
    # the exported student samples exactly as the checkpoint's EMA student
    run("sample", "--student", ck, "--n", 64, "--seed", 5, "--out", d / "a.npy")
    run("sample", "--student", st, "--n", 64, "--seed", 5, "--out", d / "b.npy")
    assert np.array_equal(np.load(d / "a.npy"), np.load(d / "b.npy"))
    # usage errors
    assert run("export", ck, ok=False).returncode == 2
    p = run("export", ck, "--out", d / "nope" / "x.fmd", ok=False)
    assert p.returncode == 1 and "nope" in p.stderr


def test_eval_and_sample_use_the_students_guidance(guided):
    d, ck, st = guided
    for f in (ck, st):
        p = run("eval", "--teacher", T, "--student", f, "--n", 200, "--euler", 1, "--json")
        explicit = run("eval", "--teacher", T, "--student", f, "--n", 200, "--euler", 1, "--json",
                       "--cfg", 3, "--cfg-interval", "0.1,0.9")
        assert scores(p) == scores(explicit)
        assert "warning" not in explicit.stderr, explicit.stderr
        unguided = run("eval", "--teacher", T, "--student", f, "--n", 200, "--euler", 1, "--json",
                       "--cfg", 1)
        assert scores(unguided) != scores(p)
        assert "warning" in unguided.stderr and "1" in unguided.stderr and "guidance 3" in unguided.stderr
    p = run("eval", "--teacher", T, "--student", st, "--n", 200, "--euler", 1)
    assert "student's guidance 3" in p.stderr, p.stderr
    # the teacher next to the student (--finish) too
    args = ["sample", "--student", st, "--teacher", T, "--delta", 0.5, "--finish", "--solver", "heun", "--steps", 2, "--class", 1,
            "--n", 32]
    run(*args, "--out", d / "f1.npy")
    run(*args, "--cfg", 3, "--cfg-interval", "0.1,0.9", "--out", d / "f2.npy")
    p = run(*args, "--cfg", 1, "--out", d / "f3.npy")
    assert "warning" in p.stderr
    assert np.array_equal(np.load(d / "f1.npy"), np.load(d / "f2.npy"))
    assert not np.array_equal(np.load(d / "f1.npy"), np.load(d / "f3.npy"))
