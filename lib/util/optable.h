/* optable.h - options as data.  Every consumer of an fmd_options bag (the
 * distiller, the student, teacher training, the sampler, the ODE solver, the
 * evaluator, the teacher loaders) owns one static table of these entries:
 * key, type, range or allowed strings, default, where the value lives in the
 * consumer's config struct, the condition under which it acts, and a line of
 * help.  One routine applies a bag to a config through the table, so every
 * accepted key reaches its field, every out-of-range value is refused naming
 * the key, and --help, docs/ tables and checkpoint metadata are generated
 * from the same table (fmd_option_describe, lib/util/optable.c).
 *
 * Entries are written with the OPT_* macros below inside the consumer's file
 * after `#define OPT_CFG its_config_type`: the macro reads the field's C type
 * with _Generic, so the storage can never disagree with the field. */
#ifndef FMD_UTIL_OPTABLE_H
#define FMD_UTIL_OPTABLE_H

#include <stddef.h>
#include <stdint.h>
#include "fmd.h"

typedef enum { OT_INT = 0, OT_NUM = 1, OT_CHOICE = 2, OT_STR = 3 } opt_type;
typedef enum { OS_I64, OS_INT, OS_U64, OS_F64, OS_F32, OS_STR } opt_store;

enum {
    OPT_LO_OPEN = 1,    /* the range excludes lo: (lo, hi]                          */
    OPT_RESUMABLE = 2,  /* may differ when a checkpoint is resumed (applied, logged)  */
    OPT_NO_SAVE = 4,    /* not stored in checkpoints (paths, report periods)         */
    OPT_EVEN = 8        /* integers: must be even                                     */
};

typedef struct opt_spec {
    const char *key;
    opt_type type;
    opt_store store;
    unsigned flags;
    size_t offset;          /* offsetof(config, field)                               */
    double lo, hi;          /* numbers: the range (inclusive unless OPT_LO_OPEN)     */
    double def;             /* numbers: the default; choices: the default's index    */
    const char *choices;    /* OT_CHOICE: "a|b|c", stored as the index               */
    const char *def_text;   /* NULL: the default is def; else what the default is,
                             * in words ("the teacher's"), set by the consumer        */
    const char *applies;    /* NULL, or clauses "key=value" (value may be "a|b"),
                             * "key!=value", "key>number", "key<number", joined by ',' (all must
                             * hold): given otherwise, the key is refused            */
    const char *help;
} opt_spec;

/* A key that existed once: a bag that sets it gets this note instead of a
 * plain "unknown option" ("renamed 'lr_warmup'", "removed: ..."). */
typedef struct opt_gone {
    const char *key, *note;
} opt_gone;

typedef struct opt_table {
    const char *consumer;   /* "distiller", "student", ...                            */
    const char *fn;         /* the public call that takes the options (messages)     */
    const opt_spec *spec;
    int n;
    const opt_gone *gone;   /* NULL or a list ending with {NULL, NULL}               */
} opt_table;

#define OPT_STORE_(f)                                                                  \
    _Generic(((OPT_CFG *)0)->f, int64_t: OS_I64, int: OS_INT, uint64_t: OS_U64,       \
             double: OS_F64, float: OS_F32, const char *: OS_STR)
#define OPT_E_(key, type, f, flags, lo, hi, def, choices, dtext, applies, help)       \
    {key, type, OPT_STORE_(f), flags, offsetof(OPT_CFG, f), lo, hi, def, choices,     \
     dtext, applies, help}
/* An integer, a number, one of the strings in choices ("a|b|c"), a free string. */
#define OPT_INT(key, f, lo, hi, def, flags, applies, help) \
    OPT_E_(key, OT_INT, f, flags, lo, hi, def, NULL, NULL, applies, help)
#define OPT_NUM(key, f, lo, hi, def, flags, applies, help) \
    OPT_E_(key, OT_NUM, f, flags, lo, hi, def, NULL, NULL, applies, help)
#define OPT_CHOICE(key, f, choices, def, flags, applies, help) \
    OPT_E_(key, OT_CHOICE, f, flags, 0, 0, def, choices, NULL, applies, help)
#define OPT_STRING(key, f, flags, applies, help) \
    OPT_E_(key, OT_STR, f, flags, 0, 0, 0, NULL, NULL, applies, help)
/* Numbers whose default depends on context (the teacher, the run): dtext says what. */
#define OPT_NUM_CTX(key, f, lo, hi, dtext, flags, applies, help) \
    OPT_E_(key, OT_NUM, f, flags, lo, hi, 0, NULL, dtext, applies, help)
#define OPT_INT_CTX(key, f, lo, hi, dtext, flags, applies, help) \
    OPT_E_(key, OT_INT, f, flags, lo, hi, 0, NULL, dtext, applies, help)

#define OPT_TABLE(consumer, fn, spec, gone) \
    {consumer, fn, spec, (int)(sizeof spec / sizeof spec[0]), gone}

/* Write every entry's default into cfg (context defaults: 0 / NULL; the
 * consumer sets those itself). */
void opt_defaults(const opt_table *t, void *cfg);
/* Apply the bag o (may be NULL) to cfg: unknown keys, wrong types,
 * out-of-range values and unknown choices are FMD_ERR_INVALID_ARG naming the
 * key, the value and what is allowed.  given (t->n bytes, may be NULL)
 * receives 1 for each key o sets.  cfg is changed only on success. */
fmd_status opt_apply(const opt_table *t, const fmd_options *o, void *cfg, unsigned char *given);
/* Refuse keys that were given (given[i]) but whose `applies` condition does
 * not hold in cfg: "option 'fd_eps' applies with target=fd only". */
fmd_status opt_check_applies(const opt_table *t, const void *cfg, const unsigned char *given);
/* The index of key in t, or -1. */
int opt_find(const opt_table *t, const char *key);
/* The value of entry s in cfg as text ("0.001", "cosine", "a/b.fmd"); the
 * exact form a checkpoint stores (numbers with %.17g). */
void opt_value_text(const opt_spec *s, const void *cfg, char *buf, size_t len);
/* Parse text (as opt_value_text writes it) into entry s of cfg, with the
 * same checks as opt_apply.  Errors: FMD_ERR_FORMAT naming the key. */
fmd_status opt_parse_text(const opt_table *t, const opt_spec *s, const char *text, void *cfg);
/* 1 when entries s of a and b hold the same value. */
int opt_same(const opt_spec *s, const void *a, const void *b);
/* The default as text ("1e-3", "cosine", or def_text), the type as text
 * ("int", "num", "str", "a|b|c") and the range as text ("[1e-06, 1]"; "" for
 * strings): what --help and the docs tables print. */
void opt_default_text(const opt_spec *s, char *buf, size_t len);
void opt_range_text(const opt_spec *s, char *buf, size_t len);

#endif
