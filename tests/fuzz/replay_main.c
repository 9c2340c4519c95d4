/* The fuzz targets as ordinary tests: a main() that feeds a target every file of its seed corpus
 * (tests/fuzz/corpus/<target>/) and of its regressions (tests/fuzz/regressions/<target>/: the
 * inputs that once crashed it, one per fixed finding), built with the normal compiler, so the
 * suite (and its ASan/UBSan build) replays them on every run without clang or libFuzzer.
 * A crash or sanitizer report ends the program without a RESULT line, which the runner counts
 * as a failure. FUZZ_TARGET names the target (e.g. "safetensors"). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_dir(const char *dir, FILE *out, int *files) {
    DIR *d = opendir(dir);
    if (!d) return 0; /* no regressions yet for this target */
    struct dirent *ent;
    char path[4096];
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        Err e;
        size_t n;
        uint8_t *buf = read_file(path, &n, &e);
        if (!buf) {
            fprintf(out, "FAIL %s\n", e.msg);
            closedir(d);
            return -1;
        }
        fprintf(out, "  %s (%zu bytes)\n", path, n);
        fflush(out);
        LLVMFuzzerTestOneInput(buf, n);
        free(buf);
        (*files)++;
    }
    closedir(d);
    return 0;
}

int main(void) {
    /* a target may send stdout to /dev/null (usage text): report on a copy of it */
    FILE *out = fdopen(dup(STDOUT_FILENO), "w");
    if (!out) return 1;
    setvbuf(out, NULL, _IOLBF, 0);
    char dir[512];
    int files = 0, failed = 0;
    snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", FUZZ_TARGET);
    failed |= replay_dir(dir, out, &files) != 0;
    int seeds = files;
    snprintf(dir, sizeof dir, "tests/fuzz/regressions/%s", FUZZ_TARGET);
    failed |= replay_dir(dir, out, &files) != 0;
    if (seeds == 0) {
        fprintf(out, "FAIL no seed corpus in tests/fuzz/corpus/%s (make fuzz-corpus)\n", FUZZ_TARGET);
        failed = 1;
    }
    fprintf(out, "fuzz_%s: %d seed and %d regression inputs replayed without a crash\n", FUZZ_TARGET, seeds,
            files - seeds);
    fprintf(out, "RESULT %d passed %d failed\n", failed ? 0 : 1, failed);
    return failed;
}
