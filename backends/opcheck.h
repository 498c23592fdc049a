/* opcheck.h - compare a backend's ops with the reference backend. */
#ifndef FMD_OPCHECK_H
#define FMD_OPCHECK_H
#include "backend.h"

int opcheck_num_cases(void);
const char *opcheck_case_name(int i);
int opcheck_case_variants(int i);
/* Run case i (sizes s[3], variant v, input seed) on be and on ref; *worst is
 * the largest NMSE over the outputs.  FMD_ERR_INTERNAL with a message naming
 * the op, variant and sizes when a bound is exceeded. */
fmd_status opcheck_run(fmd_backend *be, fmd_backend *ref, int i, const int64_t *s, int v, uint64_t seed,
                       double *worst);
#endif
