/* atomicfile.c - write to a temporary, fsync, rename into place (see
 * atomicfile.h); stale temporaries of dead writers are swept first. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "util/atomicfile.h"
#include "util/util.h"

/* Directory and base name of path (dir is "." when path has no slash). */
static char *split(const char *path, const char **base)
{
    char *dir = fmd_strdup(path);
    if (!dir) return NULL;
    char *slash = strrchr(dir, '/');
    if (!slash) {
        *base = path;
        dir[0] = '.';
        dir[1] = '\0';
        return dir;
    }
    *base = path + (slash - dir) + 1;
    if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    return dir;
}

/* 1 when the suffix after "<base>.tmp" names a temporary whose writer is
 * gone: ".<pid>.<n>" with no such process, or an older name (".tmp",
 * ".tmp.<hex>") last modified before the target. */
static int is_stale(const char *suffix, const struct stat *tmp_st, const struct stat *target_st,
                    int have_target)
{
    if (suffix[0] == '.') {
        char *e;
        errno = 0;
        long pid = strtol(suffix + 1, &e, 10);
        if (!errno && e != suffix + 1 && *e == '.' && pid > 0) {
            char *e2;
            strtol(e + 1, &e2, 10);
            if (e2 != e + 1 && *e2 == '\0')
                return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
        }
    } else if (suffix[0] != '\0') {
        return 0;   /* "<base>.tmpX...": not ours */
    }
    /* an older naming: stale only when older than the file it would replace */
    return have_target && tmp_st->st_mtime < target_st->st_mtime;
}

int afile_sweep_stale(const char *path)
{
    const char *base;
    char *dir = path ? split(path, &base) : NULL;
    if (!dir) return 0;
    DIR *d = opendir(dir);
    if (!d) {
        fmd_free(dir);
        return 0;
    }
    struct stat target_st;
    const int have_target = stat(path, &target_st) == 0;
    const size_t bl = strlen(base);
    int removed = 0;
    size_t dl = strlen(dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp", 4) != 0) continue;
        char *full = fmd_malloc(dl + 1 + strlen(n) + 1);
        if (!full) break;
        memcpy(full, dir, dl);
        full[dl] = '/';
        strcpy(full + dl + 1, n);
        struct stat st;
        if (lstat(full, &st) == 0 && S_ISREG(st.st_mode) &&
            is_stale(n + bl + 4, &st, &target_st, have_target) && unlink(full) == 0) {
            removed++;
            fmd_log(FMD_LOG_INFO, "removed '%s', the temporary file of an interrupted save of "
                    "'%s' (%lld bytes)", full, path, (long long)st.st_size);
        }
        fmd_free(full);
    }
    closedir(d);
    fmd_free(dir);
    return removed;
}

fmd_status afile_begin(afile *a, const char *path, const char *who)
{
    FMD_CHECK_ARG(a && path && path[0] && who, "afile_begin: NULL argument or empty path");
    memset(a, 0, sizeof *a);
    a->fd = -1;
    afile_sweep_stale(path);
    size_t n = strlen(path);
    a->path = fmd_strdup(path);
    a->tmp = fmd_malloc(n + 48);
    if (!a->path || !a->tmp) {
        afile_abort(a);
        return fmd_seterr(FMD_ERR_OOM, "%s: out of memory", who);
    }
    static _Atomic unsigned counter = 0;
    int e = 0;
    for (int tries = 0; tries < 100; tries++) {
        unsigned c = counter++;
        snprintf(a->tmp, n + 48, "%s.tmp.%ld.%u", path, (long)getpid(), c);
        a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        e = errno;
        if (a->fd >= 0 || e != EEXIST) break;
    }
    if (a->fd < 0) {
        fmd_status st = fmd_seterr(FMD_ERR_IO, "%s '%s': cannot create temporary file '%s': %s",
                                   who, path, a->tmp, strerror(e));
        fmd_free(a->tmp);
        a->tmp = NULL;   /* nothing to unlink */
        afile_abort(a);
        return st;
    }
    return FMD_OK;
}

fmd_status afile_stdio(afile *a, const char *who)
{
    a->fp = fdopen(a->fd, "wb");
    if (!a->fp) return fmd_seterr(FMD_ERR_IO, "%s '%s': fdopen: %s", who, a->path, strerror(errno));
    return FMD_OK;
}

fmd_status afile_commit(afile *a, const char *who)
{
    fmd_status st = FMD_OK;
    if (a->fp && fflush(a->fp) != 0)
        st = fmd_seterr(FMD_ERR_IO, "%s '%s': write to '%s' failed: %s", who, a->path, a->tmp,
                        strerror(errno));
    if (!st && fsync(a->fd) != 0)
        st = fmd_seterr(FMD_ERR_IO, "%s '%s': fsync of '%s' failed: %s", who, a->path, a->tmp,
                        strerror(errno));
    if (!st) {
        int r = a->fp ? fclose(a->fp) : close(a->fd);
        a->fp = NULL;
        a->fd = -1;
        if (r != 0)
            st = fmd_seterr(FMD_ERR_IO, "%s '%s': close of '%s' failed: %s", who, a->path, a->tmp,
                            strerror(errno));
    }
    if (!st && rename(a->tmp, a->path) != 0)
        st = fmd_seterr(FMD_ERR_IO, "%s '%s': rename from '%s' failed: %s", who, a->path, a->tmp,
                        strerror(errno));
    if (!st) {
        fmd_free(a->tmp);
        a->tmp = NULL;   /* renamed: nothing to unlink */
        /* fsync the directory so that the rename itself is durable; some
         * file systems refuse fsync on a directory: not an error */
        const char *base;
        char *dir = split(a->path, &base);
        int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY) : -1;
        fmd_free(dir);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
    }
    afile_abort(a);
    return st;
}

void afile_abort(afile *a)
{
    if (!a) return;
    if (a->fp) fclose(a->fp);
    else if (a->fd >= 0) close(a->fd);
    a->fp = NULL;
    a->fd = -1;
    if (a->tmp) unlink(a->tmp);
    fmd_free(a->tmp);
    fmd_free(a->path);
    a->tmp = a->path = NULL;
}
