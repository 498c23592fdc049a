# scripts/deps.sh - sourced by test.sh and demo.sh: the Debian packages libfmd
# needs to build and test, installed with apt-get when running as root.
# openmpi-bin, libopenmpi-dev: the MPI transport libfmd-mpi.so and its tests
# under mpirun (optional: libfmd builds and runs without them).
# ocl-icd-opencl-dev: Debian's dnnl-config.cmake calls find_package(OpenCL),
# and libdnnl-dev only recommends it (apt-get here skips recommends).
# abigail-tools: abidiff for the ABI baseline check (scripts/abi.sh).
FMD_DEBIAN_PACKAGES="build-essential cmake pkg-config libdnnl-dev ocl-icd-opencl-dev libopenblas-dev zlib1g-dev \
python3 python3-numpy python3-torch python3-pytest clang libclang-rt-dev dataset-fashion-mnist \
openmpi-bin libopenmpi-dev abigail-tools"

fmd_install_deps() {
  local missing=""
  for p in $FMD_DEBIAN_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # another apt-get or unattended-upgrades holding the dpkg lock: wait for it
    # (up to FMD_APT_LOCK_TIMEOUT seconds, default 600) instead of failing at once
    local wait="-o DPkg::Lock::Timeout=${FMD_APT_LOCK_TIMEOUT:-600}"
    ${FMD_APT_GET:-apt-get} $wait update -qq
    ${FMD_APT_GET:-apt-get} $wait install -y -qq --no-install-recommends $missing
  else
    echo "missing Debian packages (run as root or install them):$missing" >&2
    return 1
  fi
}
