/* byol train's run management, end to end on a CIFAR-10 JPEG subset and a tiny model: a resumed
 * --time-budget run keeps its clock, the warm-up of a budget, the saved configuration (recipe
 * only), late signals, the folder lock and unique default names, rolling back to an older
 * checkpoint, recipe changes on resume, absolute --data, metrics without repeated steps, the kNN
 * monitor's edge cases, and the flag parser's suggestions. */
#include <signal.h>
#include <sys/wait.h>

#include "harness.h"
#include "io/run_dir.h"
#include "io/safetensors.h"

static char DATA[600], TINY[1024];
static const char *BIN;

/* byol args, in folder `cwd` (NULL: here); stdout and stderr to TEST_TMP/{out,err}. */
static int byol_in(const char *cwd, const char *args) {
    char cmd[16384], here[1024];
    if (!getcwd(here, sizeof here)) return -1;
    snprintf(cmd, sizeof cmd, "cd %s && %s/%s %s > %s/out 2> %s/err", cwd ? cwd : here, here, BIN, args, TEST_TMP,
             TEST_TMP);
    return sh_status(cmd);
}
static int byol(const char *args) { return byol_in(NULL, args); }

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

/* The value of "key": in the metrics line of `step` (NAN when absent). */
static double metric_at(const char *metrics, long step, const char *key) {
    char head[64], k[64];
    snprintf(head, sizeof head, "{\"step\": %ld, ", step);
    snprintf(k, sizeof k, "\"%s\": ", key);
    for (const char *p = metrics; (p = strstr(p, head)); p++) {
        const char *end = strchr(p, '\n'), *v = strstr(p, k);
        if (v && (!end || v < end)) return atof(v + strlen(k));
    }
    return NAN;
}

/* A metadata value of a checkpoint file ("" when absent). */
static void ckpt_meta_value(const char *path, const char *key, char *out, size_t cap) {
    Safetensors st;
    Err e;
    out[0] = 0;
    if (st_open(&st, path, &e)) {
        snprintf(out, cap, "(cannot open: %.200s)", e.msg);
        return;
    }
    const char *v = st_meta(&st, key);
    if (v) snprintf(out, cap, "%s", v);
    st_close(&st);
}

/* Every "step" of the metrics' loss lines appears once. */
static int steps_unique(const char *metrics, long *repeated) {
    for (long s = 1; s < 200; s++) {
        char head[64];
        snprintf(head, sizeof head, "{\"step\": %ld, \"epoch\": ", s);
        int n = 0;
        for (const char *p = metrics; (p = strstr(p, head)); p++)
            if (strstr(p, "\"loss\"") && strstr(p, "\"loss\"") < strchr(p, '\n')) n++;
        if (n > 1) {
            *repeated = s;
            return 0;
        }
    }
    return 1;
}

/* The last line of a metrics file that has `key`, from the end; its value (NAN when none). */
static double last_metric(const char *metrics, const char *key, long *step) {
    double v = NAN;
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    for (const char *p = metrics; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        const char *end = strchr(p, '\n'), *at = strstr(p, k);
        if (at && (!end || at < end)) {
            v = atof(at + strlen(k));
            if (step) *step = atol(p + strlen("{\"step\": "));
        }
    }
    return v;
}

/* 1. A --time-budget run stopped and resumed continues the same lr and tau curves, and its
 * budget is the total of both processes' training time. The warm-up spans the whole budget
 * here, so that lr is proportional to the time spent: a restarted clock would send it back to 0. */
static void test_time_budget_resume_keeps_the_clock(void) {
    char a[4096], v[256];
    snprintf(a, sizeof a, "train %s --out %s/tb --time-budget 30 --warmup-frac 1 --epochs 1000 --log-every 1 "
             "--knn-before 0 --knn-after 0 --eval-every 0 --max-steps 4", TINY, TEST_TMP);
    int st = byol(a);
    char *out = slurp_text("out");
    CHECK(st == 0, "first part: exit %d", st);
    CHECK(strstr(out, "time budget 30 s"), "says the budget: %s", out);
    free(out);
    ckpt_meta_value(tmp_path("tb/ckpt-000000004.safetensors"), "byol.elapsed", v, sizeof v);
    const double first = atof(v);
    CHECK(first > 0 && first < 30, "checkpoint at step 4 keeps the training time spent: '%s'", v);
    snprintf(a, sizeof a, "train --resume %s/tb --max-steps 6", TEST_TMP);
    st = byol(a);
    out = slurp_text("out");
    char *err = slurp_text("err");
    CHECK(st == 0, "resume: exit %d: %s", st, err);
    CHECK(strstr(out, "s spent"), "says the time already spent: %s", out);
    free(out), free(err);
    char *m = slurp_text("tb/metrics.jsonl");
    const double tau4 = metric_at(m, 4, "tau"), tau5 = metric_at(m, 5, "tau");
    const double lr4 = metric_at(m, 4, "lr"), lr5 = metric_at(m, 5, "lr");
    const double t4 = metric_at(m, 4, "elapsed_s"), t5 = metric_at(m, 5, "elapsed_s");
    CHECK(lr4 > 0 && lr5 >= lr4, "lr continues its warm-up: step 4 %g, step 5 %g", lr4, lr5);
    CHECK(tau5 >= tau4, "tau continues: step 4 %.7g, step 5 %.7g", tau4, tau5);
    CHECK(t5 > t4 && t4 > 0, "the logged clock goes on: %g s, then %g s", t4, t5);
    free(m);
    /* a budget that ends 1.5 s after the time already spent: the resumed process trains that long */
    ckpt_meta_value(tmp_path("tb/ckpt-000000006.safetensors"), "byol.elapsed", v, sizeof v);
    const double spent = atof(v), budget = spent + 1.5;
    snprintf(a, sizeof a, "train --resume %s/tb --time-budget %.3f --allow-change 1", TEST_TMP, budget);
    st = byol(a);
    CHECK(st == 0, "last part: exit %d", st);
    m = slurp_text("tb/metrics.jsonl");
    long last = 0;
    const double end = last_metric(m, "elapsed_s", &last);
    free(m);
    char path[1200];
    snprintf(path, sizeof path, "%s/tb/ckpt-%09ld.safetensors", TEST_TMP, last);
    ckpt_meta_value(path, "byol.elapsed", v, sizeof v);
    CHECK(atof(v) >= budget && atof(v) < budget + 5 && end <= atof(v),
          "the run ends when the processes together spent the %.2f s budget: %s s at step %ld (last line %g s)", budget,
          v, last, end);
}

/* 2. With a budget, the warm-up is a share of it; --warmup-epochs is refused there. */
static void test_budget_warmup(void) {
    char a[4096];
    snprintf(a, sizeof a, "train %s --out %s/wu1 --time-budget 8 --warmup-epochs 10", TINY, TEST_TMP);
    int st = byol(a);
    char *err = slurp_text("err");
    CHECK(st != 0 && strstr(err, "--warmup-frac") && count(err, "\n") == 1, "refused in one line naming --warmup-frac: %s", err);
    free(err);
    const double B = 6, lr_peak = 1.0 * 16 / 256;
    snprintf(a, sizeof a, "train %s --out %s/wu2 --time-budget %g --warmup-frac 0.5 --epochs 1000 --log-every 1 "
             "--knn-before 0 --knn-after 0 --eval-every 0", TINY, TEST_TMP, B);
    st = byol(a);
    CHECK(st == 0, "exit %d", st);
    char *m = slurp_text("wu2/metrics.jsonl"), *out = slurp_text("out");
    CHECK(strstr(out, "warm-up 50% of it"), "says the warm-up: %s", out);
    /* A step's lr comes from the clock at its start: after the previous line was logged, before
     * its own line. Warm-up to 50% of the budget, then the cosine: the lr rises with time, then
     * falls, so each line's lr is bounded by the schedule at one of those two times. */
    int lines = 0, off = 0, decaying = 0;
    double peak = 0, t_prev = 0;
    for (long s = 1; s < 100000; s++) {
        const double lr = metric_at(m, s, "lr"), t = metric_at(m, s, "elapsed_s");
        if (isnan(lr)) break;
        lines++;
        peak = fmax(peak, lr);
        const double f = (t + 1e-3) / B, f_prev = (t_prev - 1e-3) / B; /* the log's clock has 3 decimals */
        const double bound = f <= 0.5 ? lr_peak * f / 0.5 + 1e-4 * lr_peak
                           : f_prev >= 0.5 ? lr_peak * 0.5 * (1 + cos(M_PI * fmin(1, (f_prev - 0.5) / 0.5))) + 1e-4 * lr_peak
                                           : lr_peak * 1.0001;
        if (lr > bound) {
            if (!off) printf("     step %ld at %.3f s (previous %.3f s): lr %g above %g\n", s, t, t_prev, lr, bound);
            off++;
        }
        decaying += f_prev >= 0.6;
        t_prev = t;
    }
    CHECK(lines >= 6 && off == 0, "%d lines, %d of them off the schedule", lines, off);
    CHECK(peak > 0.5 * lr_peak && decaying > 0, "lr rises to %g (of %g); %d steps past 60%% of the budget", peak,
          lr_peak, decaying);
    char *cfg = slurp_text("wu2/config.txt");
    CHECK(strstr(cfg, "warmup-frac = 0.5\n") && !strstr(cfg, "warmup-epochs"), "config says the warm-up in effect: %s", cfg);
    free(m), free(out), free(cfg);
}

/* 3. The saved configuration holds the recipe, never where or how long a process ran; it can be
 * passed to --config for a new run. Values are written as the user would write them. */
static void test_saved_config_is_the_recipe(void) {
    char a[4096];
    snprintf(a, sizeof a, "train %s --out %s/r1 --max-steps 5", TINY, TEST_TMP);
    CHECK(byol(a) == 0, "r1 first part");
    snprintf(a, sizeof a, "train --resume %s/r1 --max-steps 7 --threads 1", TEST_TMP);
    CHECK(byol(a) == 0, "r1 resumed");
    char *cfg = slurp_text("r1/config.txt");
    const char *run_flags[] = {"\nout =", "\nresume =", "\nmax-steps =", "\nthreads =", "\nconfig =", "\nworkers ="};
    for (size_t i = 0; i < ARRAY_LEN(run_flags); i++)
        CHECK(!strstr(cfg, run_flags[i]), "config.txt holds '%s': %s", run_flags[i] + 1, cfg);
    CHECK(strstr(cfg, "weight-decay = 0.0005\n"), "weight decay as typed: %s", cfg);
    CHECK(strstr(cfg, "warmup-epochs = 0.16666667\n"), "the warm-up in effect (1 step of 6 an epoch: 10%% of 18 steps, "
          "rounded down): %s", cfg);
    free(cfg);
    snprintf(a, sizeof a, "train --config %s/r1/config.txt --out %s/r3", TEST_TMP, TEST_TMP);
    int st = byol(a);
    char *out = slurp_text("out"), *err = slurp_text("err");
    CHECK(st == 0, "a new run from r1's config: exit %d: %s", st, err);
    CHECK(strstr(out, "trained 18 steps"), "a fresh, whole run (not r1's resume, not its max-steps): %s", out);
    free(out), free(err);
}

/* 4. A signal during the final checkpoint or the final kNN stops the run with 128 + signal; the
 * checkpoint is whole. */
static void test_late_signals(void) {
    char a[4096], why[256];
    snprintf(a, sizeof a, "BYOL_FAULT_SIGNAL_AT=final-checkpoint %s/%s train %s --out %s/s1 > %s/out 2> %s/err", ".",
             BIN, TINY, TEST_TMP, TEST_TMP, TEST_TMP);
    int st = sh_status(a);
    char *out = slurp_text("out");
    CHECK(st == 128 + SIGINT, "Ctrl-C at the final checkpoint: exit %d: %s", st, out);
    CHECK(strstr(out, "the run is complete") && !strstr(out, "kNN top-1 after"), "says so, skips the final kNN: %s", out);
    free(out);
    CHECK(same_tensors(tmp_path("s1/ckpt-000000018.safetensors"), tmp_path("s1/ckpt-000000018.safetensors"), why, sizeof why),
          "the final checkpoint reads back: %s", why);
    snprintf(a, sizeof a, "BYOL_FAULT_SIGNAL_AT=final-knn %s/%s train %s --out %s/s2 > %s/out 2> %s/err", ".", BIN,
             TINY, TEST_TMP, TEST_TMP, TEST_TMP);
    st = sh_status(a);
    out = slurp_text("out");
    CHECK(st == 128 + SIGINT, "Ctrl-C during the final kNN: exit %d: %s", st, out);
    CHECK(strstr(out, "during the final kNN") && !strstr(out, "kNN top-1 after"), "says so: %s", out);
    free(out);
}

/* 5. A second training into a run's folder is refused naming the first one's pid; default
 * names never collide. */
static void test_folder_lock_and_unique_names(void) {
    char a[8192];
    snprintf(a, sizeof a, "%s train %s --out %s/lk --epochs 1000 --log-every 1 --knn-before 0 > %s/lk.out 2>&1 & echo $! > %s/lk.pid",
             BIN, TINY, TEST_TMP, TEST_TMP, TEST_TMP);
    CHECK(system(a) == 0, "started");
    char *pid = NULL;
    struct stat sb;
    for (int i = 0; i < 6000 && stat(tmp_path("lk/ckpt-000000006.safetensors"), &sb) != 0; i++)
        usleep(20000); /* until it has a checkpoint (up to 2 minutes) */
    pid = slurp_text("lk.pid");
    pid[strcspn(pid, "\n")] = 0;
    snprintf(a, sizeof a, "train %s --out %s/lk --max-steps 1", TINY, TEST_TMP);
    int st = byol(a);
    char *err = slurp_text("err");
    char want[64];
    snprintf(want, sizeof want, "(pid %s)", pid);
    CHECK(st != 0 && strstr(err, "in use by another byol train") && strstr(err, want), "refused naming pid %s: %s", pid, err);
    free(err);
    kill(atoi(pid), SIGKILL);
    free(pid);
    usleep(200000);
    /* the lock ends with its process: a killed run can be resumed */
    snprintf(a, sizeof a, "train --resume %s/lk --epochs 2 --allow-change 1", TEST_TMP);
    st = byol(a);
    err = slurp_text("err");
    CHECK(st == 0, "resume after the holder was killed: exit %d: %s", st, err);
    free(err);
    /* default names: an existing one gets -2, -3 */
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/names/run", TEST_TMP);
    Err e;
    CHECK(run_dir_create(dir, sizeof dir, 1, &e) == 0 && strstr(dir, "/names/run") && !strstr(dir, "run-"), "first: %s", dir);
    snprintf(dir, sizeof dir, "%s/names/run", TEST_TMP);
    CHECK(run_dir_create(dir, sizeof dir, 1, &e) == 0 && strstr(dir, "/names/run-2"), "second: %s", dir);
    snprintf(dir, sizeof dir, "%s/names/run", TEST_TMP);
    CHECK(run_dir_create(dir, sizeof dir, 1, &e) == 0 && strstr(dir, "/names/run-3"), "third: %s", dir);
    /* two runs without --out started together */
    char here[1024];
    CHECK(getcwd(here, sizeof here) != NULL, "getcwd");
    snprintf(a, sizeof a, "cd %s && mkdir -p two && cd two && (%s/%s train %s --max-steps 1 --knn-before 0 --knn-after 0 >o1 2>&1 & "
             "%s/%s train %s --max-steps 1 --knn-before 0 --knn-after 0 >o2 2>&1; wait) && ls runs | wc -l > ../nruns",
             TEST_TMP, here, BIN, TINY, here, BIN, TINY);
    CHECK(system(a) == 0, "two default-named runs");
    char *n = slurp_text("nruns");
    CHECK(atoi(n) == 2, "two folders under runs/: %s", n);
    free(n);
}

/* 10. The images/s logged after a kNN check is of training alone: a check made 1.5 s slower does
 * not show in it. */
static void test_images_per_s_after_knn(void) {
    char a[8192];
    snprintf(a, sizeof a, "BYOL_FAULT_SLOW_KNN=1.5 %s train %s --out %s/ips --eval-every 1 --log-every 1 --knn-before 0 "
             "--knn-after 0 --epochs 2 > %s/out 2> %s/err", BIN, TINY, TEST_TMP, TEST_TMP, TEST_TMP);
    int st = sh_status(a);
    CHECK(st == 0, "exit %d", st);
    char *m = slurp_text("ips/metrics.jsonl");
    double v[12], after = metric_at(m, 7, "images_per_s"); /* step 6 ends epoch 1, its kNN check follows */
    int n = 0;
    for (long s = 2; s <= 12 && n < 12; s++)
        if (s != 7 && !isnan(metric_at(m, s, "images_per_s"))) v[n++] = metric_at(m, s, "images_per_s");
    for (int i = 1; i < n; i++) /* insertion sort for the median */
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            const double t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    const double median = n ? v[n / 2] : NAN;
    /* 16 images in 1.5 s would read about 10 images/s */
    CHECK(n >= 8 && after > 0.25 * median && after > 20, "step 7 (after the kNN check): %g images/s, median of the "
          "others %g", after, median);
    free(m);
}

/* 6 and 10. Resuming from an older checkpoint moves the newer ones aside; a killed run's metrics
 * lines after its last checkpoint are not repeated. */
static void test_rollback_and_metrics(void) {
    char a[4096];
    snprintf(a, sizeof a, "train %s --out %s/rb --keep 3", TINY, TEST_TMP);
    CHECK(byol(a) == 0, "the first branch, steps 6, 12, 18");
    snprintf(a, sizeof a, "train --resume %s/rb/ckpt-000000006.safetensors --max-steps 9", TEST_TMP);
    int st = byol(a);
    char *out = slurp_text("out"), *err = slurp_text("err");
    CHECK(st == 0, "roll back to step 6: exit %d: %s", st, err);
    CHECK(strstr(out, "2 newer checkpoints") && strstr(out, "abandoned-after-6"), "says the newer ones moved: %s", out);
    free(out), free(err);
    struct stat sb;
    CHECK(stat(tmp_path("rb/abandoned-after-6/ckpt-000000018.safetensors"), &sb) == 0 &&
          stat(tmp_path("rb/ckpt-000000018.safetensors"), &sb) != 0, "step 18 set aside");
    CHECK(stat(tmp_path("rb/ckpt-000000009.safetensors"), &sb) == 0, "the new branch's step 9 is there");
    snprintf(a, sizeof a, "train --resume %s/rb --max-steps 11", TEST_TMP);
    st = byol(a);
    out = slurp_text("out");
    CHECK(st == 0 && strstr(out, "stopped at --max-steps 11"), "--resume DIR continues the new branch (step 9): %s", out);
    free(out);
    /* a process killed after its checkpoint of step 11 had logged steps 12 and 13 */
    char *m = slurp_text("rb/metrics.jsonl");
    CHECK(isnan(metric_at(m, 18, "loss")), "the abandoned branch's metrics left the run's file");
    FILE *f = fopen(tmp_path("rb/metrics.jsonl"), "a");
    CHECK(f != NULL, "append");
    if (f) {
        fprintf(f, "{\"step\": 12, \"epoch\": 2.0000, \"loss\": 9.9, \"lr\": 0.01}\n{\"step\": 13, \"epoch\": 2.1667, \"loss\": 9.9, \"lr\": 0.01}\n");
        fclose(f);
    }
    free(m);
    snprintf(a, sizeof a, "train --resume %s/rb --max-steps 14", TEST_TMP);
    CHECK(byol(a) == 0, "resume after the kill");
    m = slurp_text("rb/metrics.jsonl");
    long rep = 0;
    CHECK(steps_unique(m, &rep), "step %ld logged twice: %s", rep, m);
    CHECK(metric_at(m, 12, "loss") != 9.9, "step 12 is the resumed run's");
    free(m);
}

/* 7 and 9. A resume that changes the recipe is refused unless --allow-change, which names the
 * changes; a finished run is left as it is. */
static void test_resume_recipe_changes(void) {
    char a[4096];
    snprintf(a, sizeof a, "train %s --out %s/rc --max-steps 6", TINY, TEST_TMP);
    CHECK(byol(a) == 0, "a run to resume");
    snprintf(a, sizeof a, "train --resume %s/rc --batch 32", TEST_TMP);
    int st = byol(a);
    char *err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "batch 16 -> 32") && strstr(err, "--allow-change") && count(err, "\n") == 1,
          "a changed --batch is refused in one line: %s", err);
    free(err);
    snprintf(a, sizeof a, "train --resume %s/rc --data /usr/share/datasets/fashion-mnist", TEST_TMP);
    st = byol(a);
    err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "data "), "a changed --data is refused: %s", err);
    free(err);
    struct stat sb;
    if (stat("/usr/share/datasets/fashion-mnist", &sb) == 0) { /* 9: 1-channel data under a 3-channel encoder */
        snprintf(a, sizeof a, "train --resume %s/rc --data /usr/share/datasets/fashion-mnist --allow-change 1", TEST_TMP);
        st = byol(a);
        err = slurp_text("err");
        CHECK(st != 0 && strstr(err, "takes 3-channel images") && strstr(err, "1-channel") && !strstr(err, "model flags match"),
              "names the channel counts: %s", err);
        free(err);
    }
    snprintf(a, sizeof a, "train --resume %s/rc --epochs 4 --allow-change 1", TEST_TMP);
    st = byol(a);
    char *out = slurp_text("out");
    err = slurp_text("err");
    CHECK(st == 0 && strstr(out, "--allow-change: epochs 3 -> 4") && strstr(out, "trained 18 steps"),
          "--allow-change names the change and trains on: exit %d: %s%s", st, out, err);
    free(out), free(err);
    snprintf(a, sizeof a, "%s/rc/ckpt-000000024.safetensors", TEST_TMP);
    size_t n1, n2;
    uint8_t *before = slurp(a, &n1);
    snprintf(a, sizeof a, "train --resume %s/rc", TEST_TMP);
    st = byol(a);
    out = slurp_text("out");
    CHECK(st == 0 && strstr(out, "nothing to train"), "a finished run says so: %s", out);
    free(out);
    snprintf(a, sizeof a, "%s/rc/ckpt-000000024.safetensors", TEST_TMP);
    uint8_t *after = slurp(a, &n2);
    CHECK(n1 == n2 && memcmp(before, after, n1) == 0, "and leaves its last checkpoint as it was");
    free(before), free(after);
}

/* 8. --data is stored absolute: the run's checkpoint evaluates from another folder. */
static void test_data_path_is_absolute(void) {
    char a[4096];
    snprintf(a, sizeof a, "train %s --out %s/abs --max-steps 2 --knn-before 0 --knn-after 0", TINY, TEST_TMP);
    /* the same flags with --data relative to TEST_TMP */
    char *rel = strstr(a, DATA);
    if (!rel) {
        CHECK(0, "TINY holds --data");
        return;
    }
    memmove(rel, "cifar10-jpeg", 12);
    memmove(rel + 12, rel + strlen(DATA), strlen(rel + strlen(DATA)) + 1);
    snprintf(a + strlen(a), sizeof a - strlen(a), " ");
    int st = byol_in(TEST_TMP, a);
    char *err = slurp_text("err");
    CHECK(st == 0, "train with a relative --data: %s", err);
    free(err);
    char *cfg = slurp_text("abs/config.txt");
    char want[1200];
    snprintf(want, sizeof want, "data = %s\n", DATA);
    CHECK(DATA[0] == '/' && strstr(cfg, want), "config.txt has the absolute path: %s", cfg);
    free(cfg);
    snprintf(a, sizeof a, "eval --ckpt %s/abs --probe-iters 5", TEST_TMP);
    st = byol_in("/", a);
    err = slurp_text("err");
    CHECK(st == 0, "eval from / : exit %d: %s", st, err);
    free(err);
}

/* 13. The kNN monitor says when there is none, and caps k at the bank. */
static void test_knn_monitor_lines(void) {
    char a[4096];
    snprintf(a, sizeof a, "train %s --out %s/k1 --max-steps 1 --knn-after 0", TINY, TEST_TMP);
    CHECK(byol(a) == 0, "train");
    char *out = slurp_text("out");
    CHECK(strstr(out, "k 100 (--knn-k 200 capped at the bank's 100 images)"), "k capped and said: %s", out);
    free(out);
    snprintf(a, sizeof a, "mkdir -p %s/trainonly && cp -r %s/train %s/trainonly/", TEST_TMP, DATA, TEST_TMP);
    CHECK(system(a) == 0, "a folder without a test split");
    snprintf(a, sizeof a, "train --data %s/trainonly --width 4 --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --batch 16 "
             "--out %s/k2 --max-steps 1 --threads 2", TEST_TMP, TEST_TMP);
    int st = byol(a);
    out = slurp_text("out");
    char *err = slurp_text("err");
    CHECK(st == 0 && strstr(out, "no kNN monitor"), "says there is no kNN monitor: exit %d: %s%s", st, out, err);
    free(out), free(err);
}

/* Also: flag typos get a suggestion, --workers is bounded, the stem follows the image size. */
static void test_flags_and_defaults(void) {
    char a[4096];
    int st = byol("train --batchh 4");
    char *err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "did you mean --batch?"), "a typo gets a suggestion: %s", err);
    free(err);
    write_bytes(tmp_path("typo.cfg"), "bsae-lr = 0.5\n", 14);
    snprintf(a, sizeof a, "train --config %s/typo.cfg", TEST_TMP);
    st = byol(a);
    err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "did you mean base-lr?"), "in a config file too: %s", err);
    free(err);
    st = byol("train --frobnicate 1");
    err = slurp_text("err");
    CHECK(st == 2 && !strstr(err, "did you mean"), "no suggestion for what is near nothing: %s", err);
    free(err);
    snprintf(a, sizeof a, "train %s --out %s/half --time-budget 0.5 --max-steps 1 --knn-before 0 --knn-after 0", TINY,
             TEST_TMP);
    st = byol(a);
    char *o1 = slurp_text("out");
    CHECK(st == 0 && strstr(o1, "time budget 0.5 s"), "a half-second budget prints as such: %s", o1);
    free(o1);
    st = byol("train --workers 99");
    err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "--workers"), "--workers 99 refused: %s", err);
    free(err);
    snprintf(a, sizeof a, "train %s --out %s/st1 --image-size 72 --max-steps 1 --knn-before 0 --knn-after 0", TINY, TEST_TMP);
    st = byol(a);
    char *out = slurp_text("out");
    CHECK(st == 0 && strstr(out, "imagenet stem for 72 px images"), "72 px views get the imagenet stem: %s", out);
    free(out);
    snprintf(a, sizeof a, "train %s --out %s/st2 --max-steps 1 --knn-before 0 --knn-after 0", TINY, TEST_TMP);
    st = byol(a);
    out = slurp_text("out");
    CHECK(st == 0 && strstr(out, "cifar stem for 32 px images"), "32 px views keep the cifar stem: %s", out);
    free(out);
    snprintf(a, sizeof a, "train %s --out %s/st3 --image-size 72 --stem cifar --max-steps 1 --knn-before 0 --knn-after 0",
             TINY, TEST_TMP);
    st = byol(a);
    out = slurp_text("out");
    CHECK(st == 0 && strstr(out, "resnet18 width 4 cifar stem") && !strstr(out, "--stem to choose"), "--stem given wins: %s", out);
    free(out);
    write_bytes(tmp_path("stem.cfg"), "stem = cifar\n", 13);
    snprintf(a, sizeof a, "train %s --out %s/st4 --image-size 72 --config %s/stem.cfg --max-steps 1 --knn-before 0 "
             "--knn-after 0", TINY, TEST_TMP, TEST_TMP);
    st = byol(a);
    out = slurp_text("out");
    CHECK(st == 0 && strstr(out, "width 4 cifar stem") && !strstr(out, "--stem to choose"), "so does a --config file's: %s", out);
    free(out);
}

/* --out whose parent folders cannot be made: one line naming the folder that failed, and where
 * they can, they are made (mkdir -p). */
static void test_out_parent_folders(void) {
    char a[2048];
    snprintf(a, sizeof a, "train %s --out /proc/byol-none/x/run --max-steps 1", TINY);
    int st = byol(a);
    char *err = slurp_text("err");
    CHECK(st == 1 && strstr(err, "--out /proc/byol-none/x/run: cannot create /proc/byol-none: ") &&
              !strchr(strchr(err, '\n') + 1, '\n'),
          "exit %d: %s", st, err);
    free(err);
    snprintf(a, sizeof a, "train %s --out %s/deep/er/run --max-steps 1 --knn-before 0 --knn-after 0", TINY, TEST_TMP);
    st = byol(a);
    struct stat sb;
    CHECK(st == 0 && stat(tmp_path("deep/er/run/config.txt"), &sb) == 0, "parents made: exit %d", st);
}

int main(void) {
    test_tmpdir("test_runs");
    BIN = getenv("BYOL") ? getenv("BYOL") : "./byol";
    extract_cifar_subset(DATA, sizeof DATA);
    snprintf(TINY, sizeof TINY,
             "--data %s --width 4 --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --batch 16 --epochs 3 --keep 2 "
             "--eval-every 0 --log-every 2 --threads 2 --workers 1 --seed 3",
             DATA);
    RUN(test_time_budget_resume_keeps_the_clock);
    RUN(test_budget_warmup);
    RUN(test_saved_config_is_the_recipe);
    RUN(test_late_signals);
    RUN(test_folder_lock_and_unique_names);
    RUN(test_rollback_and_metrics);
    RUN(test_images_per_s_after_knn);
    RUN(test_resume_recipe_changes);
    RUN(test_data_path_is_absolute);
    RUN(test_knn_monitor_lines);
    RUN(test_flags_and_defaults);
    RUN(test_out_parent_folders);
    return test_finish();
}
