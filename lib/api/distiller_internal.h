/* distiller_internal.h - what tests and benchmarks may ask of an
 * fmd_distiller beyond the public API (lib/api/distiller.c). */
#ifndef FMD_DISTILLER_INTERNAL_H
#define FMD_DISTILLER_INTERNAL_H

#include "fmd.h"
#include "algo/freeflow.h"

/* The trainer config of a distiller made with no options on a teacher
 * without guidance (the option table's defaults; planned length 0). */
void distiller_default_ff_config(ff_config *c);
/* The trainer config a distiller runs with (after options, context
 * defaults and any resume). */
const ff_config *distiller_ff_config(const fmd_distiller *d);
/* Tests: the trainer and the auxiliary network g (NULL without the
 * correction) of d. */
ff_trainer *distiller_trainer(fmd_distiller *d);
nn_model *distiller_aux(fmd_distiller *d);

#endif
