/* replay_main.c - a main() for the fuzz targets without libFuzzer: feeds
 * every file named on the command line (or every file in the directories
 * named) to LLVMFuzzerTestOneInput, and also every prefix of each file at
 * 64 evenly spaced lengths plus 256 single-byte mutations, so that ctest
 * replays the seed corpus and its neighbourhood under any compiler (and
 * under ASan in the sanitizer build). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc(n > 0 ? (size_t)n : 1);
    size_t got = fread(d, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(d);
        return 1;
    }
    LLVMFuzzerTestOneInput(d, (size_t)n);
    for (int k = 0; k < 64; k++) {
        size_t cut = (size_t)n * (size_t)k / 64;
        uint8_t *c = malloc(cut ? cut : 1);
        memcpy(c, d, cut);
        LLVMFuzzerTestOneInput(c, cut);
        free(c);
    }
    uint8_t *m = malloc(n > 0 ? (size_t)n : 1);
    uint32_t s = 2463534242u;
    for (int k = 0; k < 256 && n > 0; k++) {
        memcpy(m, d, (size_t)n);
        s ^= s << 13; s ^= s >> 17; s ^= s << 5;
        m[s % (uint32_t)n] ^= (uint8_t)(1u + (s >> 24) % 255u);
        LLVMFuzzerTestOneInput(m, (size_t)n);
    }
    free(m);
    free(d);
    return 0;
}

int main(int argc, char **argv)
{
    int files = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: no such file %s\n", argv[i]);
            return 1;
        }
        if (S_ISDIR(sb.st_mode)) {
            DIR *dir = opendir(argv[i]);
            struct dirent *e;
            while (dir && (e = readdir(dir))) {
                if (e->d_name[0] == '.') continue;
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
                bad += run_file(p);
                files++;
            }
            if (dir) closedir(dir);
        } else {
            bad += run_file(argv[i]);
            files++;
        }
    }
    printf("replay: %d inputs (each with 64 truncations and 256 mutations), %d unreadable\n", files, bad);
    return bad || files == 0;
}
