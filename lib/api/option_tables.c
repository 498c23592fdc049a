/* option_tables.c - the registry of option tables and the public calls that
 * describe them (fmd_option_consumer / _count / _describe). */
#include <stdio.h>
#include <string.h>
#include "api/option_tables.h"
#include "util/util.h"

static const opt_table *const k_tables[] = {
    &opt_table_distiller, &opt_table_student, &opt_table_train, &opt_table_sampler,
    &opt_table_solver, &opt_table_evaluator, &opt_table_teacher_load, &opt_table_safetensors, &opt_table_comm,
    &opt_table_dataset_idx,
};
enum { NTABLES = (int)(sizeof k_tables / sizeof k_tables[0]) };

const opt_table *opt_table_of(const char *consumer)
{
    for (int i = 0; consumer && i < NTABLES; i++)
        if (strcmp(k_tables[i]->consumer, consumer) == 0) return k_tables[i];
    return NULL;
}

const char *fmd_option_consumer(int index)
{
    return index >= 0 && index < NTABLES ? k_tables[index]->consumer : NULL;
}

int fmd_option_count(const char *consumer)
{
    const opt_table *t = opt_table_of(consumer);
    return t ? t->n : -1;
}

fmd_status fmd_option_describe(const char *consumer, int index, int what, char *buf, size_t len)
{
    const char *fn = "fmd_option_describe";
    const opt_table *t = opt_table_of(consumer);
    FMD_CHECK_ARG(t, "%s: unknown consumer '%.40s' (known: distiller, student, train, sampler, "
                  "solver, evaluator, teacher_load, safetensors, comm, dataset_idx)", fn, consumer ? consumer : "(null)");
    FMD_CHECK_ARG(index >= 0 && index < t->n, "%s: index %d outside [0, %d) for '%s'", fn, index,
                  t->n, consumer);
    FMD_CHECK_ARG(buf && len > 0, "%s: buf is NULL or empty", fn);
    const opt_spec *s = &t->spec[index];
    switch (what) {
    case FMD_OPTION_KEY: snprintf(buf, len, "%s", s->key); break;
    case FMD_OPTION_TYPE:
        snprintf(buf, len, "%s", s->type == OT_INT ? "int" : s->type == OT_NUM ? "num" : "str");
        break;
    case FMD_OPTION_DEFAULT: opt_default_text(s, buf, len); break;
    case FMD_OPTION_RANGE: opt_range_text(s, buf, len); break;
    case FMD_OPTION_APPLIES: snprintf(buf, len, "%s", s->applies ? s->applies : ""); break;
    case FMD_OPTION_HELP: snprintf(buf, len, "%s", s->help); break;
    default: return fmd_seterr(FMD_ERR_INVALID_ARG, "%s: unknown field %d", fn, what);
    }
    return FMD_OK;
}
