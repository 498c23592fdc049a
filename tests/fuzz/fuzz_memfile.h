/* fuzz_memfile.h - the fuzz targets of path-based loaders put the input in
 * an anonymous memory file (memfd) and pass /proc/self/fd/N as the path:
 * no disk traffic, no temporary names. */
#ifndef FMD_FUZZ_MEMFILE_H
#define FMD_FUZZ_MEMFILE_H
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

/* Write data into a fresh memfd; path receives its name.  Returns the fd
 * (close it after use) or -1. */
static int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t cap)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}
#endif
