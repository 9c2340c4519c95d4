/* ./byol's handling of bad input: every case exits non-zero with exactly one line on stderr that
 * names the problem, and leaves no output file behind. */
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "cli_run.h"
#include "io/npy.h"
#include "io/safetensors.h"

static char OUT[300], STATE[300], VIEWS[300], FLAGS[300];

typedef struct {
    int status;
    char err[4096];
    int err_lines;
} CliResult;

static CliResult run_cli(const char *args) {
    CliResult r = {0, "", 0};
    char cmd[8192], errpath[600];
    const char *byol = getenv("BYOL") ? getenv("BYOL") : "./byol";
    snprintf(errpath, sizeof errpath, "%s/stderr", TEST_TMP);
    snprintf(cmd, sizeof cmd, "%s %s > /dev/null 2> %s", byol, args, errpath);
    int rc = system(cmd);
    r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
    FILE *f = fopen(errpath, "r");
    if (f) {
        size_t n = fread(r.err, 1, sizeof r.err - 1, f);
        r.err[n] = 0;
        fclose(f);
    }
    for (char *p = r.err; *p; p++) r.err_lines += *p == '\n';
    return r;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Runs `byol step` with the fixture's flags plus `extra`, expects failure naming `needle`. */
static void expect_failure(const char *args, const char *needle) {
    unlink(OUT);
    CliResult r = run_cli(args);
    CHECK(r.status != 0, "exit 0 for: %s", args);
    CHECK(r.err_lines == 1, "%d lines on stderr (want 1): %s", r.err_lines, r.err);
    CHECK(strstr(r.err, needle) != NULL, "stderr lacks '%s': %s", needle, r.err);
    CHECK(!exists(OUT), "an output file was left behind by: %s", args);
}

static void step_args(char *buf, size_t cap, const char *state, const char *views, const char *extra) {
    snprintf(buf, cap, "step --state %s --views %s --out %s %s %s", state, views, OUT, FLAGS, extra);
}


/* byol bench on a tiny model: its JSON line carries a positive step time, images/s consistent
 * with it, a FLOP count, and phase times that add up to about the step (the profiler times the
 * kernels; the rest of a step is bookkeeping). */
static void test_bench_reports_consistent_figures(void) {
    char cmd[1024], outpath[400];
    snprintf(outpath, sizeof outpath, "%s/bench.txt", TEST_TMP);
    snprintf(cmd, sizeof cmd, "%s bench --width 4 --batch 8 --image-size 12 --steps 3 --proj-hidden 32 "
             "--proj-dim 16 --pred-hidden 32 --threads 1 > %s",
             getenv("BYOL") ? getenv("BYOL") : "./byol", outpath);
    CHECK(system(cmd) == 0, "byol bench failed: %s", cmd);
    size_t n = 0;
    uint8_t *raw = slurp(outpath, &n);
    char *text = raw ? xmalloc(n + 1, "text") : NULL;
    if (text) memcpy(text, raw, n), text[n] = 0;
    free(raw);
    CHECK(text != NULL, "no output");
    if (!text) return;
    char *last = strstr(text, "{\"arch\"");
    CHECK(last != NULL, "no JSON line in: %s", text);
    if (last) {
        double ms = json_number(last, "ms_per_step"), ips = json_number(last, "images_per_s");
        double gflop = json_number(last, "gflop_per_step"), rss = json_number(last, "peak_rss_mb");
        CHECK(ms > 0 && fabs(ips - 8 / (ms / 1e3)) < 1e-2 * ips, "ms %g, images/s %g", ms, ips);
        CHECK(gflop > 0 && rss > 0, "gflop %g, rss %g", gflop, rss);
        const char *names[] = {"conv forward", "conv backward data", "conv backward weights",
                               "batch norm", "heads", "optimizer+EMA", "other"};
        double sum = 0;
        for (size_t i = 0; i < ARRAY_LEN(names); i++) {
            char key[64];
            snprintf(key, sizeof key, "%s\": {\"ms", names[i]);
            double v = json_number(last, key);
            CHECK(v >= 0, "phase %s: %g", names[i], v);
            sum += v;
        }
        CHECK(sum > 0.3 * ms && sum < 1.5 * ms, "phases sum to %g ms of a %g ms step", sum, ms);
    }
    xfree(text);
    CliResult r = run_cli("bench --batch 1");
    CHECK(r.status == 2 && r.err_lines == 1 && strstr(r.err, "--batch: 1 is out of range"), "%s", r.err);
}

/* The first line `cmd` prints, or "" when it fails. */
static void first_line(const char *cmd, char *out, size_t cap) {
    out[0] = 0;
    FILE *f = popen(cmd, "r");
    if (!f) return;
    if (!fgets(out, (int)cap, f)) out[0] = 0;
    pclose(f);
}

/* --version names the OpenBLAS kernels in use, and they follow OPENBLAS_CORETYPE when it is set
 * (how a user picks AVX-512 kernels on a CPU their OpenBLAS misdetects). */
static void test_version_names_blas_kernels(void) {
    const char *byol = getenv("BYOL") ? getenv("BYOL") : "./byol";
    char cmd[600], line[1024];
    snprintf(cmd, sizeof cmd, "OPENBLAS_CORETYPE=Haswell %s --version", byol);
    first_line(cmd, line, sizeof line);
    if (!strstr(line, "DYNAMIC_ARCH")) {
        printf("     (no DYNAMIC_ARCH OpenBLAS in this build: %s)\n", line);
        return;
    }
    CHECK(strstr(line, "kernels for Haswell") != NULL, "--version: %s", line);
    snprintf(cmd, sizeof cmd, "OPENBLAS_CORETYPE=Sandybridge %s --version", byol);
    first_line(cmd, line, sizeof line);
    CHECK(strstr(line, "kernels for Sandybridge") != NULL, "--version: %s", line);
    /* Left to itself, byol runs the kernels of the CPU's best instruction set, even where
     * OpenBLAS 0.3.21 does not know the CPU (it picks Prescott on Emerald Rapids). */
#if defined(__x86_64__) && defined(__GNUC__)
    snprintf(cmd, sizeof cmd, "env -u OPENBLAS_CORETYPE %s --version", byol);
    first_line(cmd, line, sizeof line);
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        CHECK(strstr(line, "kernels for SkylakeX") || strstr(line, "kernels for Cooperlake") ||
                  strstr(line, "kernels for SapphireRapids"),
              "AVX-512 CPU, --version: %s", line);
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CHECK(!strstr(line, "kernels for Prescott") && !strstr(line, "kernels for Sandybridge") &&
                  !strstr(line, "kernels for Nehalem") && !strstr(line, "kernels for Core2"),
              "AVX2 CPU, --version: %s", line);
    else
        printf("     (CPU without AVX2: whatever OpenBLAS picks: %s)\n", line);
#endif
}

static void test_usage_errors(void) {
    CliResult r = run_cli("");
    CHECK(r.status == 2, "no command: exit %d", r.status);
    r = run_cli("frobnicate");
    CHECK(r.status == 2 && r.err_lines == 1 && strstr(r.err, "unknown command 'frobnicate'"), "%s", r.err);
    r = run_cli("--help");
    CHECK(r.status == 0, "--help exits 0");
    r = run_cli("step --help");
    CHECK(r.status == 0, "step --help exits 0");
    char a[4096];
    snprintf(a, sizeof a, "step --views %s --out %s", VIEWS, OUT);
    expect_failure(a, "--state, --views and --out are required");
    step_args(a, sizeof a, STATE, VIEWS, "--bogus 3");
    expect_failure(a, "unknown flag '--bogus'");
    step_args(a, sizeof a, STATE, VIEWS, "--lr abc");
    expect_failure(a, "--lr: 'abc' is not a finite number");
    step_args(a, sizeof a, STATE, VIEWS, "--lr");
    expect_failure(a, "--lr needs a value");
    step_args(a, sizeof a, STATE, VIEWS, "--arch resnet99");
    expect_failure(a, "unknown architecture 'resnet99'");
    step_args(a, sizeof a, STATE, VIEWS, "--width 0");
    expect_failure(a, "--width: 0 is out of range");
    step_args(a, sizeof a, STATE, VIEWS, "--lr 1e300");
    expect_failure(a, "--lr: 1e+300 is out of range");
    step_args(a, sizeof a, STATE, VIEWS, "--threads 2x");
    expect_failure(a, "--threads: '2x' is not an integer");
}

static void test_bad_state_files(void) {
    char a[4096], path[600];
    snprintf(path, sizeof path, "%s/nope.safetensors", TEST_TMP);
    step_args(a, sizeof a, path, VIEWS, "");
    expect_failure(a, "nope.safetensors: cannot open");

    /* Truncated: the fixture cut in half. */
    snprintf(path, sizeof path, "%s/half.safetensors", TEST_TMP);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "head -c 300000 %s > %s", STATE, path);
    CHECK(system(cmd) == 0, "made a truncated file");
    step_args(a, sizeof a, path, VIEWS, "");
    expect_failure(a, "truncated");

    /* Not a safetensors file at all. */
    snprintf(path, sizeof path, "%s/junk.safetensors", TEST_TMP);
    FILE *f = fopen(path, "wb");
    fwrite("\x10\0\0\0\0\0\0\0this is not json", 1, 24, f);
    fclose(f);
    step_args(a, sizeof a, path, VIEWS, "");
    expect_failure(a, "not a JSON object");

    /* A model of another width than the file: wrong shape, expected vs found. */
    step_args(a, sizeof a, STATE, VIEWS, "--width 8");
    expect_failure(a, "online.encoder.conv1.weight has shape [4, 3, 3, 3], expected [8, 3, 3, 3]");

    /* Another architecture: the first key it lacks is named. */
    step_args(a, sizeof a, STATE, VIEWS, "--arch resnet34");
    expect_failure(a, "missing tensor online.encoder.layer1.2.conv1.weight");

    /* A dtype other than F32. */
    snprintf(path, sizeof path, "%s/f64.safetensors", TEST_TMP);
    const char *h = "{\"online.encoder.conv1.weight\":{\"dtype\":\"F64\",\"shape\":[4,3,3,3],\"data_offsets\":[0,864]}}";
    size_t hl = strlen(h);
    uint8_t len8[8] = {(uint8_t)hl, (uint8_t)(hl >> 8)};
    f = fopen(path, "wb");
    fwrite(len8, 1, 8, f);
    fwrite(h, 1, hl, f);
    for (int i = 0; i < 864; i++) fputc(0, f);
    fclose(f);
    step_args(a, sizeof a, path, VIEWS, "");
    expect_failure(a, "has dtype F64, expected F32");
}

static void test_bad_views(void) {
    char a[4096], path[600];
    Err e;
    float zeros[2 * 2 * 1 * 4 * 4] = {0};
    /* One channel where the model (and state) have three. */
    int64_t gray[6] = {1, 2, 2, 1, 4, 4};
    snprintf(path, sizeof path, "%s/gray.npy", TEST_TMP);
    CHECK(npy_write_f32(path, zeros, 6, gray, &e) == 0, "%s", e.msg);
    step_args(a, sizeof a, STATE, path, "");
    expect_failure(a, "views have 1 channels but --in-channels is 3");
    /* Batch of one: batch norm cannot train on it. */
    float one[2 * 1 * 3 * 4 * 4] = {0};
    int64_t b1[6] = {1, 2, 1, 3, 4, 4};
    snprintf(path, sizeof path, "%s/b1.npy", TEST_TMP);
    CHECK(npy_write_f32(path, one, 6, b1, &e) == 0, "%s", e.msg);
    step_args(a, sizeof a, STATE, path, "");
    expect_failure(a, "needs at least 2 images");
    /* Wrong rank. */
    int64_t r5[5] = {2, 2, 3, 4, 4};
    float five[2 * 2 * 3 * 4 * 4] = {0};
    snprintf(path, sizeof path, "%s/r5.npy", TEST_TMP);
    CHECK(npy_write_f32(path, five, 5, r5, &e) == 0, "%s", e.msg);
    step_args(a, sizeof a, STATE, path, "");
    expect_failure(a, "views must have shape [N, 2, B, C, H, W]");
    /* No steps at all. */
    int64_t n0[6] = {0, 2, 8, 3, 16, 16};
    snprintf(path, sizeof path, "%s/n0.npy", TEST_TMP);
    CHECK(npy_write_f32(path, zeros, 6, n0, &e) == 0, "%s", e.msg);
    step_args(a, sizeof a, STATE, path, "");
    expect_failure(a, "views dimension 0 is 0");
    /* Views with a NaN: the loss is not finite, so the step fails and writes nothing. */
    NpyArray v;
    CHECK(npy_read_f32(VIEWS, &v, &e) == 0, "%s", e.msg);
    v.data[123] = NAN;
    snprintf(path, sizeof path, "%s/nan.npy", TEST_TMP);
    CHECK(npy_write_f32(path, v.data, v.ndim, v.shape, &e) == 0, "%s", e.msg);
    npy_free(&v);
    step_args(a, sizeof a, STATE, path, "");
    expect_failure(a, "loss is nan");
    /* Not .npy. */
    step_args(a, sizeof a, STATE, STATE, "");
    expect_failure(a, "not a .npy file");
    /* Truncated .npy. */
    char cmd[2048];
    snprintf(path, sizeof path, "%s/cut.npy", TEST_TMP);
    snprintf(cmd, sizeof cmd, "head -c 5000 %s > %s", VIEWS, path);
    CHECK(system(cmd) == 0, "made a truncated file");
    step_args(a, sizeof a, STATE, path, "");
    expect_failure(a, "truncated");
}

static void test_unwritable_out(void) {
    char a[4096], out[600];
    snprintf(out, sizeof out, "%s/missing-dir/out.safetensors", TEST_TMP);
    snprintf(a, sizeof a, "step --state %s --views %s --out %s %s", STATE, VIEWS, out, FLAGS);
    CliResult r = run_cli(a);
    CHECK(r.status != 0 && r.err_lines == 1 && strstr(r.err, "missing-dir"), "exit %d: %s", r.status, r.err);
    CHECK(!exists(out), "no output");
}

/* Standard output that cannot be written (a full disk): the loss lines are lost, so the step
 * fails and the state is not written either. */
static void test_stdout_write_error(void) {
    char cmd[8192];
    const char *byol = getenv("BYOL") ? getenv("BYOL") : "./byol";
    unlink(OUT);
    snprintf(cmd, sizeof cmd, "%s step --state %s --views %s --out %s %s > /dev/full 2> %s/err",
             byol, STATE, VIEWS, OUT, FLAGS, TEST_TMP);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) != 0, "exit status %d with stdout on /dev/full", rc);
    CHECK(!exists(OUT), "no output file after a failed stdout");
}


/* ---- byol eval / embed / export ---- */



/* --help of eval, embed and export: --random-init takes a value, and the model flags say the
 * checkpoint's values are used (eval without --ckpt: byol train's defaults), not the engine's
 * width 64 and 4096-wide heads. */
static void test_eval_commands_help(void) {
    CHECK(run_out("eval --help") == 0, "eval --help");
    char *out = slurp_text("out");
    CHECK(strstr(out, "--random-init 1") && !strstr(out, "[--random-init]"), "usage shows --random-init with a value: %s", out);
    CHECK(strstr(out, "(the checkpoint's, else byol train's 8)") && strstr(out, "(the checkpoint's, else byol train's 512)"),
          "eval's model flags name the checkpoint and train's defaults: %s", out);
    CHECK(!strstr(out, "(64)") && !strstr(out, "(4096)"), "engine defaults listed: %s", out);
    CHECK(strstr(out, "--eval-resize") != NULL, "--eval-resize listed");
    free(out);
    const char *cmds[] = {"embed --help", "export --help"};
    for (int i = 0; i < 2; i++) {
        CHECK(run_out(cmds[i]) == 0, "%s", cmds[i]);
        out = slurp_text("out");
        CHECK(strstr(out, "--width N") && strstr(out, "(the checkpoint's; if given, must agree)") && !strstr(out, "(64)") &&
                  !strstr(out, "(4096)"),
              "%s: %s", cmds[i], out);
        free(out);
    }
}

/* kNN against a bank smaller than k: k is capped and the output says so; --random-init without
 * --ckpt builds byol train's default model (width 8: 64 features), not the engine's (512). */
static void test_eval_knn_cap_and_random_init(void) {
    tiny_run();
    char a[4096];
    snprintf(a, sizeof a, "eval --ckpt %s --eval-bank 18 --eval-queries 20 --threads 1", RUN_DIR);
    int st = run_out(a);
    char *out = slurp_text("out"), *err = slurp_text("err");
    CHECK(st == 0, "eval exit %d: %s", st, err);
    CHECK(strstr(out, "(k 18: --knn-k 200 capped at the 18-image bank, T 0.1, cosine)") != NULL, "cap stated: %s", out);
    const char *json = strrchr(out, '{');
    CHECK(json && json_number(json, "knn_k") == 18 && json_number(json, "knn_k_asked") == 200, "JSON: %s", json ? json : out);
    free(out), free(err);
    snprintf(a, sizeof a, "eval --random-init 1 --data %s --eval-bank 20 --eval-queries 20 --threads 1", CIFAR);
    st = run_out(a);
    out = slurp_text("out"), err = slurp_text("err");
    CHECK(st == 0, "eval --random-init exit %d: %s", st, err);
    json = strrchr(out, '{');
    CHECK(json && json_number(json, "dim") == 64, "random-init without --ckpt: %g dims (want 64, byol train's width 8): %s",
          json ? json_number(json, "dim") : NAN, out);
    free(out), free(err);
}

/* --eval-resize: the short side to N (bicubic), the centred --image-size square; named in the
 * output and the JSON; smaller than the crop is refused in one line. embed takes it too. */
static void test_eval_resize_flag(void) {
    tiny_run();
    char a[4096];
    snprintf(a, sizeof a, "eval --ckpt %s --eval-bank 20 --eval-queries 20 --eval-resize 36 --threads 1", RUN_DIR);
    int st = run_out(a);
    char *out = slurp_text("out"), *err = slurp_text("err");
    CHECK(st == 0, "exit %d: %s", st, err);
    CHECK(strstr(out, "32x32 (center 32 of short side 36 (bicubic; 88.9%))") != NULL, "preprocessing named: %s", out);
    const char *json = strrchr(out, '{');
    CHECK(json && json_number(json, "eval_resize") == 36 && json_number(json, "image_size") == 32, "JSON: %s", json ? json : out);
    free(out), free(err);
    snprintf(a, sizeof a, "eval --ckpt %s --eval-bank 20 --eval-queries 20 --threads 1", RUN_DIR);
    CHECK(run_out(a) == 0, "default eval");
    out = slurp_text("out");
    CHECK(strstr(out, "(largest centred square to 32 (bilinear))") != NULL, "default preprocessing named: %s", out);
    free(out);
    snprintf(a, sizeof a, "eval --ckpt %s --eval-resize 20", RUN_DIR);
    st = run_out(a);
    err = slurp_text("err");
    CHECK(st == 1 && strstr(err, "--eval-resize 20 is smaller than the centre crop (the image size, 32)") &&
              strchr(err, '\n') == err + strlen(err) - 1,
          "exit %d: %s", st, err);
    free(err);
    snprintf(a, sizeof a, "embed --ckpt %s --split test --eval-resize 40 --out %s/f.npy", RUN_DIR, TEST_TMP);
    st = run_out(a);
    out = slurp_text("out");
    CHECK(st == 0 && strstr(out, "of the test split (center 32 of short side 40"), "embed: %s", out);
    free(out);
}

/* export's metadata says how to feed the encoder: image_size, and mean and std as the
 * checkpoint's byol.mean / byol.std. */
static void test_export_metadata(void) {
    tiny_run();
    char a[4096], ckpt[700];
    snprintf(a, sizeof a, "export --ckpt %s --out %s/enc.safetensors", RUN_DIR, TEST_TMP);
    CHECK(run_out(a) == 0, "export");
    Safetensors enc, ck;
    Err e;
    snprintf(a, sizeof a, "ls %s/ckpt-*.safetensors | tail -n1 > %s/last", RUN_DIR, TEST_TMP);
    CHECK(system(a) == 0, "listed the run");
    char *last = slurp_text("last");
    last[strcspn(last, "\n")] = 0;
    snprintf(ckpt, sizeof ckpt, "%s", last);
    free(last);
    if (st_open(&enc, tmp_path("enc.safetensors"), &e) != 0 || st_open(&ck, ckpt, &e) != 0) {
        CHECK(0, "%s", e.msg);
        return;
    }
    const char *size = st_meta(&enc, "image_size"), *m = st_meta(&enc, "mean"), *sd = st_meta(&enc, "std");
    CHECK(size && strcmp(size, "32") == 0, "image_size '%s'", size ? size : "(none)");
    float em[3], es[3], cm[3], cs[3];
    CHECK(m && sd && sscanf(m, "%f %f %f", &em[0], &em[1], &em[2]) == 3 && sscanf(sd, "%f %f %f", &es[0], &es[1], &es[2]) == 3,
          "mean '%s' std '%s'", m ? m : "(none)", sd ? sd : "(none)");
    CHECK(sscanf(st_meta(&ck, "byol.mean"), "%f %f %f", &cm[0], &cm[1], &cm[2]) == 3 &&
              sscanf(st_meta(&ck, "byol.std"), "%f %f %f", &cs[0], &cs[1], &cs[2]) == 3,
          "checkpoint's normalization");
    CHECK(m && sd && memcmp(em, cm, sizeof em) == 0 && memcmp(es, cs, sizeof es) == 0 && es[0] > 0, "mean %s std %s vs the checkpoint's %s %s",
          m ? m : "", sd ? sd : "", st_meta(&ck, "byol.mean"), st_meta(&ck, "byol.std"));
    CHECK(st_meta(&enc, "arch") && strcmp(st_meta(&enc, "arch"), "resnet18") == 0, "arch kept");
    st_close(&enc), st_close(&ck);
}

/* The checkpoint's --data moved away: eval and embed name the checkpoint it came from. */
static void test_eval_ckpt_data_missing(void) {
    tiny_run();
    char a[4096], moved[700];
    snprintf(moved, sizeof moved, "%s.moved", CIFAR);
    CHECK(rename(CIFAR, moved) == 0, "moved the data");
    const char *cmds[] = {"eval", "embed"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s --ckpt %s --out %s/f.npy", cmds[i], RUN_DIR, TEST_TMP);
        if (i == 0) snprintf(a, sizeof a, "eval --ckpt %s", RUN_DIR);
        int st = run_out(a);
        char *err = slurp_text("err");
        char want[1400];
        snprintf(want, sizeof want, "%s (the --data of %s/ckpt-", CIFAR, RUN_DIR);
        CHECK(st == 1 && strstr(err, want) && strstr(err, "cannot open") && strstr(err, "; pass --data") &&
                  !strstr(err, "(check --data)") && strchr(err, '\n') == err + strlen(err) - 1,
              "%s: exit %d: %s", cmds[i], st, err);
        free(err);
    }
    CHECK(rename(moved, CIFAR) == 0, "moved the data back");
}

int main(void) {
    test_tmpdir("test_cli");
    snprintf(OUT, sizeof OUT, "%s/out.safetensors", TEST_TMP);
    snprintf(STATE, sizeof STATE, "%s/step_r18_cifar_rgb.state.safetensors", fixture_dir());
    snprintf(VIEWS, sizeof VIEWS, "%s/step_r18_cifar_rgb.views.npy", fixture_dir());
    snprintf(FLAGS, sizeof FLAGS, "--width 4 --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --threads 1");
    RUN(test_usage_errors);
    RUN(test_bad_state_files);
    RUN(test_bad_views);
    RUN(test_unwritable_out);
    RUN(test_stdout_write_error);
    RUN(test_bench_reports_consistent_figures);
    RUN(test_version_names_blas_kernels);
    RUN(test_eval_commands_help);
    RUN(test_eval_knn_cap_and_random_init);
    RUN(test_eval_resize_flag);
    RUN(test_export_metadata);
    RUN(test_eval_ckpt_data_missing);
    return test_finish();
}
