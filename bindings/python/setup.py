"""Bundle the CMake-built libfmd.so into the package (fmd/libfmd.so*), so that
an installed fmd loads its library without FMD_LIBRARY.

Why bundle rather than record a path: the wheel then keeps working when the
build tree is rebuilt, moved or deleted, in any virtual environment, and the
library always matches the bindings it was installed with.  The library is
taken from, in order: FMD_LIBRARY, FMD_BUILD_DIR/libfmd.so, the source tree's
build/libfmd.so.  The CUDA plugin (libfmd-cuda.so) next to it comes along.
Without a built library the package installs alone and loads libfmd from the
system loader (after `cmake --install`)."""
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def built_library():
    cands = []
    if os.environ.get("FMD_LIBRARY"):
        cands.append(Path(os.environ["FMD_LIBRARY"]))
    if os.environ.get("FMD_BUILD_DIR"):
        cands.append(Path(os.environ["FMD_BUILD_DIR"]) / "libfmd.so")
    cands.append(HERE.parent.parent / "build" / "libfmd.so")
    for c in cands:
        if c.is_file():
            return c.resolve()
    return None


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        lib = built_library()
        dest = Path(self.build_lib) / "fmd"
        if lib is None:
            print("fmd: no built libfmd.so found (FMD_LIBRARY, FMD_BUILD_DIR, ../../build): "
                  "the package will load libfmd from the system loader")
            return
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest / "libfmd.so")
        print(f"fmd: bundled {lib}")
        plugin = lib.parent / "libfmd-cuda.so"
        if plugin.is_file():
            shutil.copy2(plugin, dest / "libfmd-cuda.so")


setup(cmdclass={"build_py": BuildPyWithLibrary})
