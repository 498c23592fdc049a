"""scripts/test.sh ends with one summary line (passed / failed / skipped, the
failed tests' names, the fuzz result and the time), and scripts/deps.sh waits
for the dpkg lock instead of failing when another apt-get holds it."""
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def summary(tmp_path, text):
    log = tmp_path / "ctest.log"
    log.write_text(text)
    p = subprocess.run([REPO / "scripts" / "test.sh", "--summary", log], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_summary_line(tmp_path):
    ok = ("1/3 Test  #1: a ....   Passed    0.1 sec\n"
          "2/3 Test  #2: b ....***Skipped   0.1 sec\n"
          "3/3 Test  #3: c ....   Passed    0.1 sec\n\n"
          "100% tests passed, 0 tests failed out of 3\n")
    assert summary(tmp_path, ok) == "2 passed, 0 failed, 1 skipped (of 3 tests)"
    bad = ("1/2 Test  #1: a ....***Failed    0.1 sec\n"
           "2/2 Test  #2: b ....   Passed    0.1 sec\n\n"
           "50% tests passed, 1 tests failed out of 2\n\n"
           "The following tests FAILED:\n\t  1 - a (Failed)\nErrors while running CTest\n")
    assert summary(tmp_path, bad) == "1 passed, 1 failed, 0 skipped (of 2 tests); failed: a"
    # the release run prints it last, after the fuzzer (whose output goes to a log)
    src = (REPO / "scripts" / "test.sh").read_text()
    tail = src.rstrip().splitlines()[-2:]
    assert tail[0].startswith('echo "scripts/test.sh: $(summary') and tail[1] == "exit $rc"
    fuzz = [l for l in src.splitlines() if 'fuzz.sh" --seconds' in l]
    assert fuzz and all('> "$bdir/fuzz.log"' in l for l in fuzz), fuzz


@pytest.mark.skipif(os.geteuid() != 0, reason="fmd_install_deps installs only as root")
def test_deps_wait_for_the_dpkg_lock(tmp_path):
    fake = tmp_path / "apt-get"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'calls'}\n")
    fake.chmod(0o755)
    script = (f". {REPO / 'scripts' / 'deps.sh'}\nFMD_DEBIAN_PACKAGES=fmd-no-such-package-x\n"
              f"FMD_APT_GET={fake} fmd_install_deps")
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 2 and all("-o DPkg::Lock::Timeout=600" in c for c in calls), calls
    assert "update" in calls[0] and "install" in calls[1] and "fmd-no-such-package-x" in calls[1]
