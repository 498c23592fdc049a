/* atomicfile.h - the one atomic-replace writer of the library (.fmd files,
 * .npy arrays, .png pictures).
 *
 * afile_begin creates "<path>.tmp.<pid>.<n>" (O_EXCL, mode 0666 so the
 * umask decides the permissions) next to path; the caller writes it through
 * a->fd or a->fp (afile_stdio); afile_commit flushes, fsyncs, closes and
 * renames it over path, then fsyncs the directory.  Until the rename path is
 * untouched: a crash or a kill leaves the old file intact.  afile_abort
 * closes and removes the temporary.
 *
 * Stale temporaries: a killed writer leaves its temporary behind.  Before it
 * creates its own, afile_begin removes the temporaries of the same path
 * whose writer is gone - "<path>.tmp.<pid>.<n>" whose pid is not a live
 * process, and older names ("<path>.tmp", "<path>.tmp.<hex>" of earlier
 * versions) last modified before path itself - and says so in one INFO log
 * line.  A temporary of a live process (another writer, or this one) is
 * never touched. */
#ifndef FMD_UTIL_ATOMICFILE_H
#define FMD_UTIL_ATOMICFILE_H

#include <stdio.h>
#include "fmd.h"

typedef struct afile {
    char *path, *tmp;
    int fd;
    FILE *fp;            /* set by afile_stdio; then commit goes through it */
} afile;

/* Remove the stale temporaries of path (see above); returns how many. */
int afile_sweep_stale(const char *path);
/* Create the temporary of path (after the stale sweep).  who prefixes the
 * messages.  Errors: FMD_ERR_INVALID_ARG, FMD_ERR_IO (naming the
 * temporary), FMD_ERR_OOM.  On error a is left closed (abort is a no-op). */
fmd_status afile_begin(afile *a, const char *path, const char *who);
/* A stdio stream over a->fd (owned by a).  Errors: FMD_ERR_IO. */
fmd_status afile_stdio(afile *a, const char *who);
/* Flush, fsync, close and rename into place; on any failure the temporary
 * is removed and path is untouched.  Errors: FMD_ERR_IO naming the step. */
fmd_status afile_commit(afile *a, const char *who);
/* Close and remove the temporary.  Safe on a closed or zeroed afile. */
void afile_abort(afile *a);

#endif
