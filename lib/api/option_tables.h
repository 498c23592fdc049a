/* option_tables.h - the option table of every consumer of fmd_options (each
 * defined in the file that consumes it), and the registry that
 * fmd_option_count / fmd_option_describe read (option_tables.c). */
#ifndef FMD_OPTION_TABLES_H
#define FMD_OPTION_TABLES_H

#include "util/optable.h"

extern const opt_table opt_table_distiller;      /* lib/api/distiller.c      */
extern const opt_table opt_table_student;        /* lib/api/student.c        */
extern const opt_table opt_table_train;          /* lib/api/teacher_train.c  */
extern const opt_table opt_table_sampler;        /* lib/api/sampler.c        */
extern const opt_table opt_table_solver;         /* lib/algo/ode.c           */
extern const opt_table opt_table_evaluator;      /* lib/api/evaluate.c       */
extern const opt_table opt_table_teacher_load;   /* lib/api/teacher_io.c     */
extern const opt_table opt_table_safetensors;    /* lib/api/teacher_io.c     */
extern const opt_table opt_table_comm;           /* lib/comm/comm.c          */
extern const opt_table opt_table_dataset_idx;    /* lib/api/teacher_train.c  */

/* The table of a consumer by name, NULL when there is none. */
const opt_table *opt_table_of(const char *consumer);

#endif
