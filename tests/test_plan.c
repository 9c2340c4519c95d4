/* The convolution planner (src/nn/conv_plan.c): the fixed rule, measured choices (with a fake
 * clock, so that the expected choice is known, and with the real one), the text form that
 * checkpoints carry, the cache file and its key, the lookup of smaller batches; and end to end:
 * byol bench --plan's table, the cache reused by a second run, the plan saved in checkpoints,
 * and a resumed run that keeps its checkpoint's kernels when measuring would choose others. */
#include <sys/wait.h>

#include "core/threads.h"
#include "harness.h"
#include "io/checkpoint.h"
#include "nn/conv_plan.h"

static char DATA[600];

static int byol(const char *args) {
    char cmd[8192];
    const char *bin = getenv("BYOL") ? getenv("BYOL") : "./byol";
    snprintf(cmd, sizeof cmd, "%s %s > %s/out 2> %s/err", bin, args, TEST_TMP, TEST_TMP);
    return sh_status(cmd);
}

/* A fake clock: seconds[pass][algo] for every shape; counts the calls. */
typedef struct {
    double seconds[3][CONV_ALGO_COUNT];
    int calls;
} FakeClock;

static double fake_time(ConvAlgo a, int pass, const ConvShape *s, void *ctx) {
    (void)s;
    FakeClock *c = ctx;
    c->calls++;
    return c->seconds[pass][a];
}

/* A layer every kernel applies to on every ISA: 3x3 stride 1, channels a multiple of 16. */
static ConvShape all_apply(int B) { return conv_shape(B, 8, 8, 32, 32, 3, 1, 1); }

static void test_fixed_rule(void) {
    conv_plan_reset();
    conv_plan_set_mode(PLAN_FIXED);
    const ConvShape shapes[] = {all_apply(4), conv_shape(4, 8, 8, 3, 5, 3, 1, 1), conv_shape(2, 9, 9, 64, 64, 3, 2, 1),
                                conv_shape(2, 8, 8, 256, 256, 3, 1, 1), conv_shape(2, 8, 8, 16, 32, 1, 2, 0)};
    for (size_t k = 0; k < ARRAY_LEN(shapes); k++) {
        conv_plan(&shapes[k], CONV_PASSES_ALL);
        for (int p = 0; p < 3; p++)
            CHECK(conv_plan_algo(&shapes[k], p) == conv_algo_fixed(&shapes[k], p), "shape %zu pass %d", k, p);
    }
    /* the rule itself: narrow layers direct (where the channels fit the vectors), Winograd for
     * wide 3x3 stride 1, im2col for the rest */
    CHECK(conv_algo_fixed(&shapes[2], CONV_PASS_FORWARD) == CONV_ALGO_IM2COL, "64 channels, stride 2: im2col");
    CHECK(conv_algo_fixed(&shapes[3], CONV_PASS_FORWARD) == CONV_ALGO_WINOGRAD, "256 channels 3x3/1: Winograd");
    CHECK(conv_algo_fixed(&shapes[1], CONV_PASS_FORWARD) == CONV_ALGO_WINOGRAD, "5 output channels: no direct");
    PlanStats st;
    conv_plan_stats(&st);
    CHECK(st.fixed == 15 && st.measured == 0 && st.shapes == 5, "%d fixed, %d measured, %d shapes", st.fixed,
          st.measured, st.shapes);
}

static void test_measure_picks_the_fastest(void) {
    FakeClock c = {{{3, 2, 1}, {1, 2, 3}, {2, 1, 3}}, 0}; /* forward: direct; data: im2col; weight: Winograd */
    conv_plan_reset();
    conv_plan_set_mode(PLAN_MEASURE);
    conv_plan_use_cache("none", NULL);
    conv_plan_set_timer(fake_time, &c);
    ConvShape s = all_apply(4);
    size_t scratch = conv_plan(&s, CONV_PASSES_ALL);
    CHECK(conv_plan_algo(&s, CONV_PASS_FORWARD) == CONV_ALGO_DIRECT, "forward: direct");
    CHECK(conv_plan_algo(&s, CONV_PASS_DATA) == CONV_ALGO_IM2COL, "data: im2col");
    CHECK(conv_plan_algo(&s, CONV_PASS_WEIGHT) == CONV_ALGO_WINOGRAD, "weight: Winograd");
    size_t need = conv_algo_scratch_floats(CONV_ALGO_DIRECT, &s, CONV_PASS_FORWARD);
    need = MAX(need, conv_algo_scratch_floats(CONV_ALGO_IM2COL, &s, CONV_PASS_DATA));
    need = MAX(need, conv_algo_scratch_floats(CONV_ALGO_WINOGRAD, &s, CONV_PASS_WEIGHT));
    CHECK(scratch == need, "scratch %zu: the chosen kernels need %zu", scratch, need);
    /* planned once: asking again measures nothing */
    const int calls = c.calls;
    conv_plan(&s, CONV_PASSES_ALL);
    CHECK(c.calls == calls, "a planned shape is not measured again (%d more runs)", c.calls - calls);
    /* a kernel that does not apply is never timed, however fast the clock would say it is */
    FakeClock d = {{{1, 1, 0.001}, {1, 1, 0.001}, {1, 1, 0.001}}, 0};
    conv_plan_set_timer(fake_time, &d);
    ConvShape odd = conv_shape(4, 8, 8, 3, 5, 3, 2, 1); /* no direct (5 channels), no Winograd (stride 2) */
    conv_plan(&odd, CONV_PASSES_ALL);
    for (int p = 0; p < 3; p++) CHECK(conv_plan_algo(&odd, p) == CONV_ALGO_IM2COL, "pass %d: im2col, the only one", p);
    /* near-ties (within 5%) keep the fixed rule's choice (Winograd here); 10% faster wins */
    FakeClock t = {{{0.97, 1, 1}, {0.90, 1, 1}, {1, 1, 1}}, 0};
    conv_plan_set_timer(fake_time, &t);
    ConvShape wide = conv_shape(2, 8, 8, 256, 256, 3, 1, 1);
    CHECK(conv_algo_fixed(&wide, CONV_PASS_FORWARD) == CONV_ALGO_WINOGRAD, "the rule: Winograd");
    conv_plan(&wide, CONV_PASSES_FORWARD | CONV_PASSES_DATA);
    CHECK(conv_plan_algo(&wide, CONV_PASS_FORWARD) == CONV_ALGO_WINOGRAD, "3%% faster: the rule's choice stays");
    CHECK(conv_plan_algo(&wide, CONV_PASS_DATA) == CONV_ALGO_IM2COL, "10%% faster: im2col");
    PlanStats st;
    conv_plan_stats(&st);
    CHECK(st.measured == 8 && st.fixed == 0, "%d passes measured", st.measured);
    conv_plan_set_timer(NULL, NULL);
}

/* The real clock on a small layer: every kernel that applies is timed, and the choice is the
 * fastest of them; the kernels then compute the same convolution as the reference. */
static void test_measure_with_the_clock(void) {
    conv_plan_reset();
    conv_plan_set_mode(PLAN_MEASURE);
    conv_plan_use_cache("none", NULL);
    ConvShape s = all_apply(8);
    size_t scratch = conv_plan(&s, CONV_PASSES_ALL);
    FILE *f = tmpfile();
    conv_plan_report(f);
    rewind(f);
    char line[512];
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        char pass[16], chosen[16], v[3][16];
        const char *at = strstr(line, "forward") ? strstr(line, "forward") : strstr(line, "data ") ? strstr(line, "data ")
                                                                            : strstr(line, "weight");
        if (!at || sscanf(at, "%15s %15s %15s %15s %15s", pass, chosen, v[0], v[1], v[2]) != 5) continue;
        rows++;
        double best = 0, rate = -1;
        for (int a = 0; a < 3; a++) {
            best = MAX(best, atof(v[a]));
            if (strcmp(chosen, conv_algo_name(a)) == 0) rate = atof(v[a]);
        }
        /* the fastest, or the fixed rule's within 5% of it (rates printed to 0.1 GFLOP/s) */
        CHECK(rate > 0 && rate * 1.05 >= best - 0.1, "%s: chose %s at %.1f GFLOP/s, the fastest ran %.1f", pass, chosen,
              rate, best);
    }
    fclose(f);
    CHECK(rows == 3, "3 passes reported, %d", rows);
    TestRng r = {5};
    size_t nx = (size_t)s.B * s.H * s.W * s.Cin, nw = (size_t)s.Cout * 9 * s.Cin, ny = (size_t)s.B * s.Ho * s.Wo * s.Cout;
    float *x = xmalloc(nx * 4, "t"), *w = xmalloc(nw * 4, "t"), *y = xmalloc(ny * 4, "t"), *yr = xmalloc(ny * 4, "t");
    float *sc = xcalloc(scratch + 1, 4, "t");
    fill_normal(&r, x, nx, 1), fill_normal(&r, w, nw, 0.1f);
    conv2d_forward_cpu(y, x, w, &s, sc);
    conv2d_forward_ref(yr, x, w, &s, NULL);
    CHECK_CLOSE(y, yr, ny, 1e-5, "the planned forward against the reference");
    xfree(x), xfree(w), xfree(y), xfree(yr), xfree(sc);
    PlanStats st;
    conv_plan_stats(&st);
    CHECK(st.measured == 3 && st.seconds > 0, "%d measured in %g s", st.measured, st.seconds);
}

static void test_text_round_trip(void) {
    FakeClock c = {{{3, 2, 1}, {1, 2, 3}, {2, 1, 3}}, 0};
    conv_plan_reset();
    conv_plan_set_mode(PLAN_MEASURE);
    conv_plan_use_cache("none", NULL);
    conv_plan_set_timer(fake_time, &c);
    ConvShape a = all_apply(4), b = conv_shape(4, 8, 8, 3, 5, 3, 2, 1);
    conv_plan(&a, CONV_PASSES_ALL);
    conv_plan(&b, CONV_PASSES_FORWARD);
    conv_plan_set_timer(NULL, NULL);
    char *text = conv_plan_to_text();
    CHECK(strcmp(text, "4,8,8,32,32,3,1,1:diw 4,8,8,3,5,3,2,1:i--") == 0, "text: '%s'", text);
    conv_plan_reset();
    conv_plan_set_mode(PLAN_FIXED);
    Err e;
    CHECK(conv_plan_load_text(text, &e) == 0, "loaded");
    /* the checkpoint's choices stand over the fixed rule's */
    conv_plan(&a, CONV_PASSES_ALL);
    CHECK(conv_plan_algo(&a, CONV_PASS_FORWARD) == CONV_ALGO_DIRECT && conv_plan_algo(&a, CONV_PASS_DATA) == CONV_ALGO_IM2COL &&
              conv_plan_algo(&a, CONV_PASS_WEIGHT) == CONV_ALGO_WINOGRAD, "choices kept");
    PlanStats st;
    conv_plan_stats(&st);
    CHECK(st.given == 3 && st.fixed == 0, "%d given, %d fixed (the passes this process asked for)", st.given, st.fixed);
    free(text);
    /* a kernel that does not apply here (direct on 5 channels) is chosen again, and counted */
    conv_plan_reset();
    CHECK(conv_plan_load_text("4,8,8,3,5,3,1,1:dww", &e) == 1, "one choice does not apply");
    ConvShape c5 = conv_shape(4, 8, 8, 3, 5, 3, 1, 1);
    conv_plan(&c5, CONV_PASSES_ALL);
    CHECK(conv_plan_algo(&c5, CONV_PASS_FORWARD) == conv_algo_fixed(&c5, CONV_PASS_FORWARD), "forward chosen again");
    /* malformed text: refused, naming the entry, nothing taken */
    const char *bad[] = {"4,8,8,32,32,3,1:ddd", "4,8,8,32,32,3,1,1:dxd", "4,8,8,32,32,3,1,1:---", "4,8,8,-2,32,3,1,1:ddd",
                         "4,8,8,32,32,3,1,1:dddd", "4,8,8,32,32,3,1,5:ddd"};
    for (size_t k = 0; k < ARRAY_LEN(bad); k++) {
        conv_plan_reset();
        char two[128];
        snprintf(two, sizeof two, "2,4,4,8,8,3,1,1:iii %s", bad[k]);
        CHECK(conv_plan_check_text(two, &e) == -1 && strstr(e.msg, "plan entry 2"), "'%s' refused: %s", bad[k], e.msg);
        CHECK(conv_plan_load_text(two, &e) == -1, "'%s' not loaded", bad[k]);
        PlanStats s0;
        conv_plan_stats(&s0);
        CHECK(s0.shapes == 0, "nothing taken from '%s'", bad[k]);
    }
}

/* A balanced data-parallel step runs shards smaller than the batch planned: they take the plan
 * of the smallest batch this process planned that holds them. */
static void test_smaller_batch_lookup(void) {
    conv_plan_reset();
    conv_plan_set_mode(PLAN_FIXED);
    Err e;
    conv_plan_load_text("8,8,8,32,32,3,1,1:iii 16,8,8,32,32,3,1,1:www", &e);
    ConvShape s6 = all_apply(6), s8 = all_apply(8), s12 = all_apply(12), s16 = all_apply(16);
    /* only batch 16 planned: batch 8's entry (from a cache, another run's) was never sized for
     * by this process, so a 6-image shard takes batch 16's kernels, whose scratch it has */
    conv_plan(&s16, CONV_PASSES_ALL);
    CHECK(conv_plan_algo(&s6, CONV_PASS_FORWARD) == CONV_ALGO_WINOGRAD, "6 images, batch 8 not planned: batch 16's");
    conv_plan(&s8, CONV_PASSES_ALL);
    CHECK(conv_plan_algo(&s6, CONV_PASS_FORWARD) == CONV_ALGO_IM2COL, "6 images: batch 8's plan");
    CHECK(conv_plan_algo(&s12, CONV_PASS_FORWARD) == CONV_ALGO_WINOGRAD, "12 images: batch 16's plan");
    CHECK(conv_plan_algo(&s16, CONV_PASS_FORWARD) == CONV_ALGO_WINOGRAD, "16 images: its own");
    /* a larger batch was never planned: a programming error, which stops the process */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        ConvShape s17 = all_apply(17);
        conv_plan_algo(&s17, CONV_PASS_FORWARD);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) != 0, "an unplanned batch stops the process");
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void test_cache_file(void) {
    const char *path = tmp_path("cache/sub/plans.txt"); /* folders made as needed */
    FakeClock c = {{{3, 2, 1}, {1, 2, 3}, {2, 1, 3}}, 0};
    threads_set(1);
    conv_plan_reset();
    conv_plan_set_mode(PLAN_MEASURE);
    conv_plan_use_cache(path, stdout);
    conv_plan_set_timer(fake_time, &c);
    ConvShape a = all_apply(4);
    conv_plan(&a, CONV_PASSES_ALL);
    char *text = slurp_text("cache/sub/plans.txt");
    char want[1200];
    snprintf(want, sizeof want, "%s\t4,8,8,32,32,3,1,1:diw\n", conv_plan_machine_key());
    CHECK(strstr(text, want) != NULL, "cache line for this machine: %s", text);
    CHECK(strstr(text, "threads 1;") != NULL, "the key names the thread count: %s", text);
    free(text);
    /* a second process on the same machine and threads: the cache's choices, nothing measured */
    conv_plan_reset();
    c.calls = 0;
    conv_plan_use_cache(path, stdout);
    conv_plan(&a, CONV_PASSES_ALL);
    PlanStats st;
    conv_plan_stats(&st);
    CHECK(st.cached == 3 && st.measured == 0 && c.calls == 0, "%d cached, %d measured, %d runs", st.cached, st.measured,
          c.calls);
    CHECK(conv_plan_algo(&a, CONV_PASS_DATA) == CONV_ALGO_IM2COL, "the cached choice");
    /* another thread count is another key: measured again, and both kept in the file */
    threads_set(2);
    conv_plan_reset();
    conv_plan_use_cache(path, stdout);
    conv_plan(&a, CONV_PASSES_ALL);
    conv_plan_stats(&st);
    CHECK(st.measured == 3 && st.cached == 0, "2 threads: measured (%d)", st.measured);
    text = slurp_text("cache/sub/plans.txt");
    CHECK(count(text, "4,8,8,32,32,3,1,1:diw") == 2, "two machines' lines: %s", text);
    free(text);
    /* a damaged line is named, the rest still read, and the line dropped at the next write */
    FILE *f = fopen(path, "a");
    fputs("garbage without a tab\n", f);
    fclose(f);
    FILE *warn = tmpfile();
    conv_plan_reset();
    conv_plan_use_cache(path, warn);
    conv_plan(&a, CONV_PASSES_ALL);
    conv_plan_stats(&st);
    CHECK(st.cached == 3, "the good lines still read (%d)", st.cached);
    ConvShape b = all_apply(2);
    conv_plan(&b, CONV_PASSES_FORWARD); /* measured: the file is written again */
    rewind(warn);
    char msg[512] = "";
    CHECK(fgets(msg, sizeof msg, warn) && strstr(msg, path) && strstr(msg, "line 4"), "warning: %s", msg);
    fclose(warn);
    text = slurp_text("cache/sub/plans.txt");
    CHECK(!strstr(text, "garbage") && strstr(text, "2,8,8,32,32,3,1,1:d--"), "rewritten: %s", text);
    free(text);
    /* a cache that cannot be written: one warning, and the run goes on */
    warn = tmpfile();
    conv_plan_reset();
    conv_plan_use_cache("/proc/byol-no-such/plans.txt", warn);
    conv_plan(&a, CONV_PASSES_ALL);
    conv_plan(&b, CONV_PASSES_ALL);
    rewind(warn);
    int lines = 0;
    while (fgets(msg, sizeof msg, warn)) lines++;
    fclose(warn);
    CHECK(lines == 1, "one warning for an unwritable cache, %d", lines);
    CHECK(conv_plan_algo(&b, CONV_PASS_FORWARD) == CONV_ALGO_DIRECT, "planned all the same");
    /* in fixed mode the cache is not read */
    conv_plan_reset();
    conv_plan_set_mode(PLAN_FIXED);
    threads_set(1);
    conv_plan_use_cache(path, stdout);
    conv_plan(&a, CONV_PASSES_ALL);
    conv_plan_stats(&st);
    CHECK(st.fixed == 3 && st.cached == 0, "fixed mode ignores the cache");
    conv_plan_set_timer(NULL, NULL);
    conv_plan_reset();
}

static char *ckpt_plan(const char *path) {
    Safetensors st;
    Err e;
    if (st_open(&st, path, &e)) return strdup(e.msg);
    const char *p = st_meta(&st, "byol.plan");
    char *r = strdup(p ? p : "(none)");
    st_close(&st);
    return r;
}

/* byol bench --plan: a row per planned pass, each choice the fastest kernel of its row; a
 * second run on the same cache measures nothing. */
static void test_bench_plan_report(void) {
    char a[2048];
    const char *model = "--width 8 --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --batch 8 --image-size 16 --steps 1";
    snprintf(a, sizeof a, "bench %s --threads 1 --plan-cache %s --plan", model, tmp_path("bench-cache.txt"));
    int st = byol(a);
    char *out = slurp_text("out");
    CHECK(st == 0, "bench --plan exit %d", st);
    CHECK(strstr(out, "layer (batch, HxW, Cin->Cout, KxK/s)") && strstr(out, "measured in"), "the report: %s", out);
    int rows = 0, in_table = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        in_table |= strncmp(line, "layer (batch", 12) == 0;
        if (!in_table) continue; /* the phase table's rows name passes too */
        const char *at = strstr(line, "forward ") ? strstr(line, "forward ") : strstr(line, "data ") ? strstr(line, "data ")
                                                                                 : strstr(line, "weight ");
        char pass[16], chosen[16], v[3][16];
        if (!at || sscanf(at, "%15s %15s %15s %15s %15s", pass, chosen, v[0], v[1], v[2]) != 5) continue;
        rows++;
        double best = 0, rate = -1;
        for (int k = 0; k < 3; k++) {
            if (v[k][0] == '-') continue;
            best = MAX(best, atof(v[k]));
            if (strcmp(chosen, conv_algo_name(k)) == 0) rate = atof(v[k]);
        }
        CHECK(rate > 0 && rate * 1.05 >= best - 0.1, "row '%s': %s is not the fastest, nor within 5%% of it", line,
              chosen);
    }
    /* resnet18: stem (forward, weight) + 19 more convolutions, of which some share a shape */
    CHECK(rows >= 20, "%d rows", rows);
    free(out);
    snprintf(a, sizeof a, "bench %s --threads 1 --plan-cache %s", model, tmp_path("bench-cache.txt"));
    st = byol(a);
    out = slurp_text("out");
    CHECK(st == 0 && strstr(out, "from the cache") && !strstr(out, "measured"), "second run from the cache: %s", out);
    free(out);
    snprintf(a, sizeof a, "bench %s --plan sometimes", model);
    st = byol(a);
    char *err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "--plan: 'sometimes' is neither measure nor fixed nor report"), "bad mode: %s", err);
    free(err);
}

/* A mode that is neither measure nor fixed: one line and exit 2, from every command that takes
 * the flag (with a run to resume too: its checkpoint is open by then). */
static void test_bad_plan_flag(void) {
    char a[2048];
    const char *cmds[] = {"train --plan often --max-steps 1", "eval --random-init 1 --plan often",
                          "embed --ckpt x --out y.npy --plan often", "step --state a --views b --out c --plan often",
                          "train --resume %s/ref --plan often"};
    for (size_t k = 0; k < ARRAY_LEN(cmds); k++) {
        snprintf(a, sizeof a, cmds[k], TEST_TMP);
        int st = byol(a);
        char *err = slurp_text("err");
        CHECK(st == 2 && strstr(err, "--plan: 'often' is neither measure nor fixed\n") && !strchr(strchr(err, '\n') + 1, '\n'),
              "%s: exit %d, %s", a, st, err);
        free(err);
    }
}

/* The plan goes into every checkpoint, and a resumed run keeps it: the first part and an
 * uninterrupted reference run the fixed rule's kernels; the resumed part measures, with every
 * kernel but im2col made to look 100x slower, so measuring alone would choose differently. */
static void test_resume_keeps_the_plan(void) {
    char a[4096], why[256];
    char run[1024];
    snprintf(run, sizeof run,
             "--data %s --width 8 --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --batch 16 --epochs 2 --keep 1 "
             "--eval-every 0 --knn-before 0 --knn-after 0 --log-every 1 --threads 2 --workers 1 --seed 4",
             DATA);
    snprintf(a, sizeof a, "train %s --out %s/ref --plan fixed", run, TEST_TMP);
    int st = byol(a);
    char *out = slurp_text("out");
    CHECK(st == 0 && strstr(out, "by the fixed rule"), "reference run exit %d: %s", st, out);
    free(out);
    snprintf(a, sizeof a, "train %s --out %s/cut --plan fixed --max-steps 5", run, TEST_TMP);
    CHECK(byol(a) == 0, "first part");
    char *plan = ckpt_plan(tmp_path("cut/ckpt-000000005.safetensors"));
    CHECK(strstr(plan, "16,32,32,3,8,3,1,1:") != NULL, "the stem's shape in the checkpoint's plan: %s", plan);
    free(plan);
    snprintf(a, sizeof a, "BYOL_FAULT_PLAN_PREFER=im2col %s train --resume %s/cut --plan-cache none",
             getenv("BYOL") ? getenv("BYOL") : "./byol", TEST_TMP);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s > %s/out 2> %s/err", a, TEST_TMP, TEST_TMP);
    st = sh_status(cmd);
    out = slurp_text("out");
    CHECK(st == 0 && strstr(out, "from the checkpoint"), "resume exit %d: %s", st, out);
    free(out);
    CHECK(same_tensors(tmp_path("ref/ckpt-000000012.safetensors"), tmp_path("cut/ckpt-000000012.safetensors"), why,
                       sizeof why),
          "resumed with the checkpoint's plan: the uninterrupted run's bits (%s)", why);
    /* the control: a fresh measured run with the same fault runs other kernels, so the resume
     * above did keep the checkpoint's */
    snprintf(cmd, sizeof cmd,
             "BYOL_FAULT_PLAN_PREFER=im2col %s train %s --out %s/measured --plan-cache none --max-steps 1 > %s/out 2> "
             "%s/err",
             getenv("BYOL") ? getenv("BYOL") : "./byol", run, TEST_TMP, TEST_TMP, TEST_TMP);
    CHECK(sh_status(cmd) == 0, "measured run");
    plan = ckpt_plan(tmp_path("measured/ckpt-000000001.safetensors"));
    char *fixed = ckpt_plan(tmp_path("ref/ckpt-000000012.safetensors"));
    CHECK(strstr(plan, "16,32,32,8,8,3,1,1:iii") && !strstr(fixed, "16,32,32,8,8,3,1,1:iii"),
          "measured (im2col everywhere): %s; fixed: %s", plan, fixed);
    free(plan), free(fixed);
}

int main(void) {
    test_tmpdir("test_plan");
    extract_cifar_subset(DATA, sizeof DATA);
    RUN(test_fixed_rule);
    RUN(test_measure_picks_the_fastest);
    RUN(test_measure_with_the_clock);
    RUN(test_text_round_trip);
    RUN(test_smaller_batch_lookup);
    RUN(test_cache_file);
    RUN(test_bench_plan_report);
    RUN(test_resume_keeps_the_plan);
    RUN(test_bad_plan_flag); /* after it: resumes its run */
    return test_finish();
}
