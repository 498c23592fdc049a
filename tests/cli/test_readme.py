"""The README's commands run as written after the two Quick-start commands:
every shell block of README.md that is made of `fmd` commands (with the PATH
line before them) runs in a fresh directory, with the step counts scaled down by
the environment variable FMD_README_SCALE (default 0.005: 20000 teacher steps
become 100; the sample count of `fmd eval` by 20 times that, at least 20).  The README spells the command one way ("distill")."""
import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FMD = Path(os.environ.get("FMD_CLI", REPO / "build" / "bin" / "fmd")).resolve()
SCALE = float(os.environ.get("FMD_README_SCALE", "0.005"))


def blocks():
    return re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def scaled(text):
    def one(m):
        return f"{m.group(1)}{max(1, round(int(m.group(2)) * SCALE))}"
    def n(m):
        return f"{m.group(1)}{max(20, round(int(m.group(2)) * SCALE * 20))}"
    text = re.sub(r"(^fmd eval .*--n )(\d+)", n, text, flags=re.M)
    return re.sub(r"(--steps |decay_steps=)(\d+)", one, text)


def test_readme_commands_run(tmp_path):
    bs = blocks()
    path_line = [b for b in bs if "export PATH=" in b]
    assert path_line, "the README shows no PATH line"
    runnable = [b for b in bs if re.search(r"^fmd ", b, flags=re.M) and "cmake" not in b
                and "scripts/" not in b]
    assert runnable, "no block of fmd commands found"
    env = dict(os.environ, FMD_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE")
    if FMD == (REPO / "build" / "bin" / "fmd").resolve():
        prefix = f"cd {REPO}\n{path_line[0]}cd {tmp_path}\n"   # the PATH line as written
    else:  # another build directory: its bin/ instead
        prefix = f"export PATH={FMD.parent}:$PATH\ncd {tmp_path}\n"
    assert FMD.parent.name == "bin", f"fmd is built in {FMD.parent}, not in bin/"
    script = prefix + "set -e\nfmd --version\n" + "".join(scaled(b) for b in runnable)
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                       timeout=900)
    assert p.returncode == 0, f"README commands failed:\n{script}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    for f in ("teacher.fmd", "distill.fmd", "student.fmd", "sneakers.png"):
        assert (tmp_path / f).exists(), f"the README's commands wrote no {f}"


def test_readme_words():
    text = (REPO / "README.md").read_text()
    assert not re.search(r"\bdistil\b", text), "README spells 'distil'"
    assert "fmd distil " not in text
