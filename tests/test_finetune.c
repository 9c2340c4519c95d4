/* byol finetune and byol predict: the labelled subset the loader walks, cross-entropy through
 * the DINO loss kernel, the classifier file (torchvision's names, metadata, refusals), a
 * classifier that learns a separable task, a batch of one agreeing with a batch of many, and the
 * CLI's bad inputs (one line on stderr, non-zero exit, nothing written). */
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "cli_run.h"
#include "image_encode.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include "eval/classify.h"
#include "eval/probe.h"
#include "model/classifier.h"
#include "nn/nn.h"

static char COLORS[600], COLOR_RUN[600], CIFAR_RUN[600];


static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* The last line of TEST_TMP/out. */
static char *last_line(void) {
    char *out = slurp_text("out");
    size_t n = strlen(out);
    while (n && out[n - 1] == '\n') out[--n] = 0;
    char *nl = strrchr(out, '\n');
    char *line = strdup(nl ? nl + 1 : out);
    free(out);
    return line;
}


/* Three classes of 16x16 images told apart by their dominant colour (red, green, blue), with
 * noise: 20 train and 10 test images of each, as BMP files in train/<class>/ and test/<class>/. */
static void make_color_folder(void) {
    snprintf(COLORS, sizeof COLORS, "%s/colors", TEST_TMP);
    const char *names[3] = {"red", "green", "blue"};
    TestRng r = {0x5eed};
    uint8_t px[16 * 16 * 3];
    for (int split = 0; split < 2; split++)
        for (int c = 0; c < 3; c++) {
            char dir[800];
            snprintf(dir, sizeof dir, "mkdir -p %s/%s/%s", COLORS, split ? "test" : "train", names[c]);
            if (system(dir) != 0) exit(2);
            for (int i = 0; i < (split ? 10 : 20); i++) {
                for (int p = 0; p < 16 * 16; p++)
                    for (int k = 0; k < 3; k++)
                        px[3 * p + k] = (uint8_t)(k == c ? 150 + 100 * rng_uniform(&r) : 100 * rng_uniform(&r));
                size_t n;
                uint8_t *bmp = bmp_encode(px, 16, 16, 24, 0, &n);
                char path[900];
                snprintf(path, sizeof path, "%s/%s/%s/%02d.bmp", COLORS, split ? "test" : "train", names[c], i);
                write_bytes(path, bmp, n);
                free(bmp);
            }
        }
}

/* One-step byol train runs of a tiny model (the encoders fine-tuning starts from). */
static void setup_runs(void) {
    make_color_folder();
    extract_cifar_subset(CIFAR, sizeof CIFAR);
    const char *data[2] = {COLORS, CIFAR};
    char *dirs[2] = {COLOR_RUN, CIFAR_RUN};
    for (int i = 0; i < 2; i++) {
        snprintf(dirs[i], 600, "%s/run%d", TEST_TMP, i);
        char a[4096];
        snprintf(a, sizeof a,
                 "train --data %s --out %s --width 4 --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --batch 12 "
                 "--max-steps 1 --knn-before 0 --knn-after 0 --eval-every 0 --threads 1",
                 data[i], dirs[i]);
        if (run_out(a) != 0) {
            printf("FATAL tiny run failed: %s\n", slurp_text("err"));
            exit(2);
        }
    }
}

/* The loader over a subset: every image it delivers is one of the subset's, each once an epoch,
 * with one view. */
static void test_loader_subset(void) {
    Dataset ds;
    Err e;
    if (dataset_open(&ds, COLORS, NULL, NULL, &e)) {
        CHECK(0, "%s", e.msg);
        return;
    }
    AugConfig ac;
    aug_config_default(&ac, 16, 3);
    const int32_t subset[6] = {1, 5, 22, 30, 41, 59};
    LoaderConfig lc = {.ds = &ds, .split = SPLIT_TRAIN, .aug = ac, .batch = 3, .seed = 7, .workers = 2, .slots = 2,
                       .subset = subset, .subset_n = 6, .one_view = 1};
    Loader *l = loader_create(&lc, &e);
    CHECK(l != NULL, "%s", e.msg);
    if (!l) return dataset_close(&ds);
    CHECK(loader_batches_per_epoch(l) == 2, "%d batches an epoch", loader_batches_per_epoch(l));
    for (int epoch = 0; epoch < 2; epoch++) {
        int seen[6] = {0};
        for (int b = 0; b < 2; b++) {
            Batch batch = loader_next(l);
            for (int k = 0; k < 3; k++) {
                int at = -1;
                for (int j = 0; j < 6; j++) at = batch.indices[k] == subset[j] ? j : at;
                CHECK(at >= 0, "image %d is not in the subset", batch.indices[k]);
                if (at >= 0) seen[at]++;
                CHECK(batch.labels[k] == ds.split[SPLIT_TRAIN].labels[batch.indices[k]], "label of %d", batch.indices[k]);
            }
        }
        for (int j = 0; j < 6; j++) CHECK(seen[j] == 1, "subset image %d seen %d times in epoch %d", subset[j], seen[j], epoch);
    }
    loader_destroy(l);
    LoaderConfig small = lc;
    small.batch = 7;
    CHECK(loader_create(&small, &e) == NULL && strstr(e.msg, "6 images in the labelled subset, fewer than one batch of 7"),
          "%s", e.msg);
    dataset_close(&ds);
}

/* Cross-entropy against one-hot targets through the DINO student loss at temperature 1: the
 * loss is mean -log softmax[label], the gradient (softmax - onehot) / B. */
static void test_cross_entropy_kernel(void) {
    enum { B = 5, K = 4 };
    TestRng r = {3};
    float s[B * K], q[B * K] = {0}, ds[B * K], want[B * K];
    fill_normal(&r, s, B * K, 2.0f);
    double loss_ref = 0;
    for (int i = 0; i < B; i++) {
        const int y = (i * 3) % K;
        q[i * K + y] = 1;
        double m = s[i * K], sum = 0;
        for (int k = 0; k < K; k++) m = s[i * K + k] > m ? s[i * K + k] : m;
        for (int k = 0; k < K; k++) sum += exp(s[i * K + k] - m);
        loss_ref += -(s[i * K + y] - m - log(sum)) / B;
        for (int k = 0; k < K; k++) want[i * K + k] = (float)((exp(s[i * K + k] - m) / sum - (k == y)) / B);
    }
    double h;
    const float loss = backend_cpu.dino_student_loss(ds, s, q, B, K, 1.0f, 1.0f, &h);
    CHECK(fabs(loss - loss_ref) < 1e-5 * fabs(loss_ref), "loss %.7f vs %.7f", (double)loss, loss_ref);
    CHECK_CLOSE(ds, want, B * K, 1e-5, "gradient");
    float probs[2 * 3] = {1, 3, 2, 0, 0, 5};
    softmax_rows(probs, 2, 3);
    CHECK(fabs(probs[0] + probs[1] + probs[2] - 1) < 1e-6 && probs[1] > probs[2] && probs[2] > probs[0], "softmax");
    const int32_t lab[2] = {2, 0};
    double t1, t5;
    CHECK(classify_accuracy(probs, lab, 2, 3, &t1, &t5) == 2 && t1 == 0 && t5 == 1, "top-1 %g top-5 %g", t1, t5);
}

/* probe_fit's layer on raw features reproduces the standardized probe: the same training
 * accuracy as its report, and probe_top1's test accuracy on held-out rows. */
static void test_probe_as_layer(void) {
    enum { N = 300, T = 200, D = 6, K = 3 };
    float *x = malloc(sizeof(float) * (N + T) * D), w[K * D], b[K], logits[K];
    int32_t y[N + T];
    TestRng r = {17};
    for (int i = 0; i < N + T; i++) { /* classes apart along dims 0-2, on a large shared offset and scale */
        y[i] = i % K;
        for (int j = 0; j < D; j++) x[i * D + j] = 50 + 10.0f * (j == y[i]) + 3 * rng_normal(&r) * (1 + j % 3);
    }
    ProbeReport rep, rep2;
    Err e;
    CHECK(probe_fit(x, y, N, D, K, NULL, &rep, w, b, &e) == 0, "%s", e.msg);
    int hits[2] = {0, 0};
    for (int i = 0; i < N + T; i++) {
        linear_forward_ref(logits, x + i * D, w, b, 1, D, K);
        int best = 0;
        for (int k = 1; k < K; k++) best = logits[k] > logits[best] ? k : best;
        hits[i >= N] += best == y[i];
    }
    const double top1 = probe_top1(x, y, N, x + N * D, y + N, T, D, K, NULL, &rep2, &e);
    CHECK(fabs(hits[0] / (double)N - rep.train_top1) < 1e-9, "train %d/%d vs the report's %g", hits[0], N, rep.train_top1);
    CHECK(fabs(hits[1] / (double)T - top1) < 1e-9 && top1 > 0.8, "test %d/%d vs probe_top1's %g", hits[1], T, top1);
    free(x);
}

/* The classifier file round-trips every tensor and the metadata, with torchvision's keys. */
static void test_classifier_file(void) {
    EncoderConfig enc = {ARCH_RESNET18, 4, STEM_CIFAR, 3};
    char *names[3] = {"cat", "dog, big", "bird"};
    Classifier c, d;
    classifier_init(&c, &enc, 3, names, 0);
    TestRng r = {11};
    fill_normal(&r, c.store.params, c.store.n_params, 0.5f);
    for (size_t i = 0; i < c.store.n_buffers; i++) c.store.buffers[i] = 0.5f + (float)rng_uniform(&r);
    c.image_size = 24;
    c.mean[0] = 0.25f, c.std[2] = 0.5f;
    Err e;
    const char *path = tmp_path("clf.safetensors");
    CHECK(classifier_save(&c, path, 7, NULL, 0, &e) == 0, "%s", e.msg);
    CHECK(classifier_load(&d, path, &e) == 0, "%s", e.msg);
    CHECK(d.n_classes == 3 && strcmp(d.class_names[1], "dog, big") == 0 && d.image_size == 24 && d.mean[0] == 0.25f &&
              d.std[2] == 0.5f && d.std[0] == 1,
          "metadata: %d classes, '%s', size %d", d.n_classes, d.n_classes > 1 ? d.class_names[1] : "", d.image_size);
    CHECK(d.store.n_params == c.store.n_params && memcmp(d.store.params, c.store.params, c.store.n_params * 4) == 0 &&
              memcmp(d.store.buffers, c.store.buffers, c.store.n_buffers * 4) == 0,
          "tensors differ after the round trip");
    Safetensors st;
    if (st_open(&st, path, &e) == 0) {
        CHECK(st_find(&st, "fc.weight") && st_find(&st, "conv1.weight") && st_find(&st, "layer4.1.bn2.running_var") &&
                  st_find(&st, "layer1.0.bn1.num_batches_tracked") && st_find(&st, "fc.weight")->shape[0] == 3,
              "torchvision's keys");
        st_close(&st);
    }
    classifier_free(&d);
    classifier_free(&c);
}

/* The whole command on a separable task: colour classes are learned from a 1-step encoder. */
static void test_finetune_learns(void) {
    char a[4096];
    snprintf(a, sizeof a, "finetune --ckpt %s --epochs 8 --batch 12 --lr 0.1 --out %s/ft --threads 1 --log-every 0",
             COLOR_RUN, TEST_TMP);
    CHECK(run_out(a) == 0, "finetune: %s", slurp_text("err"));
    char *line = last_line();
    CHECK(json_number(line, "top1") >= 0.9, "top-1 on the colour task: %s", line);
    CHECK(json_number(line, "labelled") == 60 && json_number(line, "test_images") == 30, "%s", line);
    CHECK(exists(tmp_path("ft/classifier.safetensors")) && exists(tmp_path("ft/finetune.json")), "outputs written");
    free(line);
    /* a fixed function of the seed: the same run gives the same classifier */
    snprintf(a, sizeof a, "finetune --ckpt %s --epochs 2 --batch 12 --out %s/ftA --threads 1 --seed 3 --head-probe 1", COLOR_RUN, TEST_TMP);
    CHECK(run_out(a) == 0, "finetune A");
    line = last_line(); /* --head-probe 1: the probe of the frozen features, scored before training */
    CHECK(strstr(line, "\"head_probe\": true") && json_number(line, "probe_top1") >= 0.5, "%s", line);
    free(line);
    snprintf(a, sizeof a, "finetune --ckpt %s --epochs 2 --batch 12 --out %s/ftB --threads 2 --seed 3 --head-probe 1", COLOR_RUN, TEST_TMP);
    CHECK(run_out(a) == 0, "finetune B");
    char why[256] = "";
    CHECK(same_tensors(tmp_path("ftA/classifier.safetensors"), tmp_path("ftB/classifier.safetensors"), why, sizeof why),
          "not reproducible across --threads: %s", why);
}

/* byol predict: the CSV of a folder, and one image alone gets the class and probability it got
 * among all the others (batch norm in evaluation mode). */
static void test_predict_batch_of_one(void) {
    char a[4096];
    snprintf(a, sizeof a, "predict --ckpt %s/ft/classifier.safetensors --data %s --out %s/p.csv", TEST_TMP, COLORS,
             TEST_TMP);
    CHECK(run_out(a) == 0, "predict: %s", slurp_text("err"));
    char *line = last_line();
    CHECK(json_number(line, "images") == 30 && json_number(line, "top1") >= 0.9, "%s", line);
    free(line);
    char *csv = slurp_text("p.csv");
    int lines = 0;
    for (char *p = csv; *p; p++) lines += *p == '\n';
    CHECK(lines == 31 && strncmp(csv, "file,class,probability\n", 23) == 0, "%d lines: %.80s", lines, csv);
    const char *row = strstr(csv, "test/green/03.bmp,");
    CHECK(row != NULL, "row of test/green/03.bmp");
    snprintf(a, sizeof a, "predict --ckpt %s/ft/classifier.safetensors --data %s/test/green/03.bmp --out %s/one.csv",
             TEST_TMP, COLORS, TEST_TMP);
    CHECK(run_out(a) == 0, "predict one image: %s", slurp_text("err"));
    char *one = slurp_text("one.csv");
    char cls[64] = "", cls1[64] = "";
    double p = -1, p1 = -2;
    if (row) sscanf(strchr(row, ',') + 1, "%63[^,],%lf", cls, &p);
    const char *r1 = strchr(one, '\n');
    if (r1 && strchr(r1, ',')) sscanf(strchr(r1, ',') + 1, "%63[^,],%lf", cls1, &p1);
    CHECK(strcmp(cls, "green") == 0 && strcmp(cls, cls1) == 0 && fabs(p - p1) < 1e-5, "batch %s %.6f, alone %s %.6f",
          cls, p, cls1, p1);
    free(csv), free(one);
}

/* Wrong inputs: one line on stderr, a non-zero exit, nothing written. */
static void expect_refusal(const char *args, const char *needle, const char *must_not_exist) {
    const int st = run_out(args);
    char *err = slurp_text("err");
    int lines = 0;
    for (char *p = err; *p; p++) lines += *p == '\n';
    CHECK(st != 0 && lines == 1 && strstr(err, needle), "'%s': status %d, stderr: %s", args, st, err);
    if (must_not_exist) CHECK(!exists(must_not_exist), "%s left behind by '%s'", must_not_exist, args);
    free(err);
}

static void test_bad_inputs(void) {
    char a[4096], out[800];
    snprintf(out, sizeof out, "%s/bad", TEST_TMP);
    const char *fractions[3] = {"0", "1.5", "-0.1"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "finetune --ckpt %s --label-fraction %s --out %s", CIFAR_RUN, fractions[i], out);
        expect_refusal(a, "--label-fraction", out);
    }
    /* 10 images a class: 1% gives none */
    snprintf(a, sizeof a, "finetune --ckpt %s --label-fraction 0.01 --epochs 1 --out %s", CIFAR_RUN, out);
    expect_refusal(a, "no image", out);
    /* a classifier where an encoder checkpoint is expected, and the reverse */
    snprintf(a, sizeof a, "finetune --ckpt %s/ft/classifier.safetensors --out %s", TEST_TMP, out);
    expect_refusal(a, "classifier checkpoint of byol finetune", out);
    snprintf(a, sizeof a, "eval --ckpt %s/ft/classifier.safetensors", TEST_TMP);
    expect_refusal(a, "give it to byol predict", NULL);
    snprintf(a, sizeof a, "predict --ckpt %s --data %s --out %s/x.csv", COLOR_RUN, COLORS, TEST_TMP);
    expect_refusal(a, "fine-tune it first with byol finetune", tmp_path("x.csv"));
    snprintf(a, sizeof a, "export --ckpt %s --out %s/enc.safetensors", COLOR_RUN, TEST_TMP);
    CHECK(run_out(a) == 0, "export");
    snprintf(a, sizeof a, "predict --ckpt %s/enc.safetensors --data %s --out %s/x.csv", TEST_TMP, COLORS, TEST_TMP);
    expect_refusal(a, "not a classifier of byol finetune", tmp_path("x.csv"));
    /* an image of another channel count */
    uint8_t gray[16 * 16];
    for (int i = 0; i < 16 * 16; i++) gray[i] = (uint8_t)i;
    Err e;
    CHECK(png_write(tmp_path("gray.png"), gray, 16, 16, 1, &e) == 0, "%s", e.msg);
    snprintf(a, sizeof a, "predict --ckpt %s/ft --data %s/gray.png --out %s/x.csv", TEST_TMP,
             TEST_TMP, TEST_TMP);
    expect_refusal(a, "1-channel images, the classifier's encoder takes 3", tmp_path("x.csv"));
    /* --out naming a file */
    write_bytes(tmp_path("afile"), "x", 1);
    snprintf(a, sizeof a, "finetune --ckpt %s --epochs 1 --batch 12 --out %s/afile", COLOR_RUN, TEST_TMP);
    expect_refusal(a, "is a file, not a folder", NULL);
}

int main(void) {
    test_tmpdir("test_finetune");
    setup_runs();
    RUN(test_loader_subset);
    RUN(test_cross_entropy_kernel);
    RUN(test_probe_as_layer);
    RUN(test_classifier_file);
    RUN(test_finetune_learns);
    RUN(test_predict_batch_of_one);
    RUN(test_bad_inputs);
    return test_finish();
}
