/* Data-parallel runs under mpirun (2 ranks on loopback): byol step on 2 ranks equals the
 * one-process step on the same global batch, a short byol train on 2 ranks follows the 1-rank
 * loss curve, a 2-rank run resumes on 1 rank, and a rank that hangs or dies stops the job with a
 * non-zero status and a message naming it, the last checkpoint intact. Skipped (and said so)
 * when byol was built without MPI or mpirun is missing. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "../src/dist/balance.h"
#include "harness.h"

static char MPIRUN[1400], DATA[600], TINY[1200];
static const char *BYOL_BIN;

/* Runs `[mpirun -np P] byol args`, stdout and stderr to TEST_TMP/{out,err}; the exit status. */
static int byol_np(int P, const char *args) {
    char cmd[8192];
    if (P > 1)
        snprintf(cmd, sizeof cmd, "%s -np %d %s %s > %s/out 2> %s/err", MPIRUN, P, BYOL_BIN, args, TEST_TMP, TEST_TMP);
    else
        snprintf(cmd, sizeof cmd, "%s %s > %s/out 2> %s/err", BYOL_BIN, args, TEST_TMP, TEST_TMP);
    return sh_status(cmd);
}

/* The losses of metrics.jsonl lines, in order. */
static int read_losses(const char *path, double *out, int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[1024];
    int n = 0;
    while (n < cap && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"loss\": ");
        if (p) out[n++] = atof(p + 8);
    }
    fclose(f);
    return n;
}

/* Worst over tensors of ||(b - before) - (a - before)|| / ||a - before|| (a: the reference),
 * tensors whose reference update is zero checked against float32 resolution instead. */
static double worst_update_error(const char *before, const char *a, const char *b, char *worst_name, size_t cap) {
    Safetensors s0, sa, sb;
    Err e;
    if (st_open(&s0, before, &e) || st_open(&sa, a, &e) || st_open(&sb, b, &e)) {
        snprintf(worst_name, cap, "%.200s", e.msg);
        return INFINITY;
    }
    double worst = 0;
    for (int i = 0; i < sa.n_entries; i++) {
        const StEntry *ta = &sa.entries[i], *tb = st_find(&sb, ta->name), *t0 = st_find(&s0, ta->name);
        if (!tb || st_numel(tb) != st_numel(ta)) {
            snprintf(worst_name, cap, "%s missing", ta->name);
            worst = INFINITY;
            break;
        }
        size_t n = st_numel(ta);
        float *x0 = xcalloc(n, sizeof(float), "t"), *xa = xmalloc(n * sizeof(float), "t"), *xb = xmalloc(n * sizeof(float), "t");
        if (t0) st_read_f32(&s0, t0, x0);
        st_read_f32(&sa, ta, xa);
        st_read_f32(&sb, tb, xb);
        double num = 0, den = 0, scale = 0;
        for (size_t k = 0; k < n; k++) {
            double da = (double)xa[k] - x0[k], db = (double)xb[k] - x0[k];
            num += (db - da) * (db - da);
            den += da * da;
            scale += (double)x0[k] * x0[k];
        }
        double err = sqrt(den) > 1e-7 * fmax(sqrt(scale), 1.0) ? sqrt(num / den) : sqrt(num) / fmax(sqrt(scale), 1.0) / 1e-2;
        if (err > worst) {
            worst = err;
            snprintf(worst_name, cap, "%s", ta->name);
        }
        xfree(x0), xfree(xa), xfree(xb);
    }
    st_close(&s0), st_close(&sa), st_close(&sb);
    return worst;
}

/* byol step on 2 ranks (4 images each, synchronized batch norm) against one process on the
 * same 8-image batches, 3 steps of the committed PyTorch fixture. */
static void test_step_two_ranks_equal_one_process(void) {
    const char *common = "step --state tests/fixtures/step_r18_cifar_rgb.state.safetensors --views "
                         "tests/fixtures/step_r18_cifar_rgb.views.npy --width 4 --proj-hidden 32 --proj-dim 16 "
                         "--pred-hidden 32 --lr 0.05 --weight-decay 0.01 --lars-eta 0.02 --threads 1";
    char a[4096];
    snprintf(a, sizeof a, "%s --out %s/one.safetensors", common, TEST_TMP);
    int st = byol_np(1, a);
    char *one_out = slurp_text("out");
    CHECK(st == 0, "1 process: exit %d", st);
    snprintf(a, sizeof a, "%s --out %s/two.safetensors", common, TEST_TMP);
    st = byol_np(2, a);
    char *two_out = slurp_text("out"), *two_err = slurp_text("err");
    CHECK(st == 0, "2 ranks: exit %d: %s", st, two_err);
    /* the same losses (the global batch's), printed once */
    double l1[3], l2[3];
    int n1 = 0, n2 = 0;
    for (const char *p = one_out; n1 < 3 && (p = strstr(p, " loss ")); p++) l1[n1++] = atof(p + 6);
    for (const char *p = two_out; n2 < 4 && (p = strstr(p, " loss ")); p++) {
        if (n2 < 3) l2[n2] = atof(p + 6);
        n2++;
    }
    CHECK(n1 == 3 && n2 == 3, "losses printed: %d and %d (rank 0 alone prints)", n1, n2);
    for (int i = 0; i < 3 && n1 == 3 && n2 == 3; i++)
        CHECK(fabs(l2[i] - l1[i]) <= 1e-5 * fabs(l1[i]), "step %d loss %.9g vs %.9g", i, l2[i], l1[i]);
    char who[256], p0[1200], p1[1200], p2[1200];
    snprintf(p0, sizeof p0, "tests/fixtures/step_r18_cifar_rgb.state.safetensors");
    snprintf(p1, sizeof p1, "%s/one.safetensors", TEST_TMP);
    snprintf(p2, sizeof p2, "%s/two.safetensors", TEST_TMP);
    double w = worst_update_error(p0, p1, p2, who, sizeof who);
    printf("     2 ranks vs 1 process, 3 steps: worst update error %.2e (%s)\n", w, who);
    CHECK(w <= 1e-4, "worst update error %.3e (%s)", w, who);
    /* uneven shards (5 and 3 images, as a balanced run may cut them): the same step */
    snprintf(a, sizeof a, "%s --shards 5,3 --out %s/uneven.safetensors", common, TEST_TMP);
    st = byol_np(2, a);
    char *uneven_out = slurp_text("out"), *uneven_err = slurp_text("err");
    CHECK(st == 0, "2 ranks, --shards 5,3: exit %d: %s", st, uneven_err);
    double l3[3];
    int n3 = 0;
    for (const char *p = uneven_out; n3 < 3 && (p = strstr(p, " loss ")); p++) l3[n3++] = atof(p + 6);
    CHECK(n3 == 3, "uneven: %d losses", n3);
    for (int i = 0; i < 3 && n1 == 3 && n3 == 3; i++)
        CHECK(fabs(l3[i] - l1[i]) <= 1e-5 * fabs(l1[i]), "uneven: step %d loss %.9g vs %.9g", i, l3[i], l1[i]);
    snprintf(p2, sizeof p2, "%s/uneven.safetensors", TEST_TMP);
    w = worst_update_error(p0, p1, p2, who, sizeof who);
    printf("     2 ranks with 5 and 3 images vs 1 process, 3 steps: worst update error %.2e (%s)\n", w, who);
    CHECK(w <= 1e-4, "uneven shards: worst update error %.3e (%s)", w, who);
    snprintf(a, sizeof a, "%s --shards 6,1 --out %s/bad.safetensors", common, TEST_TMP);
    st = byol_np(2, a);
    char *bad_err = slurp_text("err");
    CHECK(st == 2 && strstr(bad_err, "--shards 6,1: want 2 comma-separated sizes of at least 2 that add up to the batch of 8"),
          "--shards 6,1: exit %d: %s", st, bad_err);
    free(uneven_out), free(uneven_err), free(bad_err);
    /* a batch that does not split */
    snprintf(a, sizeof a, "%s --out %s/three.safetensors", common, TEST_TMP);
    st = byol_np(3, a);
    char *err3 = slurp_text("err");
    CHECK(st != 0 && strstr(err3, "does not split into 3 equal shards"), "3 ranks, batch 8: exit %d: %s", st, err3);
    free(one_out), free(two_out), free(two_err), free(err3);
}

/* The balance's cuts, without MPI: shares follow speed, smoothed, within the margin. */
static void test_shard_plan_cuts(void) {
    ShardPlan p;
    shard_plan_init(&p, 96, 3, 1);
    CHECK(p.margin == 8 && shard_plan_max(&p) == 48, "3 x 32 images: margin %d (8), max %d (48)", p.margin, shard_plan_max(&p));
    int f, n;
    shard_plan_reach(&p, 0, &f, &n);
    CHECK(f == 0 && n == 40, "rank 0 reaches [%d, %d) ([0, 40))", f, f + n);
    shard_plan_reach(&p, 1, &f, &n);
    CHECK(f == 24 && n == 48, "rank 1 reaches [%d, %d) ([24, 72))", f, f + n);
    shard_plan_reach(&p, 2, &f, &n);
    CHECK(f == 56 && n == 40, "rank 2 reaches [%d, %d) ([56, 96))", f, f + n);
    const double even[3] = {1, 1, 1}, slow1[3] = {1, 2, 1}, slower1[3] = {1, 10, 1};
    shard_plan_observe(&p, even);
    CHECK(p.cut[1] == 32 && p.cut[2] == 64, "equal speeds: cuts %d %d", p.cut[1], p.cut[2]);
    shard_plan_free(&p);
    shard_plan_init(&p, 96, 3, 1);
    shard_plan_observe(&p, slow1); /* the first costs are taken as they are */
    CHECK(p.cut[1] == 38 && p.cut[2] == 58, "rank 1 at half speed: cuts %d %d (38 58: 38, 20, 38 images)", p.cut[1], p.cut[2]);
    shard_plan_observe(&p, even); /* smoothed: 0.7 * 2 + 0.3 * 1 = 1.7 for rank 1 */
    CHECK(p.cut[1] == 37 && p.cut[2] == 59, "one equal step after: cuts %d %d (37 59)", p.cut[1], p.cut[2]);
    for (int i = 0; i < 30; i++) shard_plan_observe(&p, even);
    CHECK(p.cut[1] == 32 && p.cut[2] == 64, "back to equal speeds: cuts %d %d", p.cut[1], p.cut[2]);
    for (int i = 0; i < 30; i++) shard_plan_observe(&p, slower1);
    CHECK(p.cut[1] == 40 && p.cut[2] == 56, "rank 1 ten times slower: held at the margin, cuts %d %d (40 56)", p.cut[1], p.cut[2]);
    const double stalled[3] = {1, 0, 1};
    shard_plan_observe(&p, stalled);
    CHECK(p.cut[1] == 40 && p.cut[2] == 56, "a zero time changes nothing: cuts %d %d", p.cut[1], p.cut[2]);
    shard_plan_free(&p);
    shard_plan_init(&p, 96, 3, 0); /* --balance 0 */
    shard_plan_observe(&p, slower1);
    CHECK(p.margin == 0 && p.cut[1] == 32 && p.cut[2] == 64 && shard_plan_max(&p) == 32, "without --balance the cuts stay");
    shard_plan_free(&p);
    shard_plan_init(&p, 8, 2, 1);
    CHECK(p.margin == 1, "2 x 4 images: margin %d (1: shards of 3 to 5)", p.margin);
    shard_plan_free(&p);
    shard_plan_init(&p, 4, 2, 1);
    CHECK(p.margin == 0, "2 x 2 images: margin %d (0: a shard never falls below 2)", p.margin);
    shard_plan_free(&p);
}

/* byol train on 2 ranks follows the 1-rank curve; then a 2-rank run cut short resumes on 1. */
static void test_train_two_ranks_follow_one(void) {
    char a[4096];
    snprintf(a, sizeof a, "train %s --out %s/t1", TINY, TEST_TMP);
    int st = byol_np(1, a);
    char *err = slurp_text("err");
    CHECK(st == 0, "1 rank: exit %d: %s", st, err);
    free(err);
    snprintf(a, sizeof a, "train %s --out %s/t2", TINY, TEST_TMP);
    st = byol_np(2, a);
    char *out = slurp_text("out");
    err = slurp_text("err");
    CHECK(st == 0, "2 ranks: exit %d: %s", st, err);
    CHECK(strstr(out, "2 ranks x 8 images"), "says it runs on 2 ranks: %s", out);
    free(out), free(err);
    double c1[64], c2[64];
    char p[1200];
    snprintf(p, sizeof p, "%s/t1/metrics.jsonl", TEST_TMP);
    int n1 = read_losses(p, c1, 64);
    snprintf(p, sizeof p, "%s/t2/metrics.jsonl", TEST_TMP);
    int n2 = read_losses(p, c2, 64);
    CHECK(n1 == 12 && n2 == n1, "loss lines %d and %d (12 steps)", n1, n2);
    double worst = 0;
    for (int i = 0; i < n1 && i < n2; i++) worst = fmax(worst, fabs(c2[i] - c1[i]) / fabs(c1[i]));
    printf("     2-rank vs 1-rank loss curve, %d steps: worst relative difference %.2e\n", n1, worst);
    CHECK(worst <= 1e-3, "loss curves differ by %.3e", worst);
    /* balanced shards, rank 1 made to look three times slower: the cuts move to the margin
     * (10 and 6 images of 16) and the curve is still the 1-rank one */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s -x BYOL_FAULT_SLOW_RANK=1 -np 2 %s train %s --balance 1 --out %s/tb > %s/out 2> %s/err",
             MPIRUN, BYOL_BIN, TINY, TEST_TMP, TEST_TMP, TEST_TMP);
    st = sh_status(cmd);
    out = slurp_text("out");
    err = slurp_text("err");
    CHECK(st == 0, "2 ranks, --balance 1: exit %d: %s", st, err);
    CHECK(strstr(out, "balanced by speed up to 2 either way"), "says it balances: %s", out);
    CHECK(strstr(out, "balanced shards at the end (images per rank): 10 6"), "rank 1 took fewer images: %s", out);
    free(out), free(err);
    double cb[64];
    snprintf(p, sizeof p, "%s/tb/metrics.jsonl", TEST_TMP);
    int nb = read_losses(p, cb, 64);
    CHECK(nb == n1, "balanced run: %d loss lines", nb);
    /* Sums in another order (ranks, shard sizes) differ in rounding only; the first epoch (6
     * steps) is held to float tolerance and the whole curve to the equal shards' 1e-3 (TINY
     * says why the model keeps rounding small). */
    double first_epoch = 0;
    worst = 0;
    for (int i = 0; i < n1 && i < nb; i++) {
        const double d = fabs(cb[i] - c1[i]) / fabs(c1[i]);
        worst = fmax(worst, d);
        if (i < 6) first_epoch = fmax(first_epoch, d);
    }
    printf("     2 balanced ranks (10 + 6 images) vs 1 rank: worst relative loss difference %.2e over the first "
           "6 steps, %.2e over %d\n", first_epoch, worst, nb);
    CHECK(first_epoch <= 1e-5, "balanced: first epoch's losses differ by %.3e", first_epoch);
    CHECK(worst <= 1e-3, "balanced: loss curves differ by %.3e", worst);
    /* interrupted on 2 ranks, resumed on 1: the same curve */
    snprintf(a, sizeof a, "train %s --out %s/t3 --max-steps 5", TINY, TEST_TMP);
    st = byol_np(2, a);
    CHECK(st == 0, "2 ranks, --max-steps 5: exit %d", st);
    snprintf(a, sizeof a, "train --resume %s/t3 --threads 1", TEST_TMP);
    st = byol_np(1, a);
    err = slurp_text("err");
    CHECK(st == 0, "resume on 1 rank: exit %d: %s", st, err);
    free(err);
    double c3[64];
    snprintf(p, sizeof p, "%s/t3/metrics.jsonl", TEST_TMP);
    int n3 = read_losses(p, c3, 64);
    CHECK(n3 == n1, "resumed run: %d loss lines", n3);
    worst = 0;
    for (int i = 0; i < n1 && i < n3; i++) worst = fmax(worst, fabs(c3[i] - c1[i]) / fabs(c1[i]));
    printf("     2 ranks for 5 steps, then 1: worst relative loss difference %.2e over %d steps\n", worst, n3);
    CHECK(worst <= 1e-3, "2 ranks then 1: loss curve differs by %.3e", worst);
}

/* The PID of rank `r` of the job whose command line contains `marker` (0 if none yet). */
static pid_t find_rank(const char *marker, int r) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "for p in $(pgrep -f -- '%s'); do tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | "
             "grep -qx 'OMPI_COMM_WORLD_RANK=%d' && echo $p; done | head -n1 > %s/pid",
             marker, r, TEST_TMP);
    if (system(cmd) != 0) return 0;
    char *s = slurp_text("pid");
    pid_t p = (pid_t)atoi(s);
    free(s);
    return p;
}

/* Starts a long 2-rank run in the background, waits for its first checkpoint, does `sig` to
 * rank 1, and returns the job's exit status and the seconds it took to stop. */
static int fault_run(const char *name, int sig, double *seconds) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "exec %s -np 2 %s train %s --epochs 1000 --comm-timeout 5 --out %s/%s > %s/%s.out 2> %s/%s.err",
             MPIRUN, BYOL_BIN, TINY, TEST_TMP, name, TEST_TMP, name, TEST_TMP, name);
    pid_t job = fork(); /* our child, so that waitpid sees it end */
    if (job < 0) return -1;
    if (job == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    char marker[1200], ck[1300];
    snprintf(marker, sizeof marker, "%s/%s", TEST_TMP, name);
    snprintf(ck, sizeof ck, "ls %s/ckpt-*.safetensors >/dev/null 2>&1", marker);
    pid_t victim = 0;
    for (int i = 0; i < 600 && !victim; i++) { /* up to 60 s for the first checkpoint */
        usleep(100000);
        if (sh_status(ck) == 0) victim = find_rank(marker, 1);
    }
    if (!victim) {
        kill(job, SIGKILL);
        return -2;
    }
    kill(victim, sig);
    const double t0 = now_seconds();
    int status = -3;
    for (int i = 0; i < 1200; i++) { /* the job must end on its own within 120 s */
        int ws;
        if (waitpid(job, &ws, WNOHANG) == job) {
            status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
            break;
        }
        usleep(100000);
    }
    *seconds = now_seconds() - t0;
    if (status == -3) kill(job, SIGKILL);
    kill(victim, SIGCONT);
    kill(victim, SIGKILL);
    return status;
}

static void test_a_hung_or_dead_rank_stops_the_job(void) {
    double secs = 0;
    int st = fault_run("hang", SIGSTOP, &secs);
    char *err = slurp_text("hang.err");
    CHECK(st > 0, "a stopped rank 1: the job ended with status %d after %.0f s: %s", st, secs, err);
    CHECK(secs < 60, "it took %.0f s to notice (--comm-timeout 5)", secs);
    CHECK(strstr(err, "rank 1"), "the message names rank 1: %s", err);
    free(err);
    st = fault_run("dead", SIGKILL, &secs);
    err = slurp_text("dead.err");
    CHECK(st > 0 && secs < 60, "a killed rank 1: status %d after %.0f s: %s", st, secs, err);
    CHECK(strstr(err, "rank 1"), "the message names rank 1: %s", err);
    free(err);
    /* the newest checkpoint of the hung run is complete: the run resumes from it (cut short to 3
     * epochs, which changes its recipe) */
    char a[4096];
    snprintf(a, sizeof a, "train --resume %s/hang --epochs 3 --allow-change 1 --threads 1", TEST_TMP);
    st = byol_np(1, a);
    err = slurp_text("err");
    CHECK(st == 0, "resume after the hang: exit %d: %s", st, err);
    free(err);
}

int main(void) {
    test_tmpdir("test_dist");
    RUN(test_shard_plan_cuts);
    BYOL_BIN = getenv("BYOL") ? getenv("BYOL") : "./byol";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --version > %s/version", BYOL_BIN, TEST_TMP);
    CHECK(sh_status(cmd) == 0, "byol --version");
    char *v = slurp_text("version");
    if (strstr(v, "no MPI") || sh_status("command -v mpirun > /dev/null") != 0) {
        printf("SKIP test_dist: %s\n", strstr(v, "no MPI") ? "byol built without MPI (apt-get install libopenmpi-dev)"
                                                             : "mpirun not found (apt-get install openmpi-bin)");
        free(v);
        return test_finish();
    }
    free(v);
    /* Loopback only, any number of ranks on 2 cores, and as root in CI; shared-memory transport
     * without ptrace-based single copy (refused in containers). For the sanitizer build
     * (SANITIZE=1; ignored otherwise): Open MPI's own never-freed allocations are suppressed
     * by library (tests/lsan-mpi.supp says why), which needs its components kept loaded and
     * full unwinding through its frame-pointer-less code to name them. */
    char cwd[1024];
    if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, ".");
    snprintf(MPIRUN, sizeof MPIRUN,
             "mpirun --oversubscribe %s --mca btl self,vader --mca btl_vader_single_copy_mechanism none "
             "--mca mca_base_component_disable_dlclose 1 -x LSAN_OPTIONS=suppressions=%.600s/tests/lsan-mpi.supp "
             "-x ASAN_OPTIONS=fast_unwind_on_malloc=0",
             geteuid() == 0 ? "--allow-run-as-root" : "", cwd);
    extract_cifar_subset(DATA, sizeof DATA);
    /* A well-conditioned small run (issue 17: tolerances come from such tests, not from one
     * machine's rounding). At width 4 and the default --base-lr 1.0 a rounding difference grew
     * about tenfold per step (2.5e-3 after 12 steps, on AVX-512 and AVX2 builds alike); at width
     * 8 and --base-lr 0.05 the 2-rank curve stays within 1.2e-5 of the 1-rank one, while a 10%
     * change of the learning rate still moves it by 1.1e-2 and unsynchronized batch norm by
     * 6e-2, so the 1e-3 bounds below still tell a wrong step from rounding. */
    snprintf(TINY, sizeof TINY,
             "--data %s --width 8 --base-lr 0.05 --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --batch 16 --epochs 2 --keep 2 "
             "--eval-every 0 --knn-before 0 --knn-after 0 --log-every 1 --threads 1 --workers 1 --seed 3",
             DATA);
    RUN(test_step_two_ranks_equal_one_process);
    RUN(test_train_two_ranks_follow_one);
    RUN(test_a_hung_or_dead_rank_stops_the_job);
    return test_finish();
}
