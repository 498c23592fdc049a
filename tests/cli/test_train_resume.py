"""`fmd train-teacher` loses no work: the output paths are checked before the
first step, the training state is checkpointed periodically and on SIGINT /
SIGTERM, and --resume continues a run bit for bit (the resumed teacher file
equals the one of an uninterrupted run byte for byte)."""
import os
import signal
import subprocess
import time

FMD = os.environ.get("FMD_CLI", "fmd")
ENV = dict(os.environ, FMD_NUM_THREADS="1", FMD_BACKEND="cpu", OMP_WAIT_POLICY="PASSIVE")
DATA = ["--data", "mixture:ring8", "--n", "2000", "--set", "width=64", "--set", "depth=2",
        "--set", "batch=64"]
STEPS = 12000


def run(*args, timeout=120):
    return subprocess.run([FMD, *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def test_bad_out_refused_before_training(tmp_path):
    # a million steps of the default network would run for hours: the refusal must come first
    t0 = time.monotonic()
    p = run("train-teacher", "--data", "mixture:ring8", "--out", tmp_path / "no-such-dir" / "t.fmd",
            "--steps", 1000000, timeout=60)
    assert p.returncode == 1 and "no-such-dir" in p.stderr and "does not exist" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and time.monotonic() - t0 < 30
    p = run("train-teacher", "--data", "mixture:ring8", "--out", tmp_path, "--steps", 1000000,
            timeout=60)
    assert p.returncode == 1 and "is a directory" in p.stderr, p.stderr
    p = run("train-teacher", "--data", "mixture:ring8", "--out", tmp_path / "t.fmd", "--checkpoint",
            tmp_path / "nope" / "c.fmd", "--steps", 1000000, timeout=60)
    assert p.returncode == 1 and "--checkpoint" in p.stderr and "nope" in p.stderr, p.stderr
    # the library checks its option checkpoint itself
    p = run("train-teacher", "--data", "mixture:ring8", "--out", tmp_path / "t.fmd", "--set",
            f"checkpoint={tmp_path / 'nope' / 'c.fmd'}", "--steps", 1000000, timeout=60)
    assert p.returncode == 1 and "checkpoint" in p.stderr and "nope" in p.stderr, p.stderr
    assert not (tmp_path / "t.fmd").exists()


def interrupt(out, sig, *extra):
    """Start a run, send sig once a new checkpoint has appeared, return its stderr."""
    ckpt = out.with_name(out.stem + ".ckpt.fmd")
    before = os.stat(ckpt).st_ino if ckpt.exists() else None
    p = subprocess.Popen([FMD, "train-teacher", *DATA, "--out", str(out), *map(str, extra)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and p.poll() is None:
        if ckpt.exists() and os.stat(ckpt).st_ino != before:
            break
        time.sleep(0.002)
    assert p.poll() is None, "the run ended before it could be interrupted"
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    return p.returncode, err


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    a, b = tmp_path / "a.fmd", tmp_path / "b.fmd"
    p = run("train-teacher", *DATA, "--out", a, "--steps", STEPS, "-q")
    assert p.returncode == 0, p.stderr
    # killed outright after the first periodic checkpoint (default period: 500 steps)
    rc, err = interrupt(b, signal.SIGKILL, "--steps", STEPS)
    assert rc == -signal.SIGKILL and not b.exists()
    # resumed, then stopped by SIGTERM and by Ctrl-C: each saves where it stopped
    for sig in (signal.SIGTERM, signal.SIGINT):
        rc, err = interrupt(b, sig, "--resume")
        assert rc == 1 and "interrupted at step" in err and "--resume" in err, err
        step = int(err.split("interrupted at step ")[1].split(":")[0])
        assert 0 < step < STEPS, err
        assert not b.exists()
    p = run("train-teacher", *DATA, "--out", b, "--resume")
    assert p.returncode == 0, p.stderr
    assert a.read_bytes() == b.read_bytes(), "the resumed run differs from the uninterrupted one"
    # the checkpoint loads as a teacher too
    assert run("info", b.with_name("b.ckpt.fmd")).returncode == 0


def test_resume_refuses_another_run(tmp_path):
    t = tmp_path / "t.fmd"
    assert run("train-teacher", *DATA, "--out", t, "--steps", 100, "-q").returncode == 0
    p = run("train-teacher", *DATA, "--out", t, "--resume")
    assert p.returncode == 2 and "already past" in p.stderr, p.stderr
    p = run("train-teacher", *DATA, "--out", t, "--resume", "--steps", 200, "--set", "lr=0.01")
    assert p.returncode == 2 and "'lr'" in p.stderr and "0.01" in p.stderr, p.stderr
    p = run("train-teacher", *DATA[:2], "--n", 1000, *DATA[4:], "--out", t, "--resume", "--steps", 200)
    assert p.returncode == 2 and "other data" in p.stderr, p.stderr
    p = run("train-teacher", *DATA, "--out", tmp_path / "u.fmd", "--resume")
    assert p.returncode == 1 and "cannot read the checkpoint" in p.stderr, p.stderr
    # a longer schedule continues
    p = run("train-teacher", *DATA, "--out", t, "--resume", "--steps", 150, "--json")
    assert p.returncode == 0 and '"steps": 150' in p.stdout, p.stderr
