/* student_internal.h - what the distiller and the sampler may ask of an
 * fmd_student (lib/api/student.c). */
#ifndef FMD_STUDENT_INTERNAL_H
#define FMD_STUDENT_INTERNAL_H

#include "fmd.h"
#include "backend.h"
#include "nn/model.h"

/* The student network (student form F(z, delta, c)); owned by the student. */
nn_model *student_net(fmd_student *s);
fmd_backend *student_backend(const fmd_student *s);
/* Wrap an existing student-form network into a new handle that takes
 * ownership of net (destroyed with the handle, also on failure). */
fmd_status student_wrap(fmd_backend *be, nn_model *net, fmd_student **out);
/* Record that the network's arena was (re)sized for exactly b rows by
 * someone else (ff_create): host forwards use chunks of b on the CPU and
 * may grow the arena (never below b) on a device backend. */
void student_note_reserved(fmd_student *s, int64_t b);
/* Record key = value of how the student was made (fmd_student_made; saved
 * as metadata "made.KEY"); replaces an earlier value.  At most
 * STUDENT_MADE_MAX keys.  Errors: FMD_ERR_OOM, FMD_ERR_INTERNAL (full). */
#define STUDENT_MADE_MAX 96
fmd_status student_set_made(fmd_student *s, const char *key, const char *value);
/* Rows one pass of fmd_student_forward takes now (0 before the first). */
int64_t student_forward_chunk(const fmd_student *s);

#endif
