/* Training faults (issue: crash-safe state): the step's guard against non-finite values
 * (--on-nan stop|skip), checkpoints killed in the middle of their write, SIGKILL at random
 * moments with resume, a full disk, a corrupted checkpoint, and running out of memory. Each
 * run is a real `byol train` on a small CIFAR-10 JPEG subset with a tiny model. */
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include "harness.h"
#include "io/safetensors.h"
#include "model/byol.h"

static char DATA[600], FAST[1400];
static const char *bin(void) { return getenv("BYOL") ? getenv("BYOL") : "./byol"; }

/* Runs `env byol args` with stdout/stderr in TEST_TMP/{out,err}; the exit status. */
static int byol_env(const char *env, const char *args) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s %s > %s/out 2> %s/err", env, bin(), args, TEST_TMP, TEST_TMP);
    return sh_status(cmd);
}

static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* Temporary files (NAME.tmp.PID) left in a folder. */
static int temporaries_in(const char *dir) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "ls -a %s | grep -c '\\.tmp\\.' > %s/ntmp", dir, TEST_TMP);
    sh_status(cmd);
    char *s = slurp_text("ntmp");
    int n = atoi(s);
    free(s);
    return n;
}

static const char *ckpt(const char *run, int step) {
    static char buf[4][1400];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s/ckpt-%09d.safetensors", TEST_TMP, run, step);
    return buf[k];
}

/* ------------------------------------------------------------------ the step's guard */

static void fill_views(float *v, size_t n, uint64_t seed) {
    TestRng r = {seed};
    for (size_t i = 0; i < n; i++) v[i] = rng_normal(&r);
}

/* A refused step changes nothing: the next good step gives the same bits as if it never ran. */
static void test_step_guard_changes_nothing(void) {
    ModelConfig c;
    model_config_default(&c);
    c.enc.width = 2;
    c.proj_hidden = 8;
    c.proj_dim = 4;
    c.pred_hidden = 8;
    const int B = 4, S = 16;
    const size_t n = (size_t)2 * B * 3 * S * S;
    float *v1 = malloc(n * sizeof(float)), *v2 = malloc(n * sizeof(float)), *bad = malloc(n * sizeof(float));
    fill_views(v1, n, 1), fill_views(v2, n, 2), fill_views(bad, n, 3);
    StepConfig sc = {{.lr = 0.1f, .weight_decay = 1e-5f, .momentum = 0.9f, .eta = 0.02f, .mult_from = 0, .lr_mult = 1.0f}, 0.99f, DINO_CONFIG_DEFAULT};
    Byol a, b;
    ByolWork wa, wb;
    byol_init(&a, &c), byol_init(&b, &c);
    byol_init_weights(&a, 7), byol_init_weights(&b, 7);
    byol_work_init(&wa, &a, B, 3, S, S, &backend_cpu);
    byol_work_init(&wb, &b, B, 3, S, S, &backend_cpu);
    byol_step(&a, &wa, v1, &sc, &backend_cpu);
    CHECK(!wa.refused, "a good step is applied");
    byol_step(&b, &wb, v1, &sc, &backend_cpu);
    const char *names[2] = {"NaN", "Inf"};
    for (int kind = 0; kind < 2; kind++) {
        bad[123] = kind == 0 ? NAN : INFINITY;
        float loss = byol_step(&a, &wa, bad, &sc, &backend_cpu);
        CHECK(wa.refused, "a view with %s is refused (loss %g)", names[kind], loss);
        CHECK(wa.bad_tensor >= 0 && strcmp(a.online.specs[wa.bad_tensor].name, "online.encoder.conv1.weight") == 0,
              "%s: first non-finite gradient named: %s", names[kind],
              wa.bad_tensor >= 0 ? a.online.specs[wa.bad_tensor].name : "(none)");
    }
    byol_step(&a, &wa, v2, &sc, &backend_cpu);
    byol_step(&b, &wb, v2, &sc, &backend_cpu);
    CHECK(!wa.refused && !wb.refused, "good steps applied");
    CHECK(memcmp(a.online.params, b.online.params, a.online.n_params * sizeof(float)) == 0, "online parameters identical");
    CHECK(memcmp(a.online.momentum, b.online.momentum, a.online.n_params * sizeof(float)) == 0, "momentum identical");
    CHECK(memcmp(a.online.buffers, b.online.buffers, a.online.n_buffers * sizeof(float)) == 0,
          "online batch-norm statistics identical");
    CHECK(memcmp(a.target.params, b.target.params, a.target.n_params * sizeof(float)) == 0, "target identical");
    CHECK(memcmp(a.target.buffers, b.target.buffers, a.target.n_buffers * sizeof(float)) == 0,
          "target batch-norm statistics identical");
    byol_work_free(&wa), byol_work_free(&wb);
    byol_free(&a), byol_free(&b);
    free(v1), free(v2), free(bad);
}

/* ------------------------------------------------------------------ --on-nan */

static void test_nan_stop_keeps_last_good_checkpoint(void) {
    char a[4096];
    snprintf(a, sizeof a, "train %s --out %s/ns --max-steps 6", FAST, TEST_TMP);
    CHECK(byol_env("", a) == 0, "first 6 steps");
    size_t n0, n1;
    uint8_t *before = slurp(ckpt("ns", 6), &n0);
    snprintf(a, sizeof a, "train --resume %s/ns", TEST_TMP);
    int st = byol_env("BYOL_FAULT_NAN_STEPS=8", a);
    char *err = slurp_text("err");
    CHECK(st == 1, "a NaN at step 8 stops the run with exit 1 (got %d): %s", st, err);
    CHECK(strstr(err, "step 8") && strstr(err, "online.encoder.conv1.weight") && strstr(err, "not applied"),
          "names the step and the first non-finite tensor: %s", err);
    CHECK(strstr(err, "ckpt-000000006.safetensors") != NULL, "names the last good checkpoint: %s", err);
    CHECK(count_of(err, "\n") == 1, "one line: %s", err);
    free(err);
    uint8_t *after = slurp(ckpt("ns", 6), &n1);
    CHECK(n0 == n1 && memcmp(before, after, n0) == 0, "the last good checkpoint is untouched");
    CHECK(!file_exists(ckpt("ns", 8)), "no checkpoint of the bad step");
    CHECK(temporaries_in(tmp_path("ns")) == 0, "no temporary files left");
    free(before), free(after);
}

static void test_nan_skip_counts_and_continues(void) {
    char a[4096];
    snprintf(a, sizeof a, "train %s --out %s/sk --on-nan skip", FAST, TEST_TMP);
    int st = byol_env("BYOL_FAULT_NAN_STEPS=8,15", a);
    char *out = slurp_text("out"), *err = slurp_text("err"), *m = slurp_text("sk/metrics.jsonl");
    CHECK(st == 0, "the run goes on past skipped steps (exit %d): %s", st, err);
    CHECK(strstr(err, "warning: step 8") && strstr(err, "warning: step 15") && strstr(err, "step skipped"),
          "each skip is reported: %s", err);
    CHECK(strstr(out, "skipped 2 steps with non-finite values") != NULL, "the total is reported: %s", out);
    CHECK(strstr(m, "{\"step\": 8, \"epoch\": 1.3333, \"skipped\": 1}") && strstr(m, "\"skipped\": 2}"),
          "metrics count the skipped steps");
    free(out), free(err), free(m);
    Safetensors s;
    Err e;
    CHECK(st_open(&s, ckpt("sk", 18), &e) == 0, "%s", e.msg);
    if (s.file) {
        CHECK(st_meta(&s, "byol.skipped") && strcmp(st_meta(&s, "byol.skipped"), "2") == 0, "checkpoint counts 2 skips");
        size_t bad = 0;
        for (int i = 0; i < s.n_entries; i++) {
            const StEntry *t = &s.entries[i];
            float *v = malloc(t->end - t->begin + 4);
            st_read_f32(&s, t, v);
            for (size_t j = 0; j < (t->end - t->begin) / 4; j++) bad += !isfinite(v[j]);
            free(v);
        }
        CHECK(bad == 0, "%zu non-finite values in the final state", bad);
        st_close(&s);
    }
    /* Too many in a row: the run has diverged, and stops. */
    char list[256] = "";
    for (int k = 3; k <= 24; k++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", k > 3 ? "," : "", k);
    char env[300];
    snprintf(env, sizeof env, "BYOL_FAULT_NAN_STEPS=%s", list);
    snprintf(a, sizeof a, "train %s --out %s/sk2 --on-nan skip --epochs 5", FAST, TEST_TMP);
    st = byol_env(env, a);
    err = slurp_text("err");
    CHECK(st == 1 && strstr(err, "in a row") && strstr(err, "step 23"), "21 bad steps in a row stop the run (%d): %s",
          st, err);
    free(err);
    /* A bad value of the flag. */
    snprintf(a, sizeof a, "train %s --out %s/sk3 --on-nan maybe", FAST, TEST_TMP);
    st = byol_env("", a);
    err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "--on-nan") && count_of(err, "\n") == 1, "--on-nan maybe refused (%d): %s", st, err);
    free(err);
}

/* ------------------------------------------------------------------ kills and resume */

/* Starts `byol args` in the background (stdout/stderr to TEST_TMP/name.log); its pid. */
static pid_t start_byol(const char *env_kv, const char *args, const char *name) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "exec env %s %s %s > %s/%s.log 2>&1", env_kv, bin(), args, TEST_TMP, name);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void test_killed_mid_checkpoint_resumes(void) {
    char a[4096], why[400];
    /* The reference: uninterrupted. */
    snprintf(a, sizeof a, "train %s --out %s/ref", FAST, TEST_TMP);
    CHECK(byol_env("", a) == 0, "reference run");
    const long cfg = file_size(tmp_path("ref/config.txt")), size = file_size(ckpt("ref", 18));
    CHECK(cfg > 0 && size > 10000, "sizes: config %ld, checkpoint %ld", cfg, size);
    /* Killed half-way through writing the second checkpoint (step 12): bytes through atomic
     * writes are config.txt, ckpt 6, then half of ckpt 12. */
    char env[128];
    snprintf(env, sizeof env, "BYOL_FAULT_KILL_AFTER_BYTES=%ld", cfg + size + size / 2);
    snprintf(a, sizeof a, "train %s --out %s/mid", FAST, TEST_TMP);
    int st = byol_env(env, a);
    CHECK(st == 128 + SIGKILL, "killed by the fault hook (status %d)", st);
    CHECK(file_exists(ckpt("mid", 6)) && !file_exists(ckpt("mid", 12)), "ckpt 6 complete, ckpt 12 never renamed into place");
    CHECK(temporaries_in(tmp_path("mid")) == 1, "the half-written temporary is there");
    Safetensors s;
    Err e;
    CHECK(st_open(&s, ckpt("mid", 6), &e) == 0, "the previous checkpoint loads: %s", e.msg);
    st_close(&s);
    snprintf(a, sizeof a, "train --resume %s/mid", TEST_TMP);
    st = byol_env("", a);
    CHECK(st == 0, "resume after the kill (exit %d)", st);
    CHECK(temporaries_in(tmp_path("mid")) == 0, "the stale temporary was removed");
    CHECK(same_tensors(ckpt("ref", 18), ckpt("mid", 18), why, sizeof why), "final state differs: %s", why);
}

static void test_sigkill_at_random_moments(void) {
    char a[4096], why[400];
    TestRng r = {0x5eed};
    int kills = 0, done = 0, runs = 0, bad_ckpt = 0;
    enum { EPOCHS = 6, TOTAL = EPOCHS * 6 }; /* 6 steps an epoch, a checkpoint at each epoch's end */
    /* the reference: uninterrupted, timed (the kill moments are drawn within its duration) */
    snprintf(a, sizeof a, "train %s --epochs %d --out %s/ref6", FAST, EPOCHS, TEST_TMP);
    double t0 = now_seconds();
    CHECK(byol_env("", a) == 0, "reference run");
    double whole = now_seconds() - t0;
    int newest_step = 0, restarts = 0;
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/rnd", TEST_TMP);
    for (runs = 0; runs < 40 && !done; runs++) {
        /* resume from the newest complete checkpoint, or start over when none was written */
        char probe[4096];
        snprintf(probe, sizeof probe, "ls %s/ckpt-*.safetensors >/dev/null 2>&1", dir);
        const int have = sh_status(probe) == 0;
        if (have) snprintf(a, sizeof a, "train --resume %s", dir);
        else snprintf(a, sizeof a, "train %s --epochs %d --out %s", FAST, EPOCHS, dir);
        pid_t pid = start_byol("", a, "rnd");
        /* the first 12 runs are killed at a random moment before they could end (within the
         * whole run's time scaled by the share of steps left: start-up, steps, checkpoint
         * writes); the 13th may finish */
        const double left = (double)(TOTAL - newest_step) / TOTAL;
        const double wait_s = runs < 12 ? whole * (0.01 + 0.8 * rng_uniform(&r) * left) : 120;
        printf("  run %d from step %d: kill after %.2f s\n", runs, newest_step, wait_s);
        int status = 0;
        double t0 = now_seconds();
        pid_t got = 0;
        while ((got = waitpid(pid, &status, WNOHANG)) == 0 && now_seconds() - t0 < wait_s) usleep(5000);
        if (got == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            kills++;
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && runs < 12 && restarts < 3) {
            /* It ran to the end before its kill moment: the machine got faster than during the
             * reference run (another program's load ended). The run's own duration gives the
             * time scale; start the series over. */
            whole = (now_seconds() - t0) / left;
            printf("  run %d ended before its kill moment: the time scale is now %.2f s; starting over\n", runs, whole);
            snprintf(probe, sizeof probe, "rm -rf %s", dir);
            sh_status(probe);
            newest_step = 0, kills = 0, runs = -1, restarts++;
            continue;
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            done = 1;
        } else {
            char *log = slurp_text("rnd.log");
            CHECK(0, "run %d failed by itself (status %d): %s", runs, status, log);
            free(log);
            break;
        }
        /* whatever the moment, the newest checkpoint is complete */
        snprintf(probe, sizeof probe, "ls %s/ckpt-*.safetensors 2>/dev/null | tail -n1 > %s/newest", dir, TEST_TMP);
        sh_status(probe);
        char *newest = slurp_text("newest");
        newest[strcspn(newest, "\n")] = 0;
        const char *digits = strstr(newest, "ckpt-");
        if (digits) newest_step = atoi(digits + 5);
        if (*newest) {
            Safetensors s;
            Err e;
            if (st_open(&s, newest, &e) != 0) {
                bad_ckpt++;
                printf("  after kill %d: %s\n", kills, e.msg);
            } else {
                st_close(&s);
            }
        }
        free(newest);
    }
    printf("  %d runs, %d killed at random moments (an uninterrupted run takes %.2f s)\n", runs, kills, whole);
    CHECK(done, "the run finished after %d kills", kills);
    CHECK(kills >= 6, "only %d kills", kills);
    CHECK(bad_ckpt == 0, "%d times the newest checkpoint did not load", bad_ckpt);
    CHECK(temporaries_in(dir) == 0, "no temporary files left at the end");
    CHECK(same_tensors(ckpt("ref6", TOTAL), ckpt("rnd", TOTAL), why, sizeof why),
          "final state differs from the uninterrupted run: %s", why);
}

/* ------------------------------------------------------------------ disk full, corruption */

/* A run resumed from step 6 on a disk with room for one checkpoint only: the write of the next
 * fails, the run stops with one line, ckpt 6 stays intact, no temporary is left. With root a
 * real tmpfs is mounted; without, a file size limit (ulimit -f) makes the same failure. */
static void test_disk_full(void) {
    char a[4096];
    const long size = file_size(ckpt("ref", 18));
    snprintf(a, sizeof a, "train %s --out %s/full6 --max-steps 6", FAST, TEST_TMP);
    CHECK(byol_env("", a) == 0, "6 steps");
    char mnt[1200];
    snprintf(mnt, sizeof mnt, "%s/tiny", TEST_TMP);
    mkdir(mnt, 0700);
    char opts[64];
    snprintf(opts, sizeof opts, "size=%ld", (size * 3 / 2 + 4095) / 4096 * 4096 + 16384);
    const int mounted = mount("tmpfs", mnt, "tmpfs", 0, opts) == 0;
    if (!mounted) printf("  no tmpfs (not root?): a file size limit stands in for the full disk\n");
    snprintf(a, sizeof a, "cp -r %s/full6 %s/run", TEST_TMP, mnt);
    CHECK(sh_status(a) == 0, "copied the run");
    size_t n0, n1;
    char c6[1400];
    snprintf(c6, sizeof c6, "%s/run/ckpt-000000006.safetensors", mnt);
    uint8_t *before = slurp(c6, &n0);
    char cmd[8192];
    if (mounted)
        snprintf(cmd, sizeof cmd, "%s train --resume %s/run > %s/out 2> %s/err", bin(), mnt, TEST_TMP, TEST_TMP);
    else /* ulimit -f counts 512-byte blocks; SIGXFSZ ignored, so the write fails with EFBIG */
        snprintf(cmd, sizeof cmd, "trap '' XFSZ; ulimit -f %ld; %s train --resume %s/run > %s/out 2> %s/err",
                 size / 2 / 512, bin(), mnt, TEST_TMP, TEST_TMP);
    int st = sh_status(cmd);
    char *err = slurp_text("err");
    CHECK(st == 1, "the failed checkpoint write stops the run with exit 1 (got %d): %s", st, err);
    CHECK(strstr(err, "ckpt-000000012.safetensors") && strstr(err, mounted ? "No space left" : "too large"),
          "one clear line naming the file: %s", err);
    CHECK(count_of(err, "\n") == 1, "one line: %s", err);
    free(err);
    uint8_t *after = slurp(c6, &n1);
    CHECK(n0 == n1 && memcmp(before, after, n0) == 0, "the previous checkpoint is intact");
    free(before), free(after);
    snprintf(a, sizeof a, "%s/run", mnt);
    CHECK(temporaries_in(a) == 0, "no temporary file left on the full disk");
    snprintf(a, sizeof a, "%s/run/ckpt-000000012.safetensors", mnt);
    CHECK(!file_exists(a), "no ckpt 12");
    if (mounted) CHECK(umount(mnt) == 0, "unmounted");
}

static void test_corrupt_checkpoint_refused(void) {
    char a[4096];
    snprintf(a, sizeof a, "mkdir -p %s/cor && cp %s %s/cor/", TEST_TMP, ckpt("full6", 6), TEST_TMP);
    CHECK(sh_status(a) == 0, "copied");
    size_t n;
    uint8_t *b = slurp(ckpt("cor", 6), &n);
    b[n - 5] ^= 0x01; /* one bit of the last tensor's data */
    write_bytes(ckpt("cor", 6), b, n);
    free(b);
    snprintf(a, sizeof a, "eval --ckpt %s", ckpt("cor", 6));
    int st = byol_env("", a);
    char *err = slurp_text("err");
    CHECK(st == 1 && strstr(err, "checksum mismatch") && strstr(err, "cor/ckpt-000000006.safetensors") &&
              count_of(err, "\n") == 1,
          "eval refuses a flipped bit, naming the file (%d): %s", st, err);
    free(err);
    snprintf(a, sizeof a, "train --resume %s/cor", TEST_TMP);
    st = byol_env("", a);
    err = slurp_text("err");
    CHECK(st == 1 && strstr(err, "checksum mismatch"), "resume refuses it too (%d): %s", st, err);
    free(err);
}

/* Copies checkpoint src to dst with metadata `key` set to `value` and a valid checksum: what a
 * buggy or hostile writer could hand us, past the checksum. */
static void rewrite_meta(const char *src, const char *dst, const char *key, const char *value) {
    Safetensors st;
    Err e;
    if (st_open(&st, src, &e)) {
        printf("FATAL %s\n", e.msg);
        exit(2);
    }
    StTensorOut *ts = calloc((size_t)st.n_entries, sizeof *ts);
    StMeta *meta = calloc((size_t)st.n_meta + 1, sizeof *meta);
    for (int i = 0; i < st.n_entries; i++) {
        const StEntry *t = &st.entries[i];
        ts[i] = (StTensorOut){t->name, t->ndim, t->shape, st.file + st.data_start + t->begin, strcmp(t->dtype, "I64") == 0};
    }
    int n = 0;
    for (int i = 0; i < st.n_meta; i++)
        if (strcmp(st.meta[i].key, key) != 0) meta[n++] = st.meta[i];
    meta[n++] = (StMeta){(char *)key, (char *)value};
    if (st_write(dst, ts, st.n_entries, meta, n, &e)) {
        printf("FATAL %s\n", e.msg);
        exit(2);
    }
    free(ts), free(meta);
    st_close(&st);
}

/* Issue 16: the checksum covers the header (byol.step "6" -> "7" is one flipped bit), and a
 * checkpoint whose metadata passes the checksum is still checked value by value. */
static void test_checkpoint_header_and_metadata_refused(void) {
    char a[4096];
    snprintf(a, sizeof a, "mkdir -p %s/hdr %s/neg", TEST_TMP, TEST_TMP);
    CHECK(sh_status(a) == 0, "made folders");
    size_t n;
    uint8_t *b = slurp(ckpt("full6", 6), &n);
    const char *key = "\"byol.step\":\"6\"";
    uint8_t *at = NULL;
    for (size_t i = 0; i + strlen(key) <= n && !at; i++)
        if (memcmp(b + i, key, strlen(key)) == 0) at = b + i + strlen(key) - 2;
    CHECK(at != NULL, "byol.step found in the checkpoint");
    if (at) *at ^= 0x01; /* '6' -> '7' */
    write_bytes(ckpt("hdr", 6), b, n);
    free(b);
    snprintf(a, sizeof a, "eval --ckpt %s", ckpt("hdr", 6));
    int st = byol_env("", a);
    char *err = slurp_text("err");
    CHECK(st == 1 && strstr(err, "checksum mismatch") && strstr(err, "hdr/ckpt-000000006.safetensors") &&
              count_of(err, "\n") == 1,
          "eval refuses a flipped bit in byol.step (%d): %s", st, err);
    free(err);
    snprintf(a, sizeof a, "train --resume %s/hdr", TEST_TMP);
    st = byol_env("", a);
    err = slurp_text("err");
    CHECK(st == 1 && strstr(err, "checksum mismatch"), "resume refuses it too (%d): %s", st, err);
    free(err);
    /* A negative step with a valid checksum once reached the loader's slots[t % slots]. */
    rewrite_meta(ckpt("full6", 6), ckpt("neg", 6), "byol.step", "-5");
    snprintf(a, sizeof a, "eval --ckpt %s", ckpt("neg", 6));
    st = byol_env("", a);
    err = slurp_text("err");
    CHECK(st == 1 && strstr(err, "neg/ckpt-000000006.safetensors: byol.step '-5' is not a step (0 to 1e15)") &&
              count_of(err, "\n") == 1,
          "eval refuses a negative step in one line (%d): %s", st, err);
    free(err);
    snprintf(a, sizeof a, "train --resume %s", ckpt("neg", 6));
    st = byol_env("", a);
    err = slurp_text("err");
    CHECK(st == 1 && strstr(err, "byol.step '-5' is not a step") && count_of(err, "\n") == 1,
          "--resume refuses it in one line, before the loader sees it (%d): %s", st, err);
    free(err);
    rewrite_meta(ckpt("full6", 6), ckpt("neg", 6), "byol.std", "0.25 0 0.25");
    snprintf(a, sizeof a, "eval --ckpt %s", ckpt("neg", 6));
    st = byol_env("", a);
    err = slurp_text("err");
    CHECK(st == 1 && strstr(err, "byol.std '0.25 0 0.25' is not 1 to 3 numbers > 0") && count_of(err, "\n") == 1,
          "eval refuses a zero std in one line (%d): %s", st, err);
    free(err);
}

/* ------------------------------------------------------------------ out of memory */

static void test_allocation_failure_names_size_and_flag(void) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    printf("SKIP test_allocation_failure_names_size_and_flag: the sanitizers reserve terabytes of address space, "
           "so an address-space limit cannot be set\n");
    CHECK(1, "skipped");
#else
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "ulimit -v 3000000; %s train %s --out %s/oom --image-size 1024 --stem cifar > %s/out 2> %s/err", bin(),
             FAST, TEST_TMP, TEST_TMP, TEST_TMP);
    int st = sh_status(cmd);
    char *err = slurp_text("err");
    CHECK(st == 1, "exit 1 when memory runs out (got %d): %s", st, err);
    CHECK(strstr(err, "out of memory allocating") && strstr(err, "MiB") && strstr(err, "--image-size"),
          "says how much, for what, and which flag lowers it: %s", err);
    CHECK(count_of(err, "\n") == 1, "one line: %s", err);
    free(err);
#endif
}

int main(void) {
    test_tmpdir("test_faults");
    extract_cifar_subset(DATA, sizeof DATA);
    snprintf(FAST, sizeof FAST,
             "--data %s --width 4 --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --batch 16 --epochs 3 --keep 2 "
             "--eval-every 0 --knn-before 0 --knn-after 0 --log-every 1 --threads 2 --workers 2 --seed 5",
             DATA);
    RUN(test_step_guard_changes_nothing);
    RUN(test_nan_stop_keeps_last_good_checkpoint);
    RUN(test_nan_skip_counts_and_continues);
    RUN(test_killed_mid_checkpoint_resumes);
    RUN(test_sigkill_at_random_moments);
    RUN(test_disk_full);
    RUN(test_corrupt_checkpoint_refused);
    RUN(test_checkpoint_header_and_metadata_refused);
    RUN(test_allocation_failure_names_size_and_flag);
    return test_finish();
}
