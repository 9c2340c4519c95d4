/* Minimal test harness: TEST functions registered in main(), CHECK assertions that print the
 * failing condition with file:line and a message, a RESULT line the runner (tests/run.sh) sums.
 * Also: deterministic random data, relative errors, and fixture access (PyTorch layouts). */
#ifndef BYOL_TEST_HARNESS_H
#define BYOL_TEST_HARNESS_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "io/safetensors.h"

static int h_passed, h_failed, h_case_failed;
static const char *h_case;

static void h_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    va_list ap;
    if (!h_case_failed) printf("FAIL %s\n", h_case);
    h_case_failed = 1;
    printf("  %s:%d: %s", file, line, cond);
    if (fmt && *fmt) {
        printf(": ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
    }
    printf("\n");
}

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (!(cond)) h_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);   \
    } while (0)

/* |a - b| / |b| over n values (norms), with |b| = 0 giving |a|. */
static inline double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#define CHECK_CLOSE(a, b, n, tol, what)                                                    \
    do {                                                                                   \
        double e_ = rel_err((a), (b), (n));                                                \
        if (!(e_ <= (tol))) h_fail(__FILE__, __LINE__, what, "relative error %.3e > %.1e", e_, (double)(tol)); \
    } while (0)

/* BYOL_TEST_ONLY=text runs only the tests whose names contain text (while developing one). */
static void run_test(const char *name, void (*fn)(void)) {
    const char *only = getenv("BYOL_TEST_ONLY");
    if (only && *only && !strstr(name, only)) return;
    h_case = name;
    h_case_failed = 0;
    double t0 = now_seconds();
    fn();
    if (h_case_failed)
        h_failed++;
    else {
        h_passed++;
        printf("ok   %s (%.2fs)\n", name, now_seconds() - t0);
    }
    fflush(stdout);
}
#define RUN(fn) run_test(#fn, fn)

/* A private scratch folder under /tmp for one test program, removed by test_finish(). */
static char TEST_TMP[256];
static inline void test_tmpdir(const char *program) {
    snprintf(TEST_TMP, sizeof TEST_TMP, "/tmp/byol_%s_%ld", program, (long)getpid());
    mkdir(TEST_TMP, 0700);
}

/* TEST_TMP/name, in one of 8 rotating buffers (so a few can be used in one call). */
static inline const char *tmp_path(const char *name) {
    static char buf[8][1200];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", TEST_TMP, name);
    return buf[k];
}

/* Writes a file for a test; a failure here is a setup error that stops the program. */
static inline void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        printf("FATAL cannot write %s\n", path);
        exit(2);
    }
}

/* Reads a whole file for a test, or stops the program (setup error). */
static inline uint8_t *slurp(const char *path, size_t *n) {
    Err e;
    uint8_t *p = read_file(path, n, &e);
    if (!p) {
        printf("FATAL %s\n", e.msg);
        exit(2);
    }
    return p;
}

/* The exit status of a shell command (128 + the signal when one ended it). */
static inline int sh_status(const char *cmd) {
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

/* TEST_TMP/name as a NUL-terminated string ("" when it cannot be read). */
static inline char *slurp_text(const char *name) {
    size_t n;
    Err e;
    uint8_t *b = read_file(tmp_path(name), &n, &e);
    if (!b) return strdup("");
    char *s = realloc(b, n + 1);
    s[n] = 0;
    return s;
}

/* Every tensor of two safetensors files has the same bytes (the checksums are verified on
 * opening). */
static inline int same_tensors(const char *a, const char *b, char *why, size_t cap) {
    Safetensors x, y;
    Err e;
    if (st_open(&x, a, &e)) return snprintf(why, cap, "%.200s", e.msg), 0;
    if (st_open(&y, b, &e)) return st_close(&x), snprintf(why, cap, "%.200s", e.msg), 0;
    int same = x.n_entries == y.n_entries;
    if (!same) snprintf(why, cap, "%d vs %d tensors", x.n_entries, y.n_entries);
    for (int i = 0; i < x.n_entries && same; i++) {
        const StEntry *t = &x.entries[i], *u = st_find(&y, t->name);
        if (!u || t->end - t->begin != u->end - u->begin ||
            memcmp(x.file + x.data_start + t->begin, y.file + y.data_start + u->begin, t->end - t->begin) != 0) {
            snprintf(why, cap, "tensor %.200s differs", t->name);
            same = 0;
        }
    }
    st_close(&x), st_close(&y);
    return same;
}

/* Extracts CIFAR-10's first 10 JPEGs of each class and split (100 train, 100 test) from
 * ../shared into TEST_TMP/cifar10-jpeg and writes that path to `dir`; stops the program when it
 * cannot (setup error). */
static inline void extract_cifar_subset(char *dir, size_t cap) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "tar xzf ../shared/data/cifar10-jpeg.tar.gz -C %s --wildcards 'cifar10-jpeg/t*/*/000?.jpg'", TEST_TMP);
    if (system(cmd) != 0) {
        printf("FATAL cannot extract ../shared/data/cifar10-jpeg.tar.gz\n");
        exit(2);
    }
    snprintf(dir, cap, "%s/cifar10-jpeg", TEST_TMP);
}

static int test_finish(void) {
    if (TEST_TMP[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", TEST_TMP);
        if (system(cmd) != 0) printf("warning: could not remove %s\n", TEST_TMP);
    }
    printf("RESULT %d passed %d failed\n", h_passed, h_failed);
    return h_failed ? 1 : 0;
}

/* xorshift64* stream of deterministic test data. */
typedef struct { uint64_t s; } TestRng;
static inline double rng_uniform(TestRng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return ((r->s * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}
static inline float rng_normal(TestRng *r) {
    double u = rng_uniform(r), v = rng_uniform(r);
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}
static inline void fill_normal(TestRng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(r);
}

/* Directory holding committed fixtures (tests/fixtures), overridable by BYOL_FIXTURES. */
static inline const char *fixture_dir(void) {
    const char *d = getenv("BYOL_FIXTURES");
    return d ? d : "tests/fixtures";
}

/* A fixture tensor as a malloc'ed float copy; aborts the test binary if absent (a broken
 * fixture file is a setup error, not a test result). */
static inline float *fx_get(const Safetensors *st, const char *name, int64_t *shape, int *ndim) {
    const StEntry *t = st_find(st, name);
    if (!t || strcmp(t->dtype, "F32") != 0) {
        printf("FATAL fixture %s: missing tensor %s\n", st->path, name);
        exit(2);
    }
    float *x = xmalloc(st_numel(t) * sizeof(float) + 64, name);
    st_read_f32(st, t, x);
    if (shape)
        for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    if (ndim) *ndim = t->ndim;
    return x;
}

#endif
