/* error.c - status strings (generated from FMD_STATUS_LIST) and the
 * thread-local last-error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "util.h"
#include "fpmode.h"

static _Thread_local char tl_msg[512];
static _Thread_local fmd_status tl_status = FMD_OK;

const char *fmd_status_string(fmd_status st)
{
    switch (st) {
#define X(name, value, text) case name: return text;
        FMD_STATUS_LIST(X)
#undef X
    default: return "unknown status";
    }
}

const char *fmd_status_name(fmd_status st)
{
    switch (st) {
#define X(name, value, text) case name: return #name;
        FMD_STATUS_LIST(X)
#undef X
    default: return "FMD_UNKNOWN";
    }
}

fmd_status fmd_seterr(fmd_status st, const char *fmt, ...)
{
    /* format into a temporary first: callers may pass fmd_last_error() as
     * an argument to add context to the message already there */
    char buf[sizeof tl_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(tl_msg, buf, sizeof tl_msg);
    tl_status = st;
    fmd_log(FMD_LOG_DEBUG, "%s: %s", fmd_status_name(st), tl_msg);
    return st;
}

fmd_status fmd_err_prefix(fmd_status st, const char *prefix)
{
    return fmd_seterr(st, "%s: %s", prefix, tl_msg);   /* fmd_seterr copies first */
}

const char *fmd_last_error(void) { return tl_msg; }
fmd_status fmd_last_status(void) { return tl_status; }

void fmd_clear_error(void)
{
    tl_msg[0] = '\0';
    tl_status = FMD_OK;
}

const char *fmd_version(void) { return FMD_VERSION_STRING; }
int fmd_version_hex(void) { return FMD_VERSION_HEX; }

/* ---- the cancellation check of the calling thread (fmd_set_cancel_check) */
static _Thread_local fmd_cancel_fn tl_cancel = NULL;
static _Thread_local void *tl_cancel_user = NULL;
static _Thread_local int tl_cancel_held = 0;

void fmd_set_cancel_check(fmd_cancel_fn fn, void *user)
{
    tl_cancel = fn;
    tl_cancel_user = fn ? user : NULL;
}

fmd_status fmd_cancel_poll(const char *fn)
{
    if (!tl_cancel || tl_cancel_held) return FMD_OK;
    fmd_fpmode_pause_state ps;   /* the check runs in the caller's floating-point mode */
    fmd_fpmode_pause(&ps);
    int stop = tl_cancel(tl_cancel_user);
    fmd_fpmode_resume(&ps);
    if (!stop) return FMD_OK;
    return fmd_seterr(FMD_ERR_CANCELLED, "%s: cancelled (fmd_set_cancel_check)", fn);
}

void fmd_cancel_hold(int on) { tl_cancel_held += on ? 1 : -1; }
