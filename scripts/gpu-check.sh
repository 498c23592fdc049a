#!/usr/bin/env bash
# gpu-check.sh - the GPU check of libfmd, meant for a machine with an NVIDIA
# GPU and the CUDA toolkit: configure and build with the CUDA plugin into
# build-gpu, run the CUDA tests (op tests, plugin test, cross-backend test),
# the throughput benchmark (CPU vs GPU, and PyTorch when it is there),
# distillation on the GPU (against PyTorch),
# one-step sampling through `fmd sample`, then the rest of the test suite
# with the time left.  Whole run < 6 minutes.
#
# Log: $OUT/gpu-check.log when OUT is set (the device tool's output folder),
# else build-gpu/gpu-check.log.  Exit status: 0 when every step passed.
#
# Build dependencies (oneDNN, OpenBLAS, zlib, pkg-config) are taken from the
# system; where the GPU machine lacks them and cannot download them, Debian
# packages carried in .gpudeps/ are unpacked into build-gpu/deps and used
# instead.  Fill .gpudeps on a Debian 12 development machine first:
#     scripts/gpu-check.sh --fetch-deps
# and carry it (the device tool's carry: [".gpudeps"]).
#
# --quick: for a short lease (about 150 s of command time): builds only the
# plugin, the CUDA tests and the benchmark, runs the CUDA tests directly, the
# GPU benchmark and then the CPU benchmark with the time left; no PyTorch, no
# rest of the suite.
#
# --exec 'CMD': configure and build the library, the plugin and the
# benchmarks only, then run CMD in the repository root with the build's
# environment (FMD_BACKEND_PATH, and the carried packages' library path when
# they were used) and exit with its status: for one-off GPU measurements
# (one process at a time: processes sharing the GPU time-slice it, see
# docs/benchmarks.md).  The log is then $OUT/gpu-exec.log.
#
# Options (environment): BUILD_DIR (default build-gpu), FMD_GPU_USE_DEPS=1
# (use .gpudeps even when the system has the packages), GPU_CHECK_BUDGET
# (seconds, default 330, 150 with --quick).
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEPS_SRC=$ROOT/.gpudeps
DEB_LIST="libdnnl-dev libdnnl2 ocl-icd-libopencl1 libopenblas-dev libopenblas-pthread-dev
libopenblas0-pthread libopenblas0 libgfortran5 libquadmath0 zlib1g-dev zlib1g pkgconf-bin pkgconf
libpkgconf3 pkg-config"

if [ "${1:-}" = "--fetch-deps" ]; then
    mkdir -p "$DEPS_SRC" && cd "$DEPS_SRC" || exit 1
    # shellcheck disable=SC2086
    apt-get download $DEB_LIST || exit 1
    ls -la "$DEPS_SRC"
    exit 0
fi

QUICK=0
EXEC=
[ "${1:-}" = "--quick" ] && QUICK=1
if [ "${1:-}" = "--exec" ]; then
    [ -n "${2:-}" ] || { echo "usage: scripts/gpu-check.sh --exec 'command'" >&2; exit 2; }
    EXEC=$2
fi
BUILD=${BUILD_DIR:-build-gpu}
if [ $QUICK = 1 ]; then BUDGET=${GPU_CHECK_BUDGET:-150}; else BUDGET=${GPU_CHECK_BUDGET:-330}; fi
mkdir -p "$BUILD"
LOG_NAME=gpu-check.log
[ -n "$EXEC" ] && LOG_NAME=gpu-exec.log
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; LOG=$OUT/$LOG_NAME; else LOG=$BUILD/$LOG_NAME; fi
T0=$(date +%s)
FAILED=()
elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( BUDGET - $(elapsed) )); }
step() { echo; echo "==== [$(elapsed)s] $*"; }
fail() { echo "FAILED: $*"; FAILED+=("$*"); }

main() {
step "machine"
date -u
uname -srm
(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm \
    --format=csv) || echo "nvidia-smi: not found"
(/usr/local/cuda/bin/nvcc --version 2>/dev/null || nvcc --version) | tail -2 || echo "nvcc: not found"
ls /usr/local/cuda/lib64/libcublas.so* 2>/dev/null | head -2
cmake --version | head -1
cc --version | head -1
NPROC=$(nproc)
echo "cores: $NPROC"
PY=python3
[ -x /opt/torch/.venv/bin/python3 ] && PY=/opt/torch/.venv/bin/python3

# ---- dependencies ----------------------------------------------------------
use_carried_deps() {
    local D=$ROOT/$BUILD/deps
    if ! ls "$DEPS_SRC"/*.deb >/dev/null 2>&1; then
        echo "no .gpudeps/*.deb to fall back on (run scripts/gpu-check.sh --fetch-deps and carry .gpudeps)"
        return 1
    fi
    rm -rf "$D" && mkdir -p "$D"
    for f in "$DEPS_SRC"/*.deb; do
        if command -v dpkg-deb >/dev/null; then
            dpkg-deb -x "$f" "$D" || return 1
        else
            (t=$(mktemp -d) && cd "$t" && ar x "$f" && tar -xf data.tar.* -C "$D" && rm -rf "$t") || return 1
        fi
    done
    local L=$D/usr/lib/x86_64-linux-gnu
    ln -sf libopenblasp-r0.3.21.so "$L/openblas-pthread/libopenblas.so.0" 2>/dev/null
    # pkg-config files name /usr; point them into the unpacked tree
    find "$D" -name '*.pc' -exec sed -i "s|=/usr/|=$D/usr/|g; s|=/usr\$|=$D/usr|g; s|-I/usr/|-I$D/usr/|g" {} +
    # zlib1g unpacks into lib/ (Debian's merged /usr): point libz.so there
    local Z
    Z=$(ls "$D"/lib/x86_64-linux-gnu/libz.so.1.* "$L"/libz.so.1.* 2>/dev/null | head -1)
    [ -n "$Z" ] && ln -sf "$Z" "$L/libz.so"
    export CMAKE_PREFIX_PATH="$D/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    export PKG_CONFIG_PATH="$L/openblas-pthread/pkgconfig:$L/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    export LD_LIBRARY_PATH="$L:$L/openblas-pthread:$D/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LIBRARY_PATH="$L:$L/openblas-pthread:$D/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export CPATH="$D/usr/include${CPATH:+:$CPATH}"
    EXTRA_CMAKE+=(-DZLIB_ROOT="$D/usr")
    if ! command -v pkg-config >/dev/null || [ "${FMD_GPU_USE_DEPS:-0}" = 1 ]; then
        EXTRA_CMAKE+=(-DPKG_CONFIG_EXECUTABLE="$D/usr/bin/pkgconf")
    fi
    CARRIED=1
    echo "using the carried packages unpacked in $D"
}

CARRIED=0
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
EXTRA_CMAKE=()
NVCC=/usr/local/cuda/bin/nvcc
[ -x "$NVCC" ] || NVCC=$(command -v nvcc || echo nvcc)
configure() {
    local test_py=()
    command -v "$PY" >/dev/null && test_py=(-DFMD_TEST_PYTHON="$(command -v "$PY")")
    cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DFMD_CUDA=ON \
        -DCMAKE_CUDA_COMPILER="$NVCC" "${test_py[@]}" "${EXTRA_CMAKE[@]}" >"$BUILD/configure.log" 2>&1
}

step "configure ($BUILD)"
if [ "${FMD_GPU_USE_DEPS:-0}" = 1 ]; then
    use_carried_deps || fail "carried dependencies"
    rm -f "$BUILD/CMakeCache.txt"
fi
if ! configure; then
    tail -15 "$BUILD/configure.log"
    echo "configure failed with the system's packages; trying the carried ones"
    rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles"
    if use_carried_deps && configure; then
        echo "configured with the carried packages"
    else
        tail -30 "$BUILD/configure.log"
        fail "configure"
    fi
fi
grep -E "^(dnnl_DIR|ZLIB_INCLUDE_DIR|PKG_CONFIG_EXECUTABLE|CMAKE_CUDA_COMPILER):" "$BUILD/CMakeCache.txt" 2>/dev/null

step "build (-j$NPROC)"
KEEP_GOING=(-k)
[ ${#GEN[@]} -gt 0 ] && KEEP_GOING=(-k 0)
# the plugin first (it needs nothing else), then everything, keeping going
# past a target that fails so that the rest can still be tested
if ! timeout 120 cmake --build "$BUILD" --target fmd_cuda -j"$NPROC" >"$BUILD/build-plugin.log" 2>&1; then
    grep -E "error" "$BUILD/build-plugin.log" | head -20
    fail "build of libfmd-cuda.so"
fi
TARGETS=()
[ $QUICK = 1 ] && TARGETS=(--target test_backend_ops test_backend_fused test_cross_backend test_cuda_plugin bench_gpu)
[ -n "$EXEC" ] && TARGETS=(--target fmd bench_gmm bench_gpu fmd_cli)
if ! timeout $(( $(left) > 100 ? $(left) - 80 : 40 )) cmake --build "$BUILD" "${TARGETS[@]}" -j"$NPROC" -- \
        "${KEEP_GOING[@]}" >"$BUILD/build.log" 2>&1; then
    grep -E "error|Error" "$BUILD/build.log" | head -40
    tail -20 "$BUILD/build.log"
    fail "build"
fi
echo "build warnings: $(grep -ciE "warning" "$BUILD/build.log")"
ls -la "$BUILD"/libfmd-cuda.so 2>/dev/null || fail "libfmd-cuda.so was not built"

if [ -n "$EXEC" ]; then
    export FMD_BACKEND_PATH=$ROOT/$BUILD FMD_BUILD_DIR=$ROOT/$BUILD FMD_PYTHON=$PY
    step "run: $EXEC"
    if [ ${#FAILED[@]} -gt 0 ]; then printf 'not run: the build failed: %s\n' "${FAILED[@]}"; exit 1; fi
    bash -c "$EXEC"
    rc=$?
    step "summary ($(elapsed)s): the command exited with $rc"
    exit $rc
fi
if [ $QUICK = 1 ]; then
    export FMD_BACKEND_PATH=$ROOT/$BUILD
    GPU=0
    command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && GPU=1
    step "CUDA tests, run directly"
    for t in "test_backend_ops cuda" "test_backend_fused cuda" "test_cross_backend cpu cuda" "test_cuda_plugin"; do
        set -- $t
        exe=$BUILD/tests/$1
        [ -x "$exe" ] || { fail "$1 not built"; continue; }
        echo "--- $t"
        timeout 60 "$exe" "${@:2}" 2>&1 | tail -30
        rc=${PIPESTATUS[0]}
        if [ "$rc" -eq 77 ] && [ $GPU = 0 ]; then continue; fi
        [ "$rc" -eq 0 ] || fail "$t (rc $rc)"
    done
    step "throughput benchmark on the GPU (bench_gpu --backends cuda)"
    timeout 50 "$BUILD/bench/bench_gpu" --seconds 1 --backends cuda 2>&1 || fail "bench_gpu cuda (rc $?)"
    if [ "$(left)" -gt 70 ]; then
        step "SiT-B/2 on the GPU with TF32 tensor cores for the GEMMs (FMD_CUDA_TF32=1)"
        FMD_CUDA_TF32=1 timeout 20 "$BUILD/bench/bench_gpu" --seconds 1 --backends cuda --models sit 2>&1 | grep -v "^#"
    fi
    if [ "$(left)" -gt 25 ]; then
        step "throughput benchmark on the CPU ($(( $(left) - 5 ))s at most)"
        timeout $(( $(left) - 5 )) "$BUILD/bench/bench_gpu" --seconds 1 --backends cpu 2>&1 || echo "bench_gpu cpu: rc $?"
    fi
    step "summary ($(elapsed)s)"
    if [ ${#FAILED[@]} -eq 0 ]; then echo "gpu-check --quick: ALL PASSED"; exit 0; fi
    printf 'gpu-check --quick: FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi

GPU_TESTS='cuda|plugin|cross|backend_ops|fused'
export FMD_BACKEND_PATH=$ROOT/$BUILD

step "CUDA tests (ctest -R '$GPU_TESTS' -E emu)"
if [ -f "$BUILD/CTestTestfile.cmake" ]; then
    # (the *_emu tests run the plugin's code on the host, for machines without a GPU)
    timeout 150 ctest --test-dir "$BUILD" -R "$GPU_TESTS" -E emu --output-on-failure -j4 --timeout 120 \
        >"$BUILD/ctest-gpu.log" 2>&1
    rc=$?
    cat "$BUILD/ctest-gpu.log"
    [ $rc -eq 0 ] || fail "CUDA tests (ctest rc $rc)"
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
        if grep -qE "\*\*\*Skipped|Not Run" "$BUILD/ctest-gpu.log"; then
            fail "a CUDA test was skipped on a machine with a GPU"
        fi
    fi
else
    fail "no tests configured"
fi

step "cross-backend check and plugin details"
for t in test_cross_backend test_cuda_plugin; do
    exe=$(find "$BUILD/tests" -maxdepth 1 -name "$t" -type f 2>/dev/null | head -1)
    [ -n "$exe" ] || { echo "$t: not built"; continue; }
    timeout 90 "$exe" 2>&1 | tail -25
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] || fail "$t (rc $rc)"
done

step "network-engine and training tests on the GPU (FMD_TEST_BACKEND=cuda)"
for t in test_nn_layers test_nn_models test_train; do
    exe=$BUILD/tests/$t
    [ -x "$exe" ] || { echo "$t: not built"; continue; }
    [ "$(left)" -gt 150 ] || { echo "$t: skipped, not enough time left"; continue; }
    FMD_TEST_BACKEND=cuda timeout 60 "$exe" >"$BUILD/$t-cuda.log" 2>&1
    rc=$?
    tail -3 "$BUILD/$t-cuda.log"
    [ $rc -eq 0 ] || { grep -iE "fail|error" "$BUILD/$t-cuda.log" | head -20; fail "$t on cuda (rc $rc)"; }
done

step "throughput benchmark on the GPU (bench_gpu --backends cuda)"
if [ -x "$BUILD/bench/bench_gpu" ]; then
    timeout 75 "$BUILD/bench/bench_gpu" --seconds 2 --backends cuda 2>&1
    rc=$?
    [ $rc -eq 0 ] || fail "bench_gpu cuda (rc $rc)"
else
    fail "bench_gpu was not built"
fi
if [ -x "$BUILD/bench/bench_gpu" ] && [ "$(left)" -gt 120 ]; then
    step "the same with TF32 tensor cores for the GEMMs (FMD_CUDA_TF32=1)"
    FMD_CUDA_TF32=1 timeout 40 "$BUILD/bench/bench_gpu" --seconds 2 --backends cuda 2>&1 | grep -v "^#"
fi
if [ -f bench/gpu_torch.py ] && [ "$(left)" -gt 100 ]; then
    step "PyTorch reference (bench/gpu_torch.py)"
    timeout 45 "$PY" bench/gpu_torch.py --seconds 2 2>&1 || echo "PyTorch reference did not finish (rc $?)"
fi
if [ -x "$BUILD/bench/bench_gmm" ] && [ "$(left)" -gt 110 ]; then
    # the whole FreeFlow step (student, exact teacher, auxiliary network,
    # AdamW, EMA) on the GPU, scored by the CPU evaluator, against PyTorch
    # on the same GPU; then the same with a 16x larger batch
    step "distillation on the GPU (bench_gmm --backend cuda, ring8 pred+corr)"
    FMD_PYTHON=$PY timeout 60 "$BUILD/bench/bench_gmm" --backend cuda --teachers ring8 --rows both \
        --steps 2000 --eval-every 1000 --eval-n 4000 --pytorch-steps 200 --quiet >"$BUILD/gmm-cuda.log" 2>&1
    rc=$?
    grep -v "^$" "$BUILD/gmm-cuda.log"
    [ $rc -eq 0 ] || fail "bench_gmm --backend cuda (rc $rc)"
    step "the same with batch 8192"
    FMD_PYTHON=$PY timeout 40 "$BUILD/bench/bench_gmm" --backend cuda --teachers ring8 --rows both \
        --steps 500 --eval-every 500 --eval-n 2000 --pytorch-steps 100 --set batch=8192 --quiet 2>&1 \
        | grep -E "student|PyTorch|rror"
fi
FMD_CLI=$BUILD/bin/fmd
if [ -x "$FMD_CLI" ] && [ "$(left)" -gt 80 ]; then
    # one-step sampling through fmd_sampler (chunks of 64 MiB of noise, up to
    # 65,536 rows) with the default 4 x 256 student of ring8, GPU then CPU;
    # the first GPU call includes the plugin's start
    step "one-step sampling through fmd sample (ring8 student 4 x 256, 2^20 rows)"
    SDIR=$(mktemp -d)
    if timeout 30 "$FMD_CLI" distill --teacher mixture:ring8 --steps 10 --out "$SDIR/s.fmd" --quiet \
            --backend cpu >/dev/null 2>&1; then
        for be in cuda cuda cpu; do
            echo -n "$be: "
            timeout 30 "$FMD_CLI" sample --student "$SDIR/s.fmd" --n 1048576 --out "$SDIR/x.npy" \
                --backend $be --quiet --json 2>&1 | tail -1
            [ "${PIPESTATUS[0]}" -eq 0 ] || fail "fmd sample --backend $be"
        done
    else
        fail "fmd distill for the sampling check"
    fi
    rm -rf "$SDIR"
fi
if [ -x "$BUILD/bench/bench_gpu" ] && [ "$(left)" -gt 60 ]; then
    budget=$(( $(left) - 40 )); [ $budget -gt 100 ] && budget=100
    step "throughput benchmark on the CPU (bench_gpu --backends cpu, ${budget}s at most)"
    timeout "$budget" "$BUILD/bench/bench_gpu" --seconds 2 --backends cpu 2>&1 || echo "bench_gpu cpu: rc $?"
fi

# What this machine cannot run is named, not counted: the Python tests need
# pytest, numpy and torch in $PY; test_install links a host program against
# the system's oneDNN, absent where the carried packages were used.
NOT_HERE=$GPU_TESTS
if ! "$PY" -c "import pytest, numpy, torch" >/dev/null 2>&1; then
    NOT_HERE="$NOT_HERE|pytest_|test_nn_parity"
    echo "not run here (no pytest/numpy/torch in $PY): pytest_*, test_nn_parity"
fi
if [ $CARRIED = 1 ]; then
    NOT_HERE="$NOT_HERE|test_install"
    echo "not run here (the system has no oneDNN; the build used .gpudeps): test_install"
fi
step "remaining tests (ctest -E '$NOT_HERE', $(left)s left)"
if [ -f "$BUILD/CTestTestfile.cmake" ] && [ "$(left)" -gt 20 ]; then
    timeout $(( $(left) - 10 )) ctest --test-dir "$BUILD" -E "$NOT_HERE" --output-on-failure \
        -j"$NPROC" --timeout 120 >"$BUILD/ctest-rest.log" 2>&1
    rc=$?
    grep -E "tests passed|tests failed|Test +#|\*\*\*|Total Test time" "$BUILD/ctest-rest.log"
    [ $rc -eq 0 ] || { grep -B2 -A30 "Failed\|\*\*\*Timeout" "$BUILD/ctest-rest.log" | head -80; fail "remaining tests (rc $rc)"; }
else
    echo "skipped: not enough time left"
fi

step "summary ($(elapsed)s)"
if [ ${#FAILED[@]} -eq 0 ]; then
    echo "gpu-check: ALL PASSED"
    exit 0
fi
printf 'gpu-check: FAILED: %s\n' "${FAILED[@]}"
exit 1
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
