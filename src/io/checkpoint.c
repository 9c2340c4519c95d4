#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../nn/conv_plan.h"

int ckpt_save(const Byol *m, const char *dir, int64_t step, const StMeta *meta, int n_meta,
              char *path_out, size_t cap, Err *e) {
    snprintf(path_out, cap, "%s/ckpt-%09lld.safetensors", dir, (long long)step);
    return state_save(m, path_out, meta, n_meta, e);
}

/* ---- metadata: every value checked for form and range before anything uses it (a negative
 * step once indexed the loader's slots out of bounds). */

#define CKPT_MAX_STEP 1000000000000000LL /* 1e15 */
#define CKPT_HINT "use a checkpoint as byol train writes it"

/* A non-negative decimal integer of at most 16 digits, nothing else (no sign, no spaces). */
static int parse_count(const char *s, long long max, long long *out) {
    size_t n = strlen(s);
    if (n == 0 || n > 16 || strspn(s, "0123456789") != n) return -1;
    long long v = strtoll(s, NULL, 10); /* 16 digits fit */
    if (v > max) return -1;
    *out = v;
    return 0;
}

/* A finite decimal number written as printf's %g/%f write it: digits, sign, point, exponent
 * only, so "inf", "nan", hex floats and whitespace are refused. */
static int parse_number(const char *s, size_t n, double *out) {
    char buf[64];
    if (n == 0 || n >= sizeof buf || strspn(s, "0123456789+-.eE") < n) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    double v = strtod(buf, &end);
    if (end != buf + n || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* 1 to 3 numbers separated by single spaces into v[3] (the last repeated), each finite as a
 * float and, with positive, > 0. */
static int parse_channels(const char *s, int positive, float v[3]) {
    int k = 0;
    for (const char *p = s;; k++) {
        const char *sp = strchr(p, ' ');
        size_t n = sp ? (size_t)(sp - p) : strlen(p);
        double d;
        if (k == 3 || parse_number(p, n, &d) || !isfinite((float)d) || (positive && !((float)d > 0))) return -1;
        v[k] = (float)d;
        if (!sp) break;
        p = sp + 1;
    }
    for (int c = k + 1; c < 3; c++) v[c] = v[k];
    return 0;
}

int ckpt_meta_read(const Safetensors *st, const char *path, CkptMeta *m, Err *e) {
    memset(m, 0, sizeof *m);
    for (int c = 0; c < 3; c++) m->mean[c] = 0, m->std[c] = 1;
    char shown[48];
    const char *fmt = st_meta(st, "byol.format");
    if (fmt && strcmp(fmt, CKPT_FORMAT) != 0)
        return err_set(e, "%s: byol.format '%s' is not a checkpoint format this byol.c reads (" CKPT_FORMAT
                          "): written by a newer byol.c?", path, st_printable(shown, sizeof shown, fmt));
    m->config = st_meta(st, "byol.config");
    if (!m->config) return err_set(e, "%s: not a byol train checkpoint (no byol.config metadata)", path);
    const char *v = st_meta(st, "byol.step");
    if (!v) return err_set(e, "%s: not a byol train checkpoint (no byol.step metadata)", path);
    long long step;
    if (parse_count(v, CKPT_MAX_STEP, &step))
        return err_set(e, "%s: byol.step '%s' is not a step (0 to 1e15); " CKPT_HINT, path,
                       st_printable(shown, sizeof shown, v));
    m->step = step;
    if ((v = st_meta(st, "byol.skipped"))) {
        long long skipped;
        if (parse_count(v, step < LONG_MAX ? step : LONG_MAX, &skipped))
            return err_set(e, "%s: byol.skipped '%s' is not a count of skipped steps (0 to byol.step, %lld); " CKPT_HINT,
                           path, st_printable(shown, sizeof shown, v), step);
        m->skipped = (long)skipped;
    }
    const char *mean = st_meta(st, "byol.mean"), *std = st_meta(st, "byol.std");
    if (!mean != !std)
        return err_set(e, "%s: byol.%s without byol.%s (the normalization needs both); " CKPT_HINT, path,
                       mean ? "mean" : "std", mean ? "std" : "mean");
    if (mean) {
        if (parse_channels(mean, 0, m->mean))
            return err_set(e, "%s: byol.mean '%s' is not 1 to 3 finite numbers separated by spaces; " CKPT_HINT, path,
                           st_printable(shown, sizeof shown, mean));
        if (parse_channels(std, 1, m->std))
            return err_set(e, "%s: byol.std '%s' is not 1 to 3 numbers > 0 separated by spaces; " CKPT_HINT, path,
                           st_printable(shown, sizeof shown, std));
        m->has_norm = 1;
    }
    if ((v = st_meta(st, "byol.elapsed"))) {
        if (parse_number(v, strlen(v), &m->elapsed_s) || m->elapsed_s < 0)
            return err_set(e, "%s: byol.elapsed '%s' is not a number of seconds (finite, >= 0); " CKPT_HINT, path,
                           st_printable(shown, sizeof shown, v));
    }
    if ((m->plan = st_meta(st, "byol.plan"))) {
        Err pe;
        if (conv_plan_check_text(m->plan, &pe))
            return err_set(e, "%s: byol.plan: %s; " CKPT_HINT, path, pe.msg);
    }
    return 0;
}

static int is_ckpt_name(const char *name, long long *step) {
    char tail[32];
    return sscanf(name, "ckpt-%lld.safetens%20s", step, tail) == 2 && strcmp(tail, "ors") == 0 &&
           strlen(name) == strlen("ckpt-000000000.safetensors");
}

long long *ckpt_list_steps(const char *dir, int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    int cap = 16;
    long long *steps = malloc(sizeof *steps * cap);
    struct dirent *ent;
    while (steps && (ent = readdir(d))) {
        long long s;
        if (!is_ckpt_name(ent->d_name, &s)) continue;
        if (*n == cap) {
            cap *= 2;
            long long *grown = realloc(steps, sizeof *steps * cap);
            if (!grown) break;
            steps = grown;
        }
        steps[(*n)++] = s;
    }
    closedir(d);
    if (!steps) die("out of memory listing %s", dir);
    for (int i = 1; i < *n; i++) /* insertion sort: a handful of files */
        for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
            long long t = steps[j];
            steps[j] = steps[j - 1], steps[j - 1] = t;
        }
    return steps;
}

int ckpt_count(const char *dir) {
    int n;
    free(ckpt_list_steps(dir, &n));
    return n;
}

int ckpt_resolve(const char *dir_or_file, char *path, size_t cap, Err *e) {
    struct stat st;
    if (stat(dir_or_file, &st) != 0)
        return err_set(e, "%s: no such checkpoint or run folder", dir_or_file);
    if (!S_ISDIR(st.st_mode)) {
        snprintf(path, cap, "%s", dir_or_file);
        return 0;
    }
    int n;
    long long *steps = ckpt_list_steps(dir_or_file, &n);
    if (n == 0) {
        free(steps);
        return err_set(e, "%s: no checkpoint (ckpt-*.safetensors) in this folder", dir_or_file);
    }
    snprintf(path, cap, "%s/ckpt-%09lld.safetensors", dir_or_file, steps[n - 1]);
    free(steps);
    return 0;
}

int ckpt_remove_stale_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        const char *tmp = strstr(ent->d_name, ".tmp.");
        if (!tmp) continue;
        char *end;
        long pid = strtol(tmp + 5, &end, 10);
        if (*end || pid <= 0 || (kill((pid_t)pid, 0) == 0 || errno == EPERM)) continue; /* alive */
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        removed += unlink(path) == 0;
    }
    closedir(d);
    return removed;
}

void ckpt_prune(const char *dir, int keep) {
    int n;
    long long *steps = ckpt_list_steps(dir, &n);
    for (int i = 0; i < n - keep; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/ckpt-%09lld.safetensors", dir, steps[i]);
        unlink(path);
    }
    free(steps);
}
