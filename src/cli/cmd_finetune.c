/* byol finetune (a run's encoder and a linear head trained on all or a share of the labels:
 * src/train/finetune.c) and byol predict (a fine-tuned classifier's class and probability for
 * each image: src/eval/classify.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/threads.h"
#include "../eval/classify.h"
#include "../eval/subset.h"
#include "../io/checkpoint.h"
#include "../train/finetune.h"
#include "ckpt_model.h"
#include "commands.h"

/* ---------------------------------------------------------------- byol finetune */

static const char *FINETUNE_USAGE =
    "usage: byol finetune --ckpt FILE|DIR [--data PATH] [--label-fraction F] [--epochs N] [--lr X] [--out DIR]\n"
    "       byol finetune --ckpt FILE|DIR --random-init 1 ...   (the same encoder shape, untrained: the baseline)\n"
    "Supervised fine-tuning of the run's online encoder with a linear head (the BYOL paper's semi-supervised\n"
    "protocol): the whole network trained with cross-entropy on a class-balanced share of the train labels\n"
    "(fixed by --seed), random resized crops and horizontal flips, SGD with momentum 0.9, the rate decayed by\n"
    "a cosine to 0; batch norm in training mode. Then top-1 and top-5 on the test split (un-augmented images,\n"
    "batch norm with running statistics). Writes DIR/classifier.safetensors (torchvision's resnet names with\n"
    "fc.*: byol predict reads it) and DIR/finetune.json. Last line: JSON.";

/* The default --out: beside the run's checkpoints, named by the share of labels and the start. */
static void default_out(char *out, size_t cap, const char *ckpt_path, double fraction, int random_init) {
    char dir[4400];
    snprintf(dir, sizeof dir, "%s", ckpt_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    char pct[32];
    snprintf(pct, sizeof pct, "%g", 100 * fraction);
    snprintf(out, cap, "%.4000s/finetune-%s%spct", dir, random_init ? "random-" : "", pct);
}

int cmd_finetune(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL;
    ModelConfig asked;
    DataOptions dopt;
    data_options_default(&dopt);
    FinetuneConfig fc;
    finetune_config_default(&fc);
    float label_fraction = 1, lr = (float)fc.lr, momentum = (float)fc.momentum, wd = 0, crop_min = (float)fc.crop_min;
    int head_probe = 0;
    int epochs = 0, batch = fc.batch, seed = 0, random_init = 0, threads = 0, workers = 0, log_every = fc.log_every,
        queries = 0;
    Flag flags[32 + MODEL_FLAG_COUNT];
    int nf = 0;
    flags[nf++] = (Flag){"ckpt", FLAG_STRING, &ckpt, "byol train checkpoint file, or a run folder (its newest)", 0, -1};
    flags[nf++] = (Flag){"data", FLAG_STRING, &dopt.data, "dataset path (the checkpoint's)", 0, -1};
    flags[nf++] = (Flag){"dataset", FLAG_STRING, &dopt.dataset, "dataset kind (detected)", 0, -1};
    flags[nf++] = (Flag){"label-fraction", FLAG_FLOAT, &label_fraction, "the labelled share of the train split, class-balanced, fixed by --seed (1; the paper's 0.01 and 0.1)", -1e9, 1e9};
    flags[nf++] = (Flag){"epochs", FLAG_INT, &epochs, "passes over the labelled images (0: 30 for a share up to 10%, else 10)", 0, 100000};
    flags[nf++] = (Flag){"batch", FLAG_INT, &batch, "images per step (256)", 1, 65536};
    flags[nf++] = (Flag){"lr", FLAG_FLOAT, &lr, "learning rate at the first step (0.05)", 1e-8, 100};
    flags[nf++] = (Flag){"momentum", FLAG_FLOAT, &momentum, "SGD momentum (0.9)", 0, 0.999};
    flags[nf++] = (Flag){"weight-decay", FLAG_FLOAT, &wd, "weight decay on every tensor (0, as the paper)", 0, 1};
    flags[nf++] = (Flag){"crop-min", FLAG_FLOAT, &crop_min, "smallest crop area fraction (0.08, torchvision's)", 0.01, 1};
    flags[nf++] = (Flag){"head-probe", FLAG_INT, &head_probe, "1: the head starts as the linear probe of the frozen labelled features, scored first (LP-FT); 0: at zero (0)", 0, 1};
    flags[nf++] = (Flag){"random-init", FLAG_INT, &random_init, "1: a freshly initialized encoder of the run's shape instead (the baseline)", 0, 1};
    flags[nf++] = (Flag){"seed", FLAG_INT, &seed, "the labelled subset, the order, the crops, --random-init (0)", 0, 2147483647};
    flags[nf++] = (Flag){"out", FLAG_STRING, &out, "output folder (the run's folder/finetune-<percent>pct)", 0, -1};
    flags[nf++] = (Flag){"eval-queries", FLAG_INT, &queries, "test images scored, evenly spaced, 0 all (0)", 0, 1 << 30};
    flags[nf++] = (Flag){"log-every", FLAG_INT, &log_every, "steps between progress lines, 0 none (50)", 0, 1 << 30};
    flags[nf++] = (Flag){"threads", FLAG_INT, &threads, "threads (the cores this process may use)", 1, 4096};
    flags[nf++] = (Flag){"workers", FLAG_INT, &workers, "loader threads (a quarter of the cores)", 1, 256};
    ckpt_model_flags(flags + nf, &asked, 0);
    nf += MODEL_FLAG_COUNT;
    Err e;
    int rc = flags_parse(argc, argv, flags, nf, FINETUNE_USAGE, &e);
    if (rc == 1) return 0;
    if (rc || label_fraction_check(label_fraction, &e)) return cmd_fail("finetune", &e, 2);
    if (!ckpt) {
        fprintf(stderr, "byol finetune: --ckpt is required: a byol train run (with --random-init 1, for its shape)\n");
        return 2;
    }
    threads_set(threads);
    Loaded L;
    memset(&L, 0, sizeof L);
    if (load_checkpoint(&L, ckpt, &asked, argc, argv, &e)) return cmd_fail("finetune", &e, 1);
    const int data_from_ckpt = !dopt.data;
    if (data_from_ckpt) dopt.data = L.o.data.data, dopt.dataset = dopt.dataset ? dopt.dataset : L.o.data.dataset;
    Dataset ds;
    if (open_data(&ds, &dopt, data_from_ckpt, ckpt, &e)) {
        byol_free(&L.model);
        return cmd_fail("finetune", &e, 1);
    }
    rc = 1;
    Classifier c;
    int built = 0;
    char path[4400], outdir[4400], file[4600], json[4600];
    FeatureConfig feat;
    if (ckpt_resolve(ckpt, path, sizeof path, &e) || run_feature_config(&L, &ds, 0, NULL, &feat, &e)) goto fail;
    if (!ds.n_classes || !ds.split[SPLIT_TRAIN].labels || !ds.split[SPLIT_TEST].n || !ds.split[SPLIT_TEST].labels) {
        err_set(&e, "%s has no labelled train and test splits: fine-tuning trains on the train labels and scores "
                    "the test split", ds.root);
        goto fail;
    }
    if (out) snprintf(outdir, sizeof outdir, "%s", out);
    else default_out(outdir, sizeof outdir, path, label_fraction, random_init);
    struct stat sb;
    if (stat(outdir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        err_set(&e, "--out %s is a file, not a folder: name a folder for classifier.safetensors", outdir);
        goto fail;
    }
    snprintf(file, sizeof file, "%s/classifier.safetensors", outdir);
    snprintf(json, sizeof json, "%s/finetune.json", outdir);
    if (random_init) byol_init_weights(&L.model, (uint64_t)seed);
    classifier_init(&c, &L.o.mc.enc, ds.n_classes, ds.class_names, 1);
    built = 1;
    /* the run's online encoder: the same config lays its tensors out at the same offsets */
    memcpy(c.store.params, L.model.online.params, c.net.param_floats * sizeof(float));
    memcpy(c.store.buffers, L.model.online.buffers, c.net.buffer_floats * sizeof(float));
    /* The head starts at zero (SimCLR's fine-tuning does the same; deterministic), or as the
     * probe with --head-probe 1 (finetune_run fits it). */
    c.image_size = feat.image_size;
    memcpy(c.mean, feat.mean, sizeof c.mean);
    memcpy(c.std, feat.std, sizeof c.std);
    fc.label_fraction = label_fraction;
    fc.epochs = epochs ? epochs : label_fraction <= 0.1 ? 30 : 10;
    fc.batch = batch, fc.lr = lr, fc.momentum = momentum, fc.weight_decay = wd, fc.crop_min = crop_min;
    fc.seed = (uint64_t)seed, fc.workers = workers, fc.log_every = log_every, fc.eval_max = queries, fc.log = stdout;
    fc.head_from_probe = head_probe;
    printf("finetune   %s encoder of %s (%s width %d), %s, %d epochs of %g%% of the labels, batch %d, lr %g\n",
           random_init ? "an untrained" : "the", path, arch_name(c.net.cfg.arch), c.net.cfg.width, ds.root, fc.epochs,
           100 * (double)label_fraction, batch, (double)lr);
    FinetuneReport rep;
    if (finetune_run(&c, &ds, &fc, &rep, &e)) goto fail;
    char made[4400];
    if (make_parent_dirs(file, made, sizeof made)) {
        err_set(&e, "cannot create the folder %s: %s (check --out)", made, strerror(errno));
        goto fail;
    }
    char frac[32], top1[32], top5[32], src[4500];
    snprintf(frac, sizeof frac, "%g", (double)label_fraction);
    snprintf(top1, sizeof top1, "%.6f", rep.top1);
    snprintf(top5, sizeof top5, "%.6f", rep.top5);
    snprintf(src, sizeof src, "%s%s", random_init ? "random-init:" : "", path);
    StMeta extra[] = {{"byol.source", src}, {"byol.label_fraction", frac}, {"byol.test_top1", top1},
                      {"byol.test_top5", top5}};
    if (classifier_save(&c, file, rep.steps, extra, (int)ARRAY_LEN(extra), &e)) goto fail;
    char line[6000];
    const int len = snprintf(line, sizeof line,
                             "{\"ckpt\": \"%s\", \"random_init\": %s, \"label_fraction\": %g, \"labelled\": %d, "
                             "\"epochs\": %d, \"steps\": %ld, \"lr\": %g, \"batch\": %d, \"final_loss\": %.6f, "
                             "\"test_images\": %d, \"top1\": %.6f, \"top5\": %.6f, \"head_probe\": %s, \"probe_top1\": %.6f, "
                             "\"probe_top5\": %.6f, \"train_seconds\": %.1f, "
                             "\"classifier\": \"%s\"}\n",
                             path, random_init ? "true" : "false", (double)label_fraction, rep.labelled, fc.epochs,
                             rep.steps, (double)lr, batch, rep.final_loss, rep.test_images, rep.top1, rep.top5,
                             head_probe ? "true" : "false", rep.probe_top1, rep.probe_top5, rep.train_seconds, file);
    if (atomic_write_file(json, line, (size_t)len, &e)) goto fail;
    printf("test       top-1 %.2f%%  top-5 %.2f%%  (%d test images; %d labelled train images, %ld steps, %.1f s)\n",
           100 * rep.top1, 100 * rep.top5, rep.test_images, rep.labelled, rep.steps, rep.train_seconds);
    printf("wrote %s and %s\n%s", file, json, line);
    rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
    goto out;
fail:
    fprintf(stderr, "byol finetune: %s\n", e.msg);
    rc = 1;
out:
    if (built) classifier_free(&c);
    byol_free(&L.model);
    dataset_close(&ds);
    return rc;
}

/* ---------------------------------------------------------------- byol predict */

static const char *PREDICT_USAGE =
    "usage: byol predict --ckpt classifier.safetensors|DIR --data FOLDER|FILE [--out predictions.csv] [--split NAME]\n"
    "A fine-tuned classifier's (byol finetune's) most likely class and its probability for each image,\n"
    "as CSV: file,class,probability. --data: one image, a folder of images, or a dataset (its test split\n"
    "unless --split says). Images as byol eval sees them (the classifier's size and normalization, batch\n"
    "norm with running statistics: one image alone gets the answer it gets in any batch).";

/* A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180). */
static size_t csv_field(char *dst, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) return (size_t)sprintf(dst, "%s", s);
    char *p = dst;
    *p++ = '"';
    for (; *s; s++) {
        if (*s == '"') *p++ = '"';
        *p++ = *s;
    }
    *p++ = '"';
    *p = 0;
    return (size_t)(p - dst);
}

int cmd_predict(int argc, char **argv) {
    const char *ckpt = NULL, *out = "predictions.csv", *split_name = NULL;
    DataOptions dopt;
    data_options_default(&dopt);
    int threads = 0;
    Flag flags[] = {
        {"ckpt", FLAG_STRING, &ckpt, "classifier.safetensors of byol finetune, or its --out folder", 0, -1},
        {"data", FLAG_STRING, &dopt.data, "an image file, a folder of images, or a dataset", 0, -1},
        {"dataset", FLAG_STRING, &dopt.dataset, "dataset kind (detected)", 0, -1},
        {"split", FLAG_STRING, &split_name, "train, test or unlabeled (test where there is one, else train)", 0, -1},
        {"out", FLAG_STRING, &out, "CSV output (predictions.csv)", 0, -1},
        {"threads", FLAG_INT, &threads, "threads (the cores this process may use)", 1, 4096},
    };
    Err e;
    int rc = flags_parse(argc, argv, flags, (int)ARRAY_LEN(flags), PREDICT_USAGE, &e);
    if (rc == 1) return 0;
    if (rc) return cmd_fail("predict", &e, 2);
    if (!ckpt || !dopt.data) {
        fprintf(stderr, "byol predict: --ckpt and --data are required (see --help)\n");
        return 2;
    }
    Split split = SPLIT_TEST;
    if (split_name && split_parse(split_name, &split)) {
        fprintf(stderr, "byol predict: --split: unknown split '%s' (train, test, unlabeled)\n", split_name);
        return 2;
    }
    threads_set(threads);
    /* a folder: byol finetune's (its classifier.safetensors), else a run's newest checkpoint,
     * which classifier_load then names as what it is */
    char path[4400];
    struct stat sb;
    snprintf(path, sizeof path, "%s/classifier.safetensors", ckpt);
    if (stat(path, &sb) != 0 && ckpt_resolve(ckpt, path, sizeof path, &e)) return cmd_fail("predict", &e, 1);
    Classifier c;
    if (classifier_load(&c, path, &e)) return cmd_fail("predict", &e, 1);
    Dataset ds;
    if (data_open(&ds, &dopt, stderr, &e)) {
        classifier_free(&c);
        return cmd_fail("predict", &e, 1);
    }
    rc = 1;
    float *probs = NULL;
    int32_t *labels = NULL;
    char *csv = NULL;
    if (!split_name && !ds.split[SPLIT_TEST].n) split = ds.split[SPLIT_TRAIN].n ? SPLIT_TRAIN : SPLIT_UNLABELED;
    if (!ds.split[split].n) {
        err_set(&e, "%s has no %s split (--split train, test or unlabeled)", ds.root, SPLIT_NAMES[split]);
        goto fail;
    }
    const int n = classifier_predict(&c, &ds, split, 0, &probs, &labels, &e);
    if (n < 0) goto fail;
    const int K = c.n_classes;
    size_t cap = 64, len = 0, longest = 0;
    for (int k = 0; k < K; k++) longest = strlen(c.class_names[k]) > longest ? strlen(c.class_names[k]) : longest;
    csv = xmalloc(cap, "the CSV");
    len = (size_t)sprintf(csv, "file,class,probability\n");
    for (int i = 0; i < n; i++) {
        char name[4600];
        image_name(&ds, split, i, name, sizeof name);
        const size_t need = len + 2 * (strlen(name) + longest) + 64;
        if (need > cap) {
            cap = 2 * need;
            char *grown = realloc(csv, cap);
            if (!grown) die("out of memory writing %s", out);
            csv = grown;
        }
        const float *p = probs + (size_t)i * K;
        int best = 0;
        for (int k = 1; k < K; k++) best = p[k] > p[best] ? k : best;
        len += csv_field(csv + len, name);
        csv[len++] = ',';
        len += csv_field(csv + len, c.class_names[best]);
        len += (size_t)sprintf(csv + len, ",%.6f\n", (double)p[best]);
    }
    if (atomic_write_file(out, csv, len, &e)) goto fail;
    double top1 = 0, top5 = 0;
    int scored = 0;
    if (ds.n_classes == K) { /* labelled images of the same classes: how often the classifier is right */
        scored = classify_accuracy(probs, labels, n, K, &top1, &top5);
        if (scored) printf("accuracy   top-1 %.2f%%  top-5 %.2f%% on the %d labelled images\n", 100 * top1, 100 * top5, scored);
    }
    printf("wrote %s: %d images of %s (%s split), %d classes\n", out, n, ds.root, SPLIT_NAMES[split], K);
    printf("{\"images\": %d, \"split\": \"%s\", \"classes\": %d, \"labelled\": %d, \"top1\": %.6f, \"top5\": %.6f, "
           "\"out\": \"%s\"}\n", n, SPLIT_NAMES[split], K, scored, top1, top5, out);
    rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
    goto out;
fail:
    fprintf(stderr, "byol predict: %s\n", e.msg);
    rc = 1;
out:
    xfree(probs), free(labels), xfree(csv);
    classifier_free(&c);
    dataset_close(&ds);
    return rc;
}
