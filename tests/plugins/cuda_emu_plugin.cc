/* cuda_emu_plugin.cc - backends/cuda/cuda_backend.cu compiled for the host
 * on top of tests/plugins/cuda_emu.h: libfmd-cuda-emu.so, a plugin with the
 * CUDA backend's own host code and kernels that runs without a GPU, so that
 * the op and cross-backend tests check the plugin's logic on every machine. */
#include "cuda/cuda_backend.cu"
