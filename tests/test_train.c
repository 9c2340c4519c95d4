#define _GNU_SOURCE /* memmem */
/* byol train / eval / export / embed end to end on a small CIFAR-10 JPEG subset and a tiny
 * model: the run's files, exact resume (after --max-steps and after SIGTERM), bad input, and the
 * evaluation commands. */
#include <cjson/cJSON.h>
#include <signal.h>
#include <sys/wait.h>

#include "harness.h"
#include "io/npy.h"
#include "io/safetensors.h"

static char DATA[600], TINY[1024];

/* Runs byol with args; stdout and stderr to TEST_TMP/{out,err}. Returns the exit status. */
static int byol(const char *args) {
    char cmd[8192];
    const char *bin = getenv("BYOL") ? getenv("BYOL") : "./byol";
    snprintf(cmd, sizeof cmd, "%s %s > %s/out 2> %s/err", bin, args, TEST_TMP, TEST_TMP);
    return sh_status(cmd);
}

static int count_lines(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void last_ckpt(const char *dir, char *out, size_t cap) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "ls %s/ckpt-*.safetensors 2>/dev/null | tail -n1 > %s/last", dir, TEST_TMP);
    if (system(cmd) != 0) printf("warning: ls failed\n");
    char *s = slurp_text("last");
    s[strcspn(s, "\n")] = 0;
    snprintf(out, cap, "%s", s);
    free(s);
}

static void test_train_run_files_and_resume(void) {
    char a[4096], ref_ckpt[1200], ckpt[1200], why[256];
    /* The reference: 3 epochs of 6 steps, uninterrupted. */
    snprintf(a, sizeof a, "train %s --out %s/ref", TINY, TEST_TMP);
    int st = byol(a);
    char *out = slurp_text("out"), *err = slurp_text("err");
    CHECK(st == 0, "train exit %d: %s", st, err);
    CHECK(strstr(out, "kNN top-1 before training") && strstr(out, "kNN top-1 after training"), "before/after kNN: %s", out);
    free(out), free(err);
    char *metrics = slurp_text("ref/metrics.jsonl");
    CHECK(count_lines(metrics, "\"loss\"") >= 18 / 2, "metrics lines with loss: %d", count_lines(metrics, "\"loss\""));
    CHECK(count_lines(metrics, "\"knn_top1\"") >= 2, "kNN lines in metrics");
    CHECK(strstr(metrics, "\"proj_std\"") && strstr(metrics, "\"eff_rank\""), "collapse figures logged");
    char *cfg = slurp_text("ref/config.txt");
    CHECK(strstr(cfg, "width = 4") && strstr(cfg, "batch = 16") && strstr(cfg, "image-size = 32"), "config saved: %s", cfg);
    free(cfg);
    struct stat sb;
    snprintf(a, sizeof a, "%s/ref/plot.svg", TEST_TMP);
    CHECK(stat(a, &sb) == 0 && sb.st_size > 500, "plot.svg written");
    snprintf(a, sizeof a, "%s/ref", TEST_TMP);
    last_ckpt(a, ref_ckpt, sizeof ref_ckpt);
    CHECK(strstr(ref_ckpt, "ckpt-000000018.safetensors") != NULL, "final checkpoint at step 18: %s", ref_ckpt);
    snprintf(a, sizeof a, "ls %s/ref/ckpt-*.safetensors | wc -l | grep -qx 2", TEST_TMP);
    CHECK(sh_status(a) == 0, "--keep 2 keeps two checkpoints");

    /* Interrupted in the middle of epoch 2 (--max-steps 8), then resumed: the same weights. */
    snprintf(a, sizeof a, "train %s --out %s/cut --max-steps 8", TINY, TEST_TMP);
    st = byol(a);
    CHECK(st == 0, "stop at max-steps: exit %d", st);
    snprintf(a, sizeof a, "train --resume %s/cut", TEST_TMP);
    st = byol(a);
    err = slurp_text("err");
    CHECK(st == 0, "resume exit %d: %s", st, err);
    free(err);
    snprintf(a, sizeof a, "%s/cut", TEST_TMP);
    last_ckpt(a, ckpt, sizeof ckpt);
    CHECK(same_tensors(ref_ckpt, ckpt, why, sizeof why), "resumed after step 8 differs from the uninterrupted run: %s", why);
    /* The losses after the resume are the reference's. */
    char *m2 = slurp_text("cut/metrics.jsonl");
    const char *at = strstr(metrics, "{\"step\": 18,"), *at2 = strstr(m2, "{\"step\": 18,");
    CHECK(at && at2 && strncmp(at, at2, strcspn(at, "\n") < 60 ? strcspn(at, "\n") : 60) == 0, "step 18 loss line identical");
    free(m2);

    /* SIGTERM in the middle: a checkpoint, exit 128 + 15, and the resumed run ends identical. */
    snprintf(a, sizeof a, "(%s train %s --out %s/sig --log-every 1 > %s/sig.out 2>&1 & echo $! > %s/pid; wait $!; echo $? > %s/status) &",
             getenv("BYOL") ? getenv("BYOL") : "./byol", TINY, TEST_TMP, TEST_TMP, TEST_TMP, TEST_TMP);
    CHECK(system(a) == 0, "started");
    int sent = 0;
    for (int tries = 0; tries < 6000 && !sent; tries++) { /* up to 2 minutes (sanitizer builds are slow) */
        usleep(20000);
        char *m = slurp_text("sig/metrics.jsonl");
        if (count_lines(m, "\"loss\"") >= 3) {
            char *pid = slurp_text("pid");
            if (atoi(pid) > 0) sent = kill(atoi(pid), SIGTERM) == 0;
            free(pid);
        }
        free(m);
    }
    CHECK(sent, "sent SIGTERM");
    char *status = NULL;
    for (int tries = 0; tries < 9000; tries++) {
        usleep(20000);
        free(status);
        status = slurp_text("status");
        if (*status) break;
    }
    CHECK(status && atoi(status) == 128 + SIGTERM, "exit status after SIGTERM: '%s'", status ? status : "");
    free(status);
    snprintf(a, sizeof a, "train --resume %s/sig", TEST_TMP);
    st = byol(a);
    CHECK(st == 0, "resume after SIGTERM: exit %d", st);
    snprintf(a, sizeof a, "%s/sig", TEST_TMP);
    last_ckpt(a, ckpt, sizeof ckpt);
    CHECK(same_tensors(ref_ckpt, ckpt, why, sizeof why), "resumed after SIGTERM differs: %s", why);
    free(metrics);
}

static void test_eval_export_embed(void) {
    char a[4096];
    snprintf(a, sizeof a, "eval --ckpt %s/ref", TEST_TMP);
    int st = byol(a);
    char *out = slurp_text("out"), *err = slurp_text("err");
    CHECK(st == 0, "eval exit %d: %s", st, err);
    char *last = strrchr(out, '{');
    cJSON *j = last ? cJSON_Parse(last) : NULL;
    CHECK(j != NULL, "eval's last line is JSON: %s", out);
    if (j) {
        double knn = cJSON_GetObjectItem(j, "knn_top1")->valuedouble, lin = cJSON_GetObjectItem(j, "linear_top1")->valuedouble;
        CHECK(knn >= 0 && knn <= 1 && lin >= 0 && lin <= 1, "accuracies in [0, 1]: %g %g", knn, lin);
        const cJSON *k5 = cJSON_GetObjectItem(j, "knn_top5"), *l5 = cJSON_GetObjectItem(j, "linear_top5");
        CHECK(k5 && l5 && k5->valuedouble >= knn && k5->valuedouble <= 1 && l5->valuedouble >= lin &&
                  l5->valuedouble <= 1,
              "top-5 at least top-1: %s", out);
        CHECK(cJSON_GetObjectItem(j, "test")->valueint == 100 && cJSON_GetObjectItem(j, "train")->valueint == 100, "100 + 100 images");
        cJSON_Delete(j);
    }
    free(out), free(err);
    /* --label-fraction: half of each class's 10 train images; 1% leaves every class empty */
    snprintf(a, sizeof a, "eval --ckpt %s/ref --label-fraction 0.5 --probe-iters 50", TEST_TMP);
    st = byol(a);
    out = slurp_text("out");
    CHECK(st == 0 && strstr(out, "labels     50 of 100 train images") && strstr(out, "\"train\": 50,") &&
              strstr(out, "\"label_fraction\": 0.5, \"encoder\": \"online\", \"flip_avg\": 0}"),
          "a balanced half: %s", out);
    free(out);
    const char *bad[] = {"0.01", "0", "1.5"}, *says[] = {"gets no image of its 10", "(0, 1]", "(0, 1]"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "eval --ckpt %s/ref --label-fraction %s", TEST_TMP, bad[i]);
        st = byol(a);
        err = slurp_text("err");
        CHECK(st != 0 && strstr(err, says[i]) && count_lines(err, "\n") == 1, "--label-fraction %s: exit %d: %s",
              bad[i], st, err);
        free(err);
    }
    snprintf(a, sizeof a, "eval --ckpt %s/ref --random-init 1", TEST_TMP);
    CHECK(byol(a) == 0, "eval --random-init");
    out = slurp_text("out");
    CHECK(strstr(out, "untrained encoder") != NULL, "says what it evaluated");
    free(out);
    snprintf(a, sizeof a, "eval --raw-pixels 1 --data %s", DATA);
    CHECK(byol(a) == 0, "eval --raw-pixels");
    out = slurp_text("out");
    CHECK(strstr(out, "3072 dims") != NULL, "raw pixels are 3x32x32 features: %s", out);
    free(out);

    /* export: torchvision names and PyTorch layouts, num_batches_tracked included, no heads. */
    snprintf(a, sizeof a, "export --ckpt %s/ref --out %s/enc.safetensors", TEST_TMP, TEST_TMP);
    CHECK(byol(a) == 0, "export");
    Safetensors s;
    Err e;
    CHECK(st_open(&s, tmp_path("enc.safetensors"), &e) == 0, "%s", e.msg);
    const StEntry *c1 = st_find(&s, "conv1.weight"), *nb = st_find(&s, "bn1.num_batches_tracked"),
                  *dn = st_find(&s, "layer2.0.downsample.0.weight");
    CHECK(c1 && c1->ndim == 4 && c1->shape[0] == 4 && c1->shape[1] == 3 && c1->shape[2] == 3, "conv1.weight [4, 3, 3, 3]");
    CHECK(nb && strcmp(nb->dtype, "I64") == 0 && nb->ndim == 0, "bn1.num_batches_tracked I64 scalar");
    CHECK(dn && dn->shape[0] == 8 && dn->shape[1] == 4, "downsample conv [8, 4, 1, 1]");
    int heads = 0;
    for (int i = 0; i < s.n_entries; i++) heads += strstr(s.entries[i].name, "projector") || strstr(s.entries[i].name, "online.");
    CHECK(heads == 0, "only encoder tensors, without prefix");
    st_close(&s);

    /* embed: [N, d] features and int64 labels. */
    snprintf(a, sizeof a, "embed --ckpt %s/ref --data %s --split test --out %s/f.npy --labels %s/l.npy --names %s/n.txt",
             TEST_TMP, DATA, TEST_TMP, TEST_TMP, TEST_TMP);
    CHECK(byol(a) == 0, "embed");
    /* the names, aligned with the rows: the folder's files relative to it, in the dataset's order */
    char *names = slurp_text("n.txt");
    CHECK(count_lines(names, "\n") == 100 && strncmp(names, "test/airplane/0000.jpg\n", 23) == 0 &&
              strstr(names, "\ntest/truck/0009.jpg\n"),
          "100 names, test/airplane/0000.jpg first: %.80s", names);
    free(names);
    NpyArray f;
    CHECK(npy_read_f32(tmp_path("f.npy"), &f, &e) == 0 && f.ndim == 2 && f.shape[0] == 100 && f.shape[1] == 32,
          "features [100, 32]");
    /* one image file: a batch of one (batch norm in evaluation mode), the same features as its
     * row among the hundred */
    snprintf(a, sizeof a, "embed --ckpt %s/ref --data %s/test/airplane/0000.jpg --out %s/one.npy --names %s/one.txt",
             TEST_TMP, DATA, TEST_TMP, TEST_TMP);
    CHECK(byol(a) == 0, "embeds one image");
    NpyArray one;
    if (npy_read_f32(tmp_path("one.npy"), &one, &e) == 0) {
        double err = 0, ref = 0;
        for (int j = 0; j < 32 && one.ndim == 2 && one.shape[0] == 1 && one.shape[1] == 32; j++)
            err = fmax(err, fabs((double)one.data[j] - f.data[j])), ref = fmax(ref, fabs((double)f.data[j]));
        CHECK(one.ndim == 2 && one.shape[0] == 1 && one.shape[1] == 32 && err <= 1e-5 * ref,
              "[1, 32], row 0 of the split's (max difference %g of %g)", err, ref);
        npy_free(&one);
        char *nm = slurp_text("one.txt");
        CHECK(count_lines(nm, "\n") == 1 && strstr(nm, "airplane/0000.jpg\n"), "its name: %s", nm);
        free(nm);
    } else {
        CHECK(0, "%s", e.msg);
    }
    npy_free(&f);
    size_t n;
    uint8_t *lb = slurp(tmp_path("l.npy"), &n);
    CHECK(n >= 100 * 8 + 64 && (n - 100 * 8) % 64 == 0 && memmem(lb, n, "'<i8'", 5) && memmem(lb, n, "(100,)", 6), "labels int64 [100]: %zu bytes", n);
    free(lb);
}

static void test_train_bad_input(void) {
    char a[4096];
    /* A fresh run into a folder that already holds one. */
    snprintf(a, sizeof a, "train %s --out %s/ref", TINY, TEST_TMP);
    CHECK(byol(a) == 1, "fresh run over an old one refused");
    char *err = slurp_text("err");
    CHECK(strstr(err, "already holds a run") && count_lines(err, "\n") == 1, "one line: %s", err);
    free(err);
    /* Unwritable --out. */
    snprintf(a, sizeof a, "train %s --out /proc/byol-test", TINY);
    CHECK(byol(a) != 0, "unwritable --out refused");
    /* Corrupt checkpoint, named. */
    write_bytes(tmp_path("bad.safetensors"), "\x10\0\0\0\0\0\0\0{\"a\": broken}", 20);
    snprintf(a, sizeof a, "eval --ckpt %s/bad.safetensors", TEST_TMP);
    CHECK(byol(a) == 1, "corrupt checkpoint refused");
    err = slurp_text("err");
    CHECK(strstr(err, "bad.safetensors") && count_lines(err, "\n") == 1, "names the file: %s", err);
    free(err);
    /* Another architecture than the flags say. */
    snprintf(a, sizeof a, "eval --ckpt %s/ref --arch resnet50", TEST_TMP);
    CHECK(byol(a) == 1, "architecture mismatch refused");
    err = slurp_text("err");
    CHECK(strstr(err, "--arch resnet50") && strstr(err, "resnet18"), "says both: %s", err);
    free(err);
    /* A dataset without labels given to eval. */
    snprintf(a, sizeof a, "mkdir -p %s/unl && cp %s/train/airplane/000[0-3].jpg %s/unl/", TEST_TMP, DATA, TEST_TMP);
    CHECK(system(a) == 0, "made an unlabeled folder");
    snprintf(a, sizeof a, "eval --ckpt %s/ref --data %s/unl", TEST_TMP, TEST_TMP);
    CHECK(byol(a) == 1, "unlabeled data refused by eval");
    err = slurp_text("err");
    CHECK(strstr(err, "labels") != NULL, "%s", err);
    free(err);
    /* Divergence: stops, says at which step, earlier checkpoints untouched. */
    snprintf(a, sizeof a, "train %s --out %s/nan --base-lr 1e4 --lars-eta 1e3 --ckpt-minutes 0", TINY, TEST_TMP);
    int st = byol(a);
    err = slurp_text("err");
    CHECK(st == 1 && strstr(err, "not applied") && strstr(err, "step "), "divergence stops with exit 1: %d %s", st, err);
    free(err);
}

/* --time-budget: the run ends with the budget, and the schedules with it (lr near 0, tau near 1
 * at the last logged step). */
static void test_time_budget(void) {
    char a[4096];
    snprintf(a, sizeof a, "train %s --out %s/budget --time-budget 4 --epochs 1000 --log-every 1 --knn-before 0 --knn-after 0 --eval-every 0",
             TINY, TEST_TMP);
    double t0 = now_seconds();
    int st = byol(a);
    double took = now_seconds() - t0;
    CHECK(st == 0, "exit %d", st);
    CHECK(took < 60, "a 4-second budget took %.1f s", took);
    char *m = slurp_text("budget/metrics.jsonl");
    int lines = count_lines(m, "\"loss\"");
    CHECK(lines >= 3, "%d steps logged", lines);
    const char *last = m, *p = m;
    while ((p = strstr(p, "{\"step\"")) != NULL) last = p++;
    const char *lr = strstr(last, "\"lr\": "), *tau = strstr(last, "\"tau\": ");
    double lrv = lr ? atof(lr + 6) : 1, tauv = tau ? atof(tau + 7) : 0;
    /* peak lr = 1.0 x 16 / 256 = 0.0625; the last step lands within the budget's last stretch */
    CHECK(lrv < 0.0625 * 0.25 && tauv > 0.99 + 0.01 * 0.75, "last step: lr %g, tau %g", lrv, tauv);
    free(m);
}

/* --time-budget with no recipe flag takes the short-budget recipe: the saved configuration holds
 * it (batch lowered to the subset's 100 images), the views start at half the image size, and the
 * kNN monitors that would eat the budget are off. A recipe flag on the command line, or in a
 * --config file, keeps the defaults; the data, seed and budget flags do not count. */
static void test_budget_recipe(void) {
    char a[4096];
    const char *run = "--time-budget 60 --max-steps 2 --log-every 1 --knn-after 0 --threads 2 --workers 2 --seed 1";
    snprintf(a, sizeof a, "train --data %s --out %s/br %s", DATA, TEST_TMP, run);
    int st = byol(a);
    char *err = slurp_text("err"), *out = slurp_text("out");
    CHECK(st == 0, "exit %d: %s", st, err);
    CHECK(strstr(out, "the short-budget recipe") && strstr(out, "batch 100 (256 is more than the 100 images)"),
          "announced: %s", out);
    free(err), free(out);
    char *cfg = slurp_text("br/config.txt");
    CHECK(cfg && strstr(cfg, "width = 16") && strstr(cfg, "proj-hidden = 2048") && strstr(cfg, "proj-dim = 256") &&
              strstr(cfg, "batch = 100") && strstr(cfg, "base-lr = 0.5") && strstr(cfg, "pred-lr-mult = 10") &&
              strstr(cfg, "weight-decay = 1e-05") && strstr(cfg, "var-cov = 0.1,0.004") &&
              strstr(cfg, "size-schedule = auto") && strstr(cfg, "eval-every = 0") && strstr(cfg, "knn-before = 0"),
          "saved: %s", cfg);
    free(cfg);
    char *m = slurp_text("br/metrics.jsonl");
    CHECK(m && strstr(m, "\"image_size\": 16") && strstr(m, "\"var_cov\": ") && !strstr(m, "knn"),
          "the first steps at 16 px with the variance terms, no kNN: %.400s", m);
    free(m);
    /* (a batch the 100 images hold: the defaults' 128 does not) */
    const char *keep[][2] = {{"--batch 64", "batch = 64"}, {"--config CFG", "batch = 50"}};
    for (size_t i = 0; i < ARRAY_LEN(keep); i++) {
        char flag[700];
        snprintf(flag, sizeof flag, "%s", keep[i][0]);
        if (strstr(flag, "CFG")) {
            char path[600];
            snprintf(path, sizeof path, "%s/br_cfg.txt", TEST_TMP);
            FILE *f = fopen(path, "w");
            CHECK(f != NULL, "cannot write %s", path);
            if (!f) continue;
            fprintf(f, "batch = 50\n");
            fclose(f);
            snprintf(flag, sizeof flag, "--config %s", path);
        }
        snprintf(a, sizeof a, "train --data %s --out %s/br%zu %s %s", DATA, TEST_TMP, i, run, flag);
        st = byol(a);
        char *o2 = slurp_text("out"), name[64];
        snprintf(name, sizeof name, "br%zu/config.txt", i);
        cfg = slurp_text(name);
        CHECK(st == 0 && !strstr(o2, "short-budget") && strstr(cfg, keep[i][1]) && strstr(cfg, "width = 8") &&
                  strstr(cfg, "var-cov = 0,0"),
              "%s: exit %d, the defaults kept: %s", keep[i][0], st, cfg ? cfg : "(no config)");
        free(o2), free(cfg);
    }
}

/* Whether a safetensors file holds a tensor whose name contains `part`. */
static int has_tensor(const char *path, const char *part) {
    Safetensors st;
    Err e;
    if (st_open(&st, path, &e)) return -1;
    int found = 0;
    for (int i = 0; i < st.n_entries; i++) found |= strstr(st.entries[i].name, part) != NULL;
    st_close(&st);
    return found;
}

/* The collapse lab's variants as flags of byol train: no predictor with the target equal to the
 * online network (tau 0, constant), and heads without batch norm. Each trains, saves a
 * checkpoint of its own shape, resumes, and evaluates. */
static void test_ablation_flags(void) {
    char a[4096], ckpt[1200];
    snprintf(a, sizeof a, "train %s --out %s/nopred --no-predictor --tau-base 0 --tau-schedule constant --max-steps 4 "
                          "--knn-before 0", TINY, TEST_TMP);
    int st = byol(a);
    char *err = slurp_text("err");
    CHECK(st == 0, "--no-predictor: exit %d: %s", st, err);
    free(err);
    char *cfg = slurp_text("nopred/config.txt");
    CHECK(strstr(cfg, "no-predictor = 1") && strstr(cfg, "tau-schedule = constant") && strstr(cfg, "tau-base = 0"),
          "the variant is saved: %s", cfg);
    free(cfg);
    char *m = slurp_text("nopred/metrics.jsonl");
    CHECK(count_lines(m, "\"tau\": 0,") == count_lines(m, "\"tau\"") && count_lines(m, "\"tau\"") >= 2,
          "tau 0 at every logged step: %s", m);
    free(m);
    snprintf(a, sizeof a, "%s/nopred", TEST_TMP);
    last_ckpt(a, ckpt, sizeof ckpt);
    CHECK(has_tensor(ckpt, "predictor.") == 0 && has_tensor(ckpt, "online.projector.3.weight") == 1,
          "no predictor tensors in %s", ckpt);
    snprintf(a, sizeof a, "train --resume %s/nopred --max-steps 6", TEST_TMP);
    CHECK(byol(a) == 0, "the variant resumes");
    snprintf(a, sizeof a, "eval --ckpt %s/nopred --eval-bank 100 --eval-queries 50 --probe-iters 20", TEST_TMP);
    CHECK(byol(a) == 0, "and evaluates");

    snprintf(a, sizeof a, "train %s --out %s/nobn --head-bn 0 --max-steps 2 --knn-before 0 --knn-after 0", TINY, TEST_TMP);
    CHECK(byol(a) == 0, "--head-bn 0 trains");
    snprintf(a, sizeof a, "%s/nobn", TEST_TMP);
    last_ckpt(a, ckpt, sizeof ckpt);
    CHECK(has_tensor(ckpt, "projector.1.") == 0 && has_tensor(ckpt, "online.projector.2.weight") == 1 &&
              has_tensor(ckpt, "predictor.2.bias") == 1,
          "heads Linear-ReLU-Linear (names 0 and 2) in %s", ckpt);

    snprintf(a, sizeof a, "train %s --out %s/badtau --tau-schedule linear", TINY, TEST_TMP);
    st = byol(a);
    err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "--tau-schedule linear") && count_lines(err, "\n") == 1, "exit %d: %s", st, err);
    free(err);
}

/* --method simsiam: the method's recipe filled in and saved (SGD at 0.05, a three-layer
 * projector, a bottleneck predictor), no target network in the checkpoint, resumed, evaluated. */
static void test_simsiam_trains(void) {
    char a[4096], ckpt[1200];
    snprintf(a, sizeof a, "train --data %s --width 4 --proj-hidden 32 --proj-dim 16 --batch 16 --epochs 3 --threads 2 "
                          "--seed 3 --out %s/simsiam --method simsiam --max-steps 4 --knn-before 0 --eval-bank 64 "
                          "--eval-queries 32", DATA, TEST_TMP);
    int st = byol(a);
    char *err = slurp_text("err"), *out = slurp_text("out");
    CHECK(st == 0, "exit %d: %s", st, err);
    CHECK(strstr(out, "byol train: simsiam,") && strstr(out, ", sgd\n"), "the header names the method: %s", out);
    free(err), free(out);
    char *cfg = slurp_text("simsiam/config.txt");
    CHECK(strstr(cfg, "method = simsiam") && strstr(cfg, "optimizer = sgd") && strstr(cfg, "base-lr = 0.05") &&
              strstr(cfg, "proj-layers = 3") && strstr(cfg, "pred-hidden = 4"),
          "the resolved recipe is saved: %s", cfg);
    free(cfg);
    snprintf(a, sizeof a, "%s/simsiam", TEST_TMP);
    last_ckpt(a, ckpt, sizeof ckpt);
    CHECK(has_tensor(ckpt, "target.") == 0 && has_tensor(ckpt, "online.projector.7.running_var") == 1 &&
              has_tensor(ckpt, "predictor.3.weight") == 1,
          "no target; projector ends in batch norm (7); %s", ckpt);
    snprintf(a, sizeof a, "train --resume %s/simsiam --max-steps 6", TEST_TMP);
    CHECK(byol(a) == 0, "resumes");
    snprintf(a, sizeof a, "eval --ckpt %s/simsiam --eval-bank 100 --eval-queries 50 --probe-iters 20", TEST_TMP);
    CHECK(byol(a) == 0, "evaluates");
    snprintf(a, sizeof a, "train %s --out %s/badopt --optimizer adam", TINY, TEST_TMP);
    st = byol(a);
    err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "--optimizer adam") && count_lines(err, "\n") == 1, "exit %d: %s", st, err);
    free(err);
    snprintf(a, sizeof a, "train %s --out %s/badlayers --proj-layers 1", TINY, TEST_TMP);
    st = byol(a);
    err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "--proj-layers 1") && count_lines(err, "\n") == 1, "exit %d: %s", st, err);
    free(err);
}

/* Trains TINY plus flags into TEST_TMP/name, stopping after `cut` steps, resumes it, and checks
 * that the last checkpoint equals ref_ckpt's bit for bit (the uninterrupted run's). */
static void check_cut_and_resume(const char *name, const char *flags, int cut, const char *ref_ckpt) {
    char a[4096], ckpt[1200], why[256];
    snprintf(a, sizeof a, "train %s --out %s/%s %s --max-steps %d", TINY, TEST_TMP, name, flags, cut);
    CHECK(byol(a) == 0, "%s stops at step %d", name, cut);
    snprintf(a, sizeof a, "train --resume %s/%s", TEST_TMP, name);
    CHECK(byol(a) == 0, "%s resumes", name);
    snprintf(a, sizeof a, "%s/%s", TEST_TMP, name);
    last_ckpt(a, ckpt, sizeof ckpt);
    CHECK(same_tensors(ref_ckpt, ckpt, why, sizeof why), "%s resumed after step %d differs: %s", name, cut, why);
}

/* --method dino: its tensors and recipe saved, its monitors logged, an interrupted run resumed
 * bit for bit (the center and the teacher temperature's warm-up included), and it evaluates. */
static void test_dino_trains_and_resumes(void) {
    char a[4096], ref_ckpt[1200];
    snprintf(a, sizeof a, "train %s --out %s/dino --method dino --dino-out 64 --epochs 2 --knn-before 0 --knn-after 0 --eval-every 0", TINY,
             TEST_TMP);
    int st = byol(a);
    char *err = slurp_text("err"), *out = slurp_text("out");
    CHECK(st == 0, "exit %d: %s", st, err);
    CHECK(strstr(out, "byol train: dino,") && strstr(out, ", sgd\n") && strstr(out, "tau 0.996"),
          "the header names DINO's recipe: %s", out);
    free(err), free(out);
    char *cfg = slurp_text("dino/config.txt");
    CHECK(strstr(cfg, "method = dino") && strstr(cfg, "optimizer = sgd") && strstr(cfg, "base-lr = 0.03") &&
              strstr(cfg, "tau-base = 0.996") && strstr(cfg, "dino-out = 64"),
          "the resolved recipe is saved: %s", cfg);
    free(cfg);
    char *m = slurp_text("dino/metrics.jsonl");
    CHECK(strstr(m, "\"teacher_entropy\"") && strstr(m, "\"kl\"") && strstr(m, "\"teacher_temp\": 0.04"),
          "DINO's monitors, the teacher temperature from 0.04: %.400s", m);
    free(m);
    snprintf(a, sizeof a, "%s/dino", TEST_TMP);
    last_ckpt(a, ref_ckpt, sizeof ref_ckpt);
    CHECK(has_tensor(ref_ckpt, "online.projector.last_layer.weight_v") == 1 &&
              has_tensor(ref_ckpt, "target.projector.last_layer.weight_v") == 1 &&
              has_tensor(ref_ckpt, "dino.center") == 1 && has_tensor(ref_ckpt, "predictor.") == 0 &&
              has_tensor(ref_ckpt, "online.projector.mlp.4.weight") == 1,
          "student, teacher and center; no predictor: %s", ref_ckpt);
    check_cut_and_resume("dino_cut", "--method dino --dino-out 64 --epochs 2 --knn-before 0 --knn-after 0 --eval-every 0", 5,
                         ref_ckpt);
    snprintf(a, sizeof a, "eval --ckpt %s/dino --eval-bank 100 --eval-queries 50 --probe-iters 20", TEST_TMP);
    CHECK(byol(a) == 0, "evaluates");
    snprintf(a, sizeof a, "train %s --out %s/nosg --no-stop-grad", TINY, TEST_TMP);
    st = byol(a);
    err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "--no-stop-grad") && count_lines(err, "\n") == 1, "BYOL has no stop-gradient to "
          "remove: exit %d: %s", st, err);
    free(err);
}

/* --optimizer adamw: both moments in the checkpoint, and a resumed run goes on bit for bit (the
 * bias correction follows the step). */
static void test_adamw_trains_and_resumes(void) {
    char a[4096], ref_ckpt[1200];
    const char *quiet = "--knn-before 0 --knn-after 0 --eval-every 0 --epochs 1 --optimizer adamw";
    snprintf(a, sizeof a, "train %s --out %s/adamw %s", TINY, TEST_TMP, quiet);
    int st = byol(a);
    char *err = slurp_text("err");
    CHECK(st == 0, "exit %d: %s", st, err);
    free(err);
    char *cfg = slurp_text("adamw/config.txt");
    CHECK(strstr(cfg, "optimizer = adamw") && strstr(cfg, "base-lr = 0.0005"), "AdamW's base rate: %s", cfg);
    free(cfg);
    snprintf(a, sizeof a, "%s/adamw", TEST_TMP);
    last_ckpt(a, ref_ckpt, sizeof ref_ckpt);
    CHECK(has_tensor(ref_ckpt, "exp_avg_sq.online.encoder.conv1.weight") == 1 &&
              has_tensor(ref_ckpt, "momentum.online.encoder.conv1.weight") == 1,
          "both moments saved: %s", ref_ckpt);
    check_cut_and_resume("adamw_cut", quiet, 3, ref_ckpt);
}

/* --local-crops: multi-crop trains, saves its recipe and resumes bit for bit (the local views
 * follow the loader's keys); a bad --local-scale is refused in one line. */
static void test_multicrop_trains_and_resumes(void) {
    char a[4096], ref_ckpt[1200];
    const char *mc = "--knn-before 0 --knn-after 0 --eval-every 0 --epochs 1 --local-crops 2 --local-size 12";
    snprintf(a, sizeof a, "train %s --out %s/mc %s", TINY, TEST_TMP, mc);
    int st = byol(a);
    char *err = slurp_text("err");
    CHECK(st == 0, "exit %d: %s", st, err);
    free(err);
    char *cfg = slurp_text("mc/config.txt");
    CHECK(strstr(cfg, "local-crops = 2") && strstr(cfg, "local-size = 12") && strstr(cfg, "local-scale = 0.05,0.4"),
          "the multi-crop recipe is saved: %s", cfg);
    free(cfg);
    snprintf(a, sizeof a, "%s/mc", TEST_TMP);
    last_ckpt(a, ref_ckpt, sizeof ref_ckpt);
    check_cut_and_resume("mc_cut", mc, 3, ref_ckpt);
    snprintf(a, sizeof a, "train %s --out %s/mc_bad --local-crops 2 --local-scale 0.5,0.1", TINY, TEST_TMP);
    st = byol(a);
    err = slurp_text("err");
    CHECK(st != 0 && strstr(err, "--local-scale 0.5,0.1") && count_lines(err, "\n") == 1, "exit %d: %s", st, err);
    free(err);
}

/* Each bad[i][0] (flags beside TINY) refused with one line on stderr holding bad[i][1]. */
static void check_refusals(const char *name, const char *const bad[][2], size_t n) {
    for (size_t i = 0; i < n; i++) {
        char a[4096];
        snprintf(a, sizeof a, "train %s --out %s/%s%zu %s", TINY, TEST_TMP, name, i, bad[i][0]);
        const int st = byol(a);
        char *err = slurp_text("err");
        CHECK(st != 0 && strstr(err, bad[i][1]) && count_lines(err, "\n") == 1, "%s: exit %d: %s", bad[i][0], st, err);
        free(err);
    }
}

/* --size-schedule: the views are 16 px for the first half of the steps, 24 px for a quarter, 32
 * px at the end (the metrics say which, step by step); a run cut inside the 24-px phase resumes
 * bit for bit; schedules that cannot be are refused in one line. */
static void test_size_schedule(void) {
    char a[4096], ref_ckpt[1200];
    const char *ss = "--knn-before 0 --knn-after 0 --eval-every 0 --epochs 2 --log-every 1 "
                     "--size-schedule 16:0.5,24:0.25,32:0.25";
    snprintf(a, sizeof a, "train %s --out %s/ss %s", TINY, TEST_TMP, ss);
    int st = byol(a);
    char *err = slurp_text("err"), *out = slurp_text("out");
    CHECK(st == 0, "exit %d: %s", st, err);
    CHECK(strstr(out, "size schedule: 16 px to 50%, 24 px to 75%, 32 px to 100% of the steps") &&
              strstr(out, "step 6: views of 24 px from here") && strstr(out, "step 9: views of 32 px from here"),
          "the phases announced: %s", out);
    free(err), free(out);
    /* 12 steps (6 a epoch): steps 1-6 at 16 px, 7-9 at 24, 10-12 at 32 */
    char *m = slurp_text("ss/metrics.jsonl");
    int sizes[13] = {0};
    for (char *line = strtok(m, "\n"); line; line = strtok(NULL, "\n")) {
        const char *p = strstr(line, "\"step\": "), *q = strstr(line, "\"image_size\": ");
        if (p && q && !strstr(line, "knn")) {
            const int step = atoi(p + 8);
            if (step >= 1 && step <= 12) sizes[step] = atoi(q + 14);
        }
    }
    free(m);
    int right = 1;
    for (int step = 1; step <= 12; step++) right &= sizes[step] == (step <= 6 ? 16 : step <= 9 ? 24 : 32);
    CHECK(right, "image sizes by step: %d %d %d %d %d %d %d %d %d %d %d %d", sizes[1], sizes[2], sizes[3], sizes[4],
          sizes[5], sizes[6], sizes[7], sizes[8], sizes[9], sizes[10], sizes[11], sizes[12]);
    char *cfg = slurp_text("ss/config.txt");
    CHECK(strstr(cfg, "size-schedule = 16:0.5,24:0.25,32:0.25") != NULL, "saved: %s", cfg);
    free(cfg);
    snprintf(a, sizeof a, "%s/ss", TEST_TMP);
    last_ckpt(a, ref_ckpt, sizeof ref_ckpt);
    check_cut_and_resume("ss_cut", ss, 8, ref_ckpt);
    const char *bad[][2] = {{"--size-schedule 16:0.5,24:0.5", "the last size is 24 px"},
                            {"--size-schedule 16:0.5,32:0.4", "add up to 0.9"},
                            {"--size-schedule 4:0.5,32:0.5", "size 4 px"},
                            {"--size-schedule '16:0.5;32:0.5'", "not a share"},
                            {"--size-schedule 16:0.5,32:0.5 --local-crops 2 --local-size 20", "smallest size of --size-schedule (16)"}};
    check_refusals("ss_bad", bad, ARRAY_LEN(bad));
}

/* --var-cov and --local-weight: the recipe saved, VICReg's terms logged, an interrupted run
 * resumed bit for bit; what cannot be is refused. */
static void test_var_cov_and_local_weight(void) {
    char a[4096], ref_ckpt[1200];
    const char *vc = "--knn-before 0 --knn-after 0 --eval-every 0 --epochs 1 --log-every 1 --var-cov 1,0.04 "
                     "--local-crops 2 --local-size 12 --local-weight 0.5 --pred-lr-constant 1";
    snprintf(a, sizeof a, "train %s --out %s/vc %s", TINY, TEST_TMP, vc);
    int st = byol(a);
    char *err = slurp_text("err");
    CHECK(st == 0, "exit %d: %s", st, err);
    free(err);
    char *cfg = slurp_text("vc/config.txt");
    CHECK(strstr(cfg, "var-cov = 1,0.04") && strstr(cfg, "local-weight = 0.5") && strstr(cfg, "pred-lr-constant = 1"),
          "saved: %s", cfg);
    free(cfg);
    char *m = slurp_text("vc/metrics.jsonl");
    const char *first = strstr(m, "\"var_cov\": ");
    CHECK(first && atof(first + 11) > 0, "the terms' value logged: %.300s", m);
    free(m);
    snprintf(a, sizeof a, "%s/vc", TEST_TMP);
    last_ckpt(a, ref_ckpt, sizeof ref_ckpt);
    check_cut_and_resume("vc_cut", vc, 3, ref_ckpt);
    const char *bad[][2] = {{"--var-cov 1", "--var-cov 1: two weights"},
                            {"--var-cov 1,-2", "--var-cov 1,-2: two weights"},
                            {"--var-cov 1,0.04 --method dino", "not DINO's"},
                            {"--local-weight 0.5", "add --local-crops N"},
                            {"--method dino --pred-lr-constant 1", "--method dino has no predictor"}};
    check_refusals("vc_bad", bad, ARRAY_LEN(bad));
}

/* byol eval --encoder target: the target's features, not the online one's (they differ after
 * training with tau 0.99); with tau 0 the target is the online network, tensor for tensor, and
 * the figures are the same. --flip-avg is reported. */
static void test_eval_target_encoder(void) {
    char a[4096];
    double knn[2][2];
    for (int t = 0; t < 2; t++) {
        snprintf(a, sizeof a, "train %s --out %s/tg%d --knn-before 0 --knn-after 0 --eval-every 0 --epochs 1%s", TINY,
                 TEST_TMP, t, t ? " --tau-base 0 --tau-schedule constant" : "");
        CHECK(byol(a) == 0, "train tg%d", t);
        for (int enc = 0; enc < 2; enc++) {
            snprintf(a, sizeof a, "eval --ckpt %s/tg%d --encoder %s --probe-iters 5", TEST_TMP, t, enc ? "target" : "online");
            const int st = byol(a);
            char *out = slurp_text("out");
            const char *json = strrchr(out, '{');
            CHECK(st == 0 && json && strstr(json, enc ? "\"encoder\": \"target\"" : "\"encoder\": \"online\""),
                  "eval %s: exit %d: %s", enc ? "target" : "online", st, out);
            const char *k = json ? strstr(json, "\"knn_top1\": ") : NULL;
            knn[t][enc] = k ? atof(k + 12) : -1;
            free(out);
        }
    }
    CHECK(knn[0][0] != knn[0][1], "tau 0.99: the target's kNN %g differs from the online one's %g", knn[0][1], knn[0][0]);
    CHECK(knn[1][0] == knn[1][1], "tau 0: the target is the online network: %g vs %g", knn[1][1], knn[1][0]);
    snprintf(a, sizeof a, "eval --ckpt %s/tg0 --flip-avg 1 --probe-iters 5", TEST_TMP);
    int st = byol(a);
    char *out = slurp_text("out");
    CHECK(st == 0 && strstr(out, "averaged with its mirror") && strstr(out, "\"flip_avg\": 1"), "exit %d: %s", st, out);
    free(out);
    snprintf(a, sizeof a, "eval --ckpt %s/tg0 --encoder ema", TEST_TMP);
    st = byol(a);
    char *err = slurp_text("err");
    CHECK(st == 2 && strstr(err, "--encoder ema: online or target"), "exit %d: %s", st, err);
    free(err);
}

/* --local-predictor 1: the local views' own predictor is trained (its weights move, their
 * momentum is saved) and resumes bit for bit; without local views, or for DINO, it is refused. */
static void test_local_predictor(void) {
    char a[4096], ref_ckpt[1200];
    const char *mc = "--knn-before 0 --knn-after 0 --eval-every 0 --epochs 1 --local-crops 1 --local-size 12 "
                     "--local-predictor 1";
    snprintf(a, sizeof a, "train %s --out %s/lp %s", TINY, TEST_TMP, mc);
    int st = byol(a);
    char *err = slurp_text("err");
    CHECK(st == 0, "exit %d: %s", st, err);
    free(err);
    snprintf(a, sizeof a, "%s/lp", TEST_TMP);
    last_ckpt(a, ref_ckpt, sizeof ref_ckpt);
    Safetensors f;
    Err e;
    if (st_open(&f, ref_ckpt, &e) == 0) {
        const StEntry *w = st_find(&f, "local_predictor.0.weight"), *p = st_find(&f, "predictor.0.weight"),
                      *v = st_find(&f, "momentum.local_predictor.0.weight");
        CHECK(w && p && v && st_numel(w) == st_numel(p), "the local predictor is saved beside the predictor, with its "
                                                         "momentum");
        if (w && p && v) {
            const size_t n = st_numel(w);
            float *wd = xmalloc(3 * n * sizeof(float), "weights"), *pd = wd + n, *vd = pd + n;
            st_read_f32(&f, w, wd), st_read_f32(&f, p, pd), st_read_f32(&f, v, vd);
            double diff = 0, mom = 0;
            for (size_t i = 0; i < n; i++) diff += fabs((double)wd[i] - pd[i]), mom += fabs(vd[i]);
            CHECK(diff > 0 && mom > 0, "its own weights (differ from the predictor's by %g) and a momentum (%g)", diff,
                  mom);
            xfree(wd);
        }
        st_close(&f);
    } else {
        CHECK(0, "%s", e.msg);
    }
    check_cut_and_resume("lp_cut", mc, 2, ref_ckpt);
    const char *bad[] = {"--local-predictor 1", "--local-predictor 1 --local-crops 1 --method dino"};
    const char *says[] = {"--local-crops", "--local-predictor 1"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "train %s --out %s/lp_bad%d %s", TINY, TEST_TMP, i, bad[i]);
        st = byol(a);
        err = slurp_text("err");
        CHECK(st == 2 && strstr(err, says[i]) && count_lines(err, "\n") == 1, "%s: exit %d: %s", bad[i], st, err);
        free(err);
    }
}

/* Copies the encoder file src to dst, dropping the tensor `drop` and giving `reshape` (same
 * size) the shape of its dimensions reversed: a file with a missing or a misshaped tensor. */
static void write_damaged(const char *src, const char *dst, const char *drop, const char *reshape) {
    Safetensors f;
    Err e;
    if (st_open(&f, src, &e)) {
        CHECK(0, "%s", e.msg);
        return;
    }
    StTensorOut *t = xcalloc(f.n_entries, sizeof *t, "tensors");
    int64_t(*shapes)[ST_MAX_NDIM] = xcalloc(f.n_entries, sizeof *shapes, "shapes");
    float **data = xcalloc(f.n_entries, sizeof *data, "data");
    int n = 0;
    for (int i = 0; i < f.n_entries; i++) {
        const StEntry *x = &f.entries[i];
        if (drop && strcmp(x->name, drop) == 0) continue;
        for (int d = 0; d < x->ndim; d++)
            shapes[n][d] = reshape && strcmp(x->name, reshape) == 0 ? x->shape[x->ndim - 1 - d] : x->shape[d];
        data[n] = xmalloc(st_numel(x) * sizeof(float), "tensor");
        st_read_f32(&f, x, data[n]);
        t[n] = (StTensorOut){x->name, x->ndim, shapes[n], data[n], 0};
        n++;
    }
    CHECK(st_write(dst, t, n, NULL, 0, &e) == 0, "%s", e.msg);
    for (int i = 0; i < n; i++) xfree(data[i]);
    xfree(data), xfree(shapes), xfree(t);
    st_close(&f);
}

/* --init: both encoders start from byol export's file (torchvision's names) and the file's
 * width is taken; at learning rate 0 the online encoder still holds the file's weights bit for
 * bit after a step (the target within the EMA's rounding) and the heads are those of a run
 * without --init. A file that does not fit is refused in one line and leaves no folder. */
static void test_init_from_encoder(void) {
    char a[4096], got[1200], plain[1200], enc[1200];
    const char *quiet = "--knn-before 0 --knn-after 0 --eval-every 0";
    snprintf(a, sizeof a, "train %s --out %s/init_src --width 6 --max-steps 2 %s", TINY, TEST_TMP, quiet);
    CHECK(byol(a) == 0, "the source run");
    snprintf(enc, sizeof enc, "%s/init_enc.safetensors", TEST_TMP);
    snprintf(a, sizeof a, "export --ckpt %s/init_src --out %s", TEST_TMP, enc);
    CHECK(byol(a) == 0, "exports");
    /* no --width: the file's 6 */
    char base[2048];
    snprintf(base, sizeof base, "--data %s --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --batch 16 --threads 2 "
                                "--workers 2 --seed 3 --base-lr 0 --max-steps 1 %s", DATA, quiet);
    snprintf(a, sizeof a, "train %s --out %s/init_run --init %s", base, TEST_TMP, enc);
    int st = byol(a);
    char *err = slurp_text("err");
    CHECK(st == 0, "exit %d: %s", st, err);
    free(err);
    snprintf(a, sizeof a, "train %s --out %s/init_plain --width 6", base, TEST_TMP);
    CHECK(byol(a) == 0, "the same run without --init");
    snprintf(a, sizeof a, "%s/init_run", TEST_TMP);
    last_ckpt(a, got, sizeof got);
    snprintf(a, sizeof a, "%s/init_plain", TEST_TMP);
    last_ckpt(a, plain, sizeof plain);
    Safetensors fe, fg, fp;
    Err e;
    if (st_open(&fe, enc, &e) || st_open(&fg, got, &e) || st_open(&fp, plain, &e)) {
        CHECK(0, "%s", e.msg);
        return;
    }
    int compared = 0, online_exact = 1;
    double target_err = 0;
    for (int i = 0; i < fe.n_entries; i++) {
        const StEntry *x = &fe.entries[i];
        if (strstr(x->name, "running_") || strstr(x->name, "num_batches")) continue; /* a step moves them */
        char k1[300], k2[300];
        snprintf(k1, sizeof k1, "online.encoder.%s", x->name);
        snprintf(k2, sizeof k2, "target.encoder.%s", x->name);
        const StEntry *on = st_find(&fg, k1), *tg = st_find(&fg, k2);
        if (!on || !tg || st_numel(on) != st_numel(x)) {
            CHECK(0, "%s: missing or resized in the run", x->name);
            continue;
        }
        const size_t n = st_numel(x);
        float *w = xmalloc(3 * n * sizeof(float), "weights"), *o = w + n, *t = o + n;
        st_read_f32(&fe, x, w), st_read_f32(&fg, on, o), st_read_f32(&fg, tg, t);
        for (size_t j = 0; j < n; j++) {
            online_exact &= o[j] == w[j];
            target_err = fmax(target_err, fabs((double)t[j] - w[j]) / fmax(fabs(w[j]), 1e-3));
        }
        xfree(w);
        compared++;
    }
    CHECK(compared > 50 && online_exact, "the online encoder holds the file's %d tensors exactly", compared);
    CHECK(target_err < 1e-6, "the target encoder too, within the EMA's rounding (%g)", target_err);
    const char *head = "online.projector.0.weight";
    const StEntry *hg = st_find(&fg, head), *hp = st_find(&fp, head);
    if (hg && hp && st_numel(hg) == st_numel(hp)) {
        const size_t n = st_numel(hg);
        float *x = xmalloc(2 * n * sizeof(float), "heads");
        st_read_f32(&fg, hg, x), st_read_f32(&fp, hp, x + n);
        CHECK(memcmp(x, x + n, n * sizeof(float)) == 0, "fresh heads: those of the run without --init");
        xfree(x);
    } else {
        CHECK(0, "%s in both runs", head);
    }
    st_close(&fe), st_close(&fg), st_close(&fp);

    /* what does not fit: one line each, no folder */
    char missing[1200], misshaped[1200], nonenc[1200];
    snprintf(missing, sizeof missing, "%s/init_missing.safetensors", TEST_TMP);
    snprintf(misshaped, sizeof misshaped, "%s/init_misshaped.safetensors", TEST_TMP);
    snprintf(nonenc, sizeof nonenc, "%s/init_fc.safetensors", TEST_TMP);
    write_damaged(enc, missing, "layer4.1.bn2.weight", NULL);
    write_damaged(enc, misshaped, NULL, "layer2.0.conv1.weight");
    const int64_t fc_shape[2] = {10, 48};
    float fc[480] = {0};
    const StTensorOut fc_t = {"fc.weight", 2, fc_shape, fc, 0};
    CHECK(st_write(nonenc, &fc_t, 1, NULL, 0, &e) == 0, "%s", e.msg);
    struct {
        const char *flags, *says;
    } bad[] = {
        {"", "layer4.1.bn2.weight"},                   /* with `missing` */
        {"", "layer2.0.conv1.weight"},                 /* with `misshaped` */
        {"", "conv1.weight"},                          /* with `nonenc` */
        {"--width 4", "--width 4"},                    /* the rest with enc */
        {"--stem imagenet", "--stem imagenet"},
        {"--arch resnet50", "--arch resnet50"},
    };
    const char *file[] = {missing, misshaped, nonenc, enc, enc, enc};
    for (int i = 0; i < (int)ARRAY_LEN(bad); i++) {
        snprintf(a, sizeof a, "train %s --out %s/init_bad%d --init %s %s", base, TEST_TMP, i, file[i], bad[i].flags);
        st = byol(a);
        err = slurp_text("err");
        snprintf(a, sizeof a, "%s/init_bad%d", TEST_TMP, i);
        CHECK(st != 0 && strstr(err, bad[i].says) && count_lines(err, "\n") == 1 && access(a, F_OK) != 0,
              "case %d: exit %d, no folder (%d): %s", i, st, access(a, F_OK) != 0, err);
        free(err);
    }
}

int main(void) {
    test_tmpdir("test_train");
    extract_cifar_subset(DATA, sizeof DATA);
    snprintf(TINY, sizeof TINY,
             "--data %s --width 4 --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --batch 16 --epochs 3 --keep 2 "
             "--eval-every 2 --log-every 2 --threads 2 --workers 2 --seed 3",
             DATA);
    RUN(test_train_run_files_and_resume);
    RUN(test_eval_export_embed);
    RUN(test_train_bad_input);
    RUN(test_time_budget);
    RUN(test_budget_recipe);
    RUN(test_ablation_flags);
    RUN(test_simsiam_trains);
    RUN(test_dino_trains_and_resumes);
    RUN(test_adamw_trains_and_resumes);
    RUN(test_multicrop_trains_and_resumes);
    RUN(test_local_predictor);
    RUN(test_size_schedule);
    RUN(test_var_cov_and_local_weight);
    RUN(test_eval_target_encoder);
    RUN(test_init_from_encoder);
    return test_finish();
}
