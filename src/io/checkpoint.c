#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ckpt_save(const Byol *m, const char *dir, int64_t step, const StMeta *meta, int n_meta,
              char *path_out, size_t cap, Err *e) {
    snprintf(path_out, cap, "%s/ckpt-%09lld.safetensors", dir, (long long)step);
    return state_save(m, path_out, meta, n_meta, e);
}

static int is_ckpt_name(const char *name, long long *step) {
    char tail[32];
    return sscanf(name, "ckpt-%lld.safetens%20s", step, tail) == 2 && strcmp(tail, "ors") == 0 &&
           strlen(name) == strlen("ckpt-000000000.safetensors");
}

/* Sorted steps of the checkpoints in dir (malloc'ed), their count in *n. */
static long long *list_steps(const char *dir, int *n) {
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
    free(list_steps(dir, &n));
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
    long long *steps = list_steps(dir_or_file, &n);
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
    long long *steps = list_steps(dir, &n);
    for (int i = 0; i < n - keep; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/ckpt-%09lld.safetensors", dir, steps[i]);
        unlink(path);
    }
    free(steps);
}
