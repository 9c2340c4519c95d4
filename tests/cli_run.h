/* Running ./byol from a test: the command with its output captured, a tiny training run to read
 * back, and the figures of its JSON lines. For the tests of the commands (include after
 * harness.h). */
#ifndef BYOL_TEST_CLI_RUN_H
#define BYOL_TEST_CLI_RUN_H

#include "harness.h"

/* TEST_TMP/cifar10-jpeg (100 + 100 CIFAR-10 JPEGs) and the run tiny_run() trained on them. */
static char CIFAR[600], RUN_DIR[700];

/* Runs byol ($BYOL, else ./byol) with args, stdout to TEST_TMP/out and stderr to TEST_TMP/err;
 * the exit status. */
static inline int run_out(const char *args) {
    char cmd[8192];
    const char *byol = getenv("BYOL") ? getenv("BYOL") : "./byol";
    snprintf(cmd, sizeof cmd, "%s %s > %s/out 2> %s/err", byol, args, TEST_TMP, TEST_TMP);
    return sh_status(cmd);
}

/* A one-step run of a tiny model on 100 + 100 CIFAR-10 JPEGs, made once. */
static inline void tiny_run(void) {
    if (RUN_DIR[0]) return;
    extract_cifar_subset(CIFAR, sizeof CIFAR);
    snprintf(RUN_DIR, sizeof RUN_DIR, "%s/run", TEST_TMP);
    char a[4096];
    snprintf(a, sizeof a,
             "train --data %s --out %s --width 4 --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --batch 16 "
             "--max-steps 1 --knn-before 0 --knn-after 0 --eval-every 0 --threads 1",
             CIFAR, RUN_DIR);
    if (run_out(a) != 0) {
        printf("FATAL tiny run failed: %s\n", slurp_text("err"));
        exit(2);
    }
}

/* The number after "key": in a JSON line, or NAN. */
static inline double json_number(const char *line, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    return p ? atof(p + strlen(pat)) : NAN;
}

#endif
