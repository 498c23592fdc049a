/* Stand-in for cuBLAS in the host build of the CUDA backend
 * (tests/plugins/cuda_emu.h). */
#include "../cuda_emu.h"
