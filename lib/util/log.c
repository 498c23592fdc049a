/* log.c - library log lines go to the host's callback, or nowhere. */
#include <stdarg.h>
#include <stdio.h>
#include "util.h"

static fmd_log_fn g_log = NULL;
static void *g_log_user = NULL;
static int g_log_level = FMD_LOG_WARN;

void fmd_set_log_callback(fmd_log_fn fn, void *user, int max_level)
{
    g_log = fn;
    g_log_user = user;
    g_log_level = max_level;
}

void fmd_log(int level, const char *fmt, ...)
{
    if (!g_log || level > g_log_level) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_log(level, buf, g_log_user);
}
