/* Stand-in for the CUDA runtime header in the host build of the CUDA
 * backend (tests/plugins/cuda_emu.h). */
#include "../cuda_emu.h"
