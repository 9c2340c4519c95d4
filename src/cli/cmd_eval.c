/* byol eval (kNN and linear probe on frozen features), byol export (the encoder alone, with
 * torchvision's names, or as an ONNX model), byol embed (features as .npy). All three read a checkpoint of byol train,
 * whose saved configuration says which model it holds and how images were normalized. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/threads.h"
#include "../data/loader.h"
#include "../eval/features.h"
#include "../eval/knn.h"
#include "../eval/probe.h"
#include "../eval/subset.h"
#include "../io/checkpoint.h"
#include "../io/npy.h"
#include "../io/onnx_export.h"
#include "ckpt_model.h"
#include "commands.h"

/* ---------------------------------------------------------------- byol eval */

static const char *EVAL_USAGE =
    "usage: byol eval --ckpt FILE|DIR [--data PATH] [--dataset NAME] [--eval-resize N]\n"
    "       byol eval --random-init 1 [--ckpt FILE|DIR] [model flags] --data PATH\n"
    "       byol eval --raw-pixels 1 --data PATH\n"
    "Frozen, un-augmented features of the train split (kNN bank, probe training set) and the test\n"
    "split (scored): kNN top-1 (cosine, weights exp(s/T); k at most the bank size) and linear-probe\n"
    "top-1 (multinomial logistic regression on standardized features, L-BFGS to convergence).\n"
    "Images: the largest centred square resized to --image-size (bilinear), or with --eval-resize\n"
    "the short side resized to N (bicubic) and the centred --image-size square taken (torchvision's\n"
    "Resize(256) + CenterCrop(224), the BYOL protocol for 224-px models). The model is the\n"
    "checkpoint's; without --ckpt, byol train's defaults unless model flags say. Last line: JSON.";

int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL;
    ModelConfig asked;
    DataOptions dopt;
    data_options_default(&dopt);
    int random_init = 0, raw_pixels = 0, k = KNN_DEFAULT_K, threads = 0, seed = 0, bank = 0, queries = 0,
        image_size = 0, probe_iters = 0, eval_resize = 0, flip_avg = 0;
    float T = KNN_DEFAULT_T, probe_l2 = -1, label_fraction = 1;
    const char *encoder = "online";
    ComputeOptions po = {NULL, NULL, NULL, NULL};
    Flag flags[32 + COMPUTE_FLAG_COUNT + MODEL_FLAG_COUNT];
    int nf = 0;
    flags[nf++] = (Flag){"ckpt", FLAG_STRING, &ckpt, "checkpoint file, or a run folder (its newest)", 0, -1};
    flags[nf++] = (Flag){"data", FLAG_STRING, &dopt.data, "dataset path (the checkpoint's)", 0, -1};
    flags[nf++] = (Flag){"dataset", FLAG_STRING, &dopt.dataset, "dataset kind (detected)", 0, -1};
    flags[nf++] = (Flag){"random-init", FLAG_INT, &random_init, "1: a freshly initialized encoder of the same shape instead", 0, 1};
    flags[nf++] = (Flag){"raw-pixels", FLAG_INT, &raw_pixels, "1: the normalized pixels as features instead", 0, 1};
    flags[nf++] = (Flag){"knn-k", FLAG_INT, &k, "neighbours (200)", 1, 1000000};
    flags[nf++] = (Flag){"knn-t", FLAG_FLOAT, &T, "temperature (0.1)", 1e-4, 100};
    flags[nf++] = (Flag){"probe-l2", FLAG_FLOAT, &probe_l2, "probe weight decay (1e-4)", 0, 100};
    flags[nf++] = (Flag){"probe-iters", FLAG_INT, &probe_iters, "probe L-BFGS iterations at most (3000)", 1, 1000000};
    flags[nf++] = (Flag){"eval-bank", FLAG_INT, &bank, "train images used, evenly spaced, 0 all (0)", 0, 1 << 30};
    flags[nf++] = (Flag){"eval-queries", FLAG_INT, &queries, "test images scored, 0 all (0)", 0, 1 << 30};
    flags[nf++] = (Flag){"image-size", FLAG_INT, &image_size, "image side, the centre crop with --eval-resize (the checkpoint's)", 1, 4096};
    flags[nf++] = (Flag){"eval-resize", FLAG_INT, &eval_resize, "short side resized to N (bicubic) before the centre crop; 0: largest square (0)", 0, 16384};
    flags[nf++] = (Flag){"label-fraction", FLAG_FLOAT, &label_fraction, "the labelled share of the train split the kNN bank and the probe use, class-balanced, fixed by --seed (1; the paper's 0.01 and 0.1)", -1e9, 1e9};
    flags[nf++] = (Flag){"seed", FLAG_INT, &seed, "seed of --random-init and of --label-fraction's subset (0)", 0, 2147483647};
    flags[nf++] = (Flag){"threads", FLAG_INT, &threads, "threads (the cores this process may use: affinity mask, cgroup quota)", 1, 4096};
    flags[nf++] = (Flag){"encoder", FLAG_STRING, &encoder, "the checkpoint's online encoder, or the target (its EMA; BYOL and DINO) (online)", 0, -1};
    flags[nf++] = (Flag){"flip-avg", FLAG_INT, &flip_avg, "1: each image's features averaged with its mirror's (0)", 0, 1};
    compute_flags(flags + nf, &po);
    nf += COMPUTE_FLAG_COUNT;
    ckpt_model_flags(flags + nf, &asked, 1);
    nf += MODEL_FLAG_COUNT;
    Err e;
    int rc = flags_parse(argc, argv, flags, nf, EVAL_USAGE, &e);
    if (rc == 1) return 0;
    if (rc || model_config_check(&asked, &e) || label_fraction_check(label_fraction, &e))
        return cmd_fail("eval", &e, 2);
    const int use_target = strcmp(encoder, "target") == 0;
    if (!use_target && strcmp(encoder, "online") != 0) {
        fprintf(stderr, "byol eval: --encoder %.64s: online or target\n", encoder);
        return 2;
    }
    if (use_target && (random_init || raw_pixels || !ckpt)) {
        fprintf(stderr, "byol eval: --encoder target: the target encoder of a --ckpt (not with --random-init or "
                        "--raw-pixels)\n");
        return 2;
    }
    if (!ckpt && !random_init && !raw_pixels) {
        fprintf(stderr, "byol eval: --ckpt is required (or --random-init 1 / --raw-pixels 1 with model flags)\n");
        return 2;
    }
    threads_set(threads);
    if (plan_apply(&po, NULL, &e)) return cmd_fail("eval", &e, 2);
    const Backend *be = compute_backend(&po, &e); /* the encoder's forwards; the probe stays on the CPU */
    if (!be) return cmd_fail("eval", &e, 2);
    Loaded L;
    memset(&L, 0, sizeof L);
    if (ckpt && load_checkpoint(&L, ckpt, &asked, argc, argv, &e)) return cmd_fail("eval", &e, 1);
    const int data_from_ckpt = !dopt.data && L.loaded;
    if (data_from_ckpt) dopt.data = L.o.data.data, dopt.dataset = dopt.dataset ? dopt.dataset : L.o.data.dataset;
    Dataset ds;
    if (open_data(&ds, &dopt, data_from_ckpt, ckpt, &e)) {
        if (L.loaded) byol_free(&L.model);
        return cmd_fail("eval", &e, 1);
    }
    rc = 1;
    float *fb = NULL, *fq = NULL;
    int32_t *lb = NULL, *lq = NULL;
    Byol fresh;
    int fresh_built = 0;
    if (!ds.n_classes || !ds.split[SPLIT_TRAIN].labels || !ds.split[SPLIT_TEST].n || !ds.split[SPLIT_TEST].labels) {
        fprintf(stderr, "byol eval: %s has no labelled train and test splits: kNN and the linear probe need labels\n", ds.root);
        goto out;
    }
    FeatureConfig fc = {.image_size = image_size, .std = {1, 1, 1}, .batch = 256, .max_images = bank, .resize = eval_resize,
                        .be = be, .flip_avg = flip_avg && !raw_pixels};
    if (L.loaded) {
        memcpy(fc.mean, L.mean, sizeof fc.mean), memcpy(fc.std, L.std, sizeof fc.std);
        if (!fc.image_size) fc.image_size = L.o.data.image_size;
    } else {
        if (dataset_channel_stats(&ds, SPLIT_TRAIN, 10000, 0, fc.mean, fc.std, &e) < 0) {
            fprintf(stderr, "byol eval: %s\n", e.msg);
            goto out;
        }
    }
    if (!fc.image_size) fc.image_size = dataset_default_image_size(&ds);
    if (check_eval_resize(fc.resize, fc.image_size, &e)) {
        fprintf(stderr, "byol eval: %s\n", e.msg);
        goto out;
    }
    const ResNet *net = NULL;
    const float *params = NULL, *buffers = NULL;
    const char *what = "checkpoint";
    if (raw_pixels) {
        what = "raw pixels";
    } else if (random_init) {
        ModelConfig mc = L.loaded ? L.o.mc : asked;
        mc.enc.in_channels = ds.channels;
        byol_init(&fresh, &mc);
        byol_init_weights(&fresh, (uint64_t)seed);
        fresh_built = 1;
        net = &fresh.encoder, params = fresh.online.params, buffers = fresh.online.buffers;
        what = "untrained encoder";
    } else {
        if (L.o.mc.enc.in_channels != ds.channels) {
            fprintf(stderr, "byol eval: %s has %d-channel images, the checkpoint's encoder takes %d\n", ds.root,
                    ds.channels, L.o.mc.enc.in_channels);
            goto out;
        }
        net = &L.model.encoder, params = L.model.online.params, buffers = L.model.online.buffers;
        if (use_target) {
            if (!L.model.target.n_params) {
                fprintf(stderr, "byol eval: --encoder target: %s is a %s run, which has no target network (its "
                                "online network is its own target)\n", ckpt, method_name(L.model.cfg.method));
                goto out;
            }
            /* the target store mirrors the online one's first tensors, encoder first: same offsets */
            params = L.model.target.params, buffers = L.model.target.buffers;
            what = "target encoder";
        }
    }
    int d;
    double t0 = now_seconds();
    int nb = extract_features(net, params, buffers, &ds, SPLIT_TRAIN, &fc, &fb, &lb, &d, &e);
    fc.max_images = queries;
    int nq = nb < 0 ? -1 : extract_features(net, params, buffers, &ds, SPLIT_TEST, &fc, &fq, &lq, &d, &e);
    if (nq < 0) {
        fprintf(stderr, "byol eval: %s\n", e.msg);
        goto out;
    }
    double t_feat = now_seconds() - t0;
    if (label_fraction != 1) { /* the labelled fraction: the bank's rows compacted in place */
        int32_t *idx = xmalloc((size_t)nb * sizeof *idx, "the labelled subset");
        const int ns = label_subset(lb, nb, ds.n_classes, label_fraction, (uint64_t)seed, ds.class_names, idx, &e);
        if (ns < 0) {
            xfree(idx);
            fprintf(stderr, "byol eval: %s\n", e.msg);
            goto out;
        }
        for (int i = 0; i < ns; i++) {
            memmove(fb + (size_t)i * d, fb + (size_t)idx[i] * d, (size_t)d * sizeof(float));
            lb[i] = lb[idx[i]];
        }
        printf("labels     %d of %d train images (--label-fraction %g, class-balanced, seed %d)\n", ns, nb,
               (double)label_fraction, seed);
        nb = ns;
        xfree(idx);
    }
    double knn5 = 0;
    double knn = knn_accuracy(fb, lb, nb, fq, lq, nq, d, ds.n_classes, k, T, 5, &knn5, &e);
    if (knn < 0) {
        fprintf(stderr, "byol eval: %s\n", e.msg);
        goto out;
    }
    ProbeConfig pc;
    probe_config_default(&pc);
    if (probe_l2 >= 0) pc.l2 = probe_l2;
    if (probe_iters) pc.max_iter = probe_iters;
    ProbeReport pr;
    double t1 = now_seconds();
    double probe = probe_top1(fb, lb, nb, fq, lq, nq, d, ds.n_classes, &pc, &pr, &e);
    if (probe < 0) {
        fprintf(stderr, "byol eval: %s\n", e.msg);
        goto out;
    }
    char prep[128], kdesc[128];
    feature_preprocess_name(&fc, prep, sizeof prep);
    const int k_used = knn_effective_k(k, nb);
    if (k_used < k)
        snprintf(kdesc, sizeof kdesc, "k %d: --knn-k %d capped at the %d-image bank", k_used, k, nb);
    else
        snprintf(kdesc, sizeof kdesc, "k %d", k);
    printf("features   %s: %d train (bank) + %d test images, %d dims, %dx%d (%s), %.1f s\n", what, nb, nq, d,
           fc.image_size, fc.image_size, prep, t_feat);
    printf("kNN        top-1 %.2f%%  top-5 %.2f%%  (%s, T %g, cosine)\n", 100 * knn, 100 * knn5, kdesc, T);
    printf("linear     top-1 %.2f%%  top-5 %.2f%%  (train %.2f%%, %d L-BFGS iterations%s, l2 %g, %.1f s)\n",
           100 * probe, 100 * pr.test_top5, 100 * pr.train_top1, pr.iterations,
           pr.converged ? ", converged" : ", NOT converged", pc.l2, now_seconds() - t1);
    printf("{\"what\": \"%s\", \"ckpt\": \"%s\", \"step\": %lld, \"dataset\": \"%s\", \"train\": %d, \"test\": %d, "
           "\"dim\": %d, \"image_size\": %d, \"eval_resize\": %d, \"knn_top1\": %.6f, \"knn_top5\": %.6f, \"knn_k\": %d, "
           "\"knn_k_asked\": %d, \"knn_t\": %g, \"linear_top1\": %.6f, \"linear_top5\": %.6f, \"probe_iterations\": %d, "
           "\"probe_converged\": %s, \"label_fraction\": %g, \"encoder\": \"%s\", \"flip_avg\": %d}\n",
           what, ckpt && !raw_pixels && !random_init ? ckpt : "", (long long)L.step, ds.kind, nb, nq, d, fc.image_size,
           fc.resize, knn, knn5, k_used, k, T, probe, pr.test_top5, pr.iterations, pr.converged ? "true" : "false",
           (double)label_fraction, use_target ? "target" : "online", fc.flip_avg);
    rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
out:
    xfree(fb), xfree(fq), free(lb), free(lq);
    if (fresh_built) byol_free(&fresh);
    if (L.loaded) byol_free(&L.model);
    dataset_close(&ds);
    return rc;
}

/* ---------------------------------------------------------------- byol export */

static const char *EXPORT_USAGE =
    "usage: byol export --ckpt FILE|DIR --out encoder.safetensors|encoder.onnx [--format safetensors|onnx]\n"
    "The online encoder alone. safetensors (the default): torchvision's names and layouts (conv1.weight,\n"
    "bn1.*, layer1.0.*, ...), loadable by torchvision.models.resnetNN() with load_state_dict(strict=False),\n"
    "which then reports only fc.* missing (replace conv1 and maxpool first for the cifar stem). onnx\n"
    "(also chosen by an --out ending in .onnx): an ONNX model (opset 13), input \"input\" float32\n"
    "[N, C, S, S], output \"features\" [N, d] (byol embed's features). Either file's metadata says how\n"
    "to feed it: arch, width, stem, in_channels, image_size (the training side), mean and std (per\n"
    "channel, of pixels in [0, 1]: x = (pixel / 255 - mean) / std).";

/* The encoder's tensors with torchvision's names, plus the num_batches_tracked counters
 * torchvision's BatchNorm carries, as a safetensors file. */
static int export_safetensors(const Loaded *L, const char *out, const StMeta *meta, int n_meta, int *n_tensors,
                              Err *e) {
    const ParamStore *s = &L->model.online;
    const char *prefix = "online.encoder.";
    const size_t plen = strlen(prefix);
    int n = 0, nbn = 0;
    for (int i = 0; i < s->n_specs; i++)
        if (strncmp(s->specs[i].name, prefix, plen) == 0) n++, nbn += strstr(s->specs[i].name, "running_var") != NULL;
    StTensorOut *ts = calloc((size_t)(n + nbn), sizeof *ts);
    char (*names)[TENSOR_NAME_LEN] = calloc((size_t)(n + nbn), TENSOR_NAME_LEN);
    float **data = calloc((size_t)n, sizeof *data);
    int64_t *tracked = calloc((size_t)(nbn ? nbn : 1), sizeof *tracked);
    if (!ts || !names || !data || !tracked) die("out of memory exporting %s", out);
    int j = 0, jb = 0;
    for (int i = 0; i < s->n_specs; i++) {
        const TensorSpec *t = &s->specs[i];
        if (strncmp(t->name, prefix, plen) != 0) continue;
        data[j] = xmalloc(t->numel * sizeof(float), "export");
        tensor_to_torch(t, data[j], store_data(s, t));
        snprintf(names[j], TENSOR_NAME_LEN, "%s", t->name + plen);
        ts[j] = (StTensorOut){names[j], t->ndim, t->shape, data[j], 0};
        j++;
        const char *rv = strstr(t->name, "running_var");
        if (rv) { /* torchvision's BatchNorm also carries num_batches_tracked (int64, 0-d) */
            tracked[jb] = 2 * L->step;
            snprintf(names[n + jb], TENSOR_NAME_LEN, "%.*snum_batches_tracked", (int)(rv - t->name - plen), t->name + plen);
            ts[n + jb] = (StTensorOut){names[n + jb], 0, NULL, &tracked[jb], 1};
            jb++;
        }
    }
    const int rc = st_write(out, ts, n + nbn, meta, n_meta, e);
    *n_tensors = n + nbn;
    for (int i = 0; i < n; i++) xfree(data[i]);
    free(ts), free(names), free(data), free(tracked);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *format = NULL;
    ModelConfig asked;
    Flag flags[3 + MODEL_FLAG_COUNT] = {
        {"ckpt", FLAG_STRING, &ckpt, "checkpoint file, or a run folder (its newest)", 0, -1},
        {"out", FLAG_STRING, &out, "output file", 0, -1},
        {"format", FLAG_STRING, &format, "safetensors or onnx (onnx when --out ends in .onnx, else safetensors)", 0, -1},
    };
    ckpt_model_flags(flags + 3, &asked, 0);
    Err e;
    int rc = flags_parse(argc, argv, flags, 3 + MODEL_FLAG_COUNT, EXPORT_USAGE, &e);
    if (rc == 1) return 0;
    if (rc) return cmd_fail("export", &e, 2);
    if (!ckpt || !out) {
        fprintf(stderr, "byol export: --ckpt and --out are required (see --help)\n");
        return 2;
    }
    /* refused before the checkpoint is read, so a typo costs nothing and writes nothing */
    if (!format) format = ends_with(out, ".onnx") ? "onnx" : "safetensors";
    const int onnx = strcmp(format, "onnx") == 0;
    if (!onnx && strcmp(format, "safetensors") != 0) {
        fprintf(stderr, "byol export: --format: unknown format '%s' (safetensors, onnx)\n", format);
        return 2;
    }
    Loaded L;
    memset(&L, 0, sizeof L);
    if (load_checkpoint(&L, ckpt, &asked, argc, argv, &e)) return cmd_fail("export", &e, 1);
    char arch[64];
    snprintf(arch, sizeof arch, "%s", arch_name(L.o.mc.enc.arch));
    char width[16], stem[16], inch[16];
    snprintf(width, sizeof width, "%d", L.o.mc.enc.width);
    snprintf(stem, sizeof stem, "%s", stem_name(L.o.mc.enc.stem));
    snprintf(inch, sizeof inch, "%d", L.o.mc.enc.in_channels);
    /* What a user needs to feed the encoder: the normalization it was trained with and the
     * image side. Same formats as the checkpoint's byol.mean / byol.std: 3 numbers (the unused
     * ones of a 1-channel model are 0 and 1). */
    char size[16], mean[96], std[96];
    snprintf(size, sizeof size, "%d", L.o.data.image_size);
    snprintf(mean, sizeof mean, "%.9g %.9g %.9g", L.mean[0], L.mean[1], L.mean[2]);
    snprintf(std, sizeof std, "%.9g %.9g %.9g", L.std[0], L.std[1], L.std[2]);
    StMeta meta[] = {{"arch", arch}, {"width", width}, {"stem", stem}, {"in_channels", inch},
                     {"image_size", size}, {"mean", mean}, {"std", std}};
    int n_tensors = 0;
    if (onnx)
        rc = onnx_export_encoder(&L.model.encoder, &L.model.online, "online.encoder.", L.o.data.image_size, meta,
                                 (int)ARRAY_LEN(meta), out, &e);
    else
        rc = export_safetensors(&L, out, meta, (int)ARRAY_LEN(meta), &n_tensors, &e);
    if (rc) fprintf(stderr, "byol export: %s\n", e.msg);
    else if (onnx)
        printf("wrote %s: ONNX (opset %d), %s width %d, %s stem; input [N, %d, %d, %d], output features [N, %d]; "
               "mean %s, std %s\n", out, ONNX_OPSET, arch, L.o.mc.enc.width, stem, L.o.mc.enc.in_channels,
               L.o.data.image_size, L.o.data.image_size, L.model.encoder.out_dim, mean, std);
    else
        printf("wrote %s: %s width %d, %s stem, %d tensors (%d dims out); inputs %dx%d, mean %s, std %s\n", out, arch,
               L.o.mc.enc.width, stem, n_tensors, L.model.encoder.out_dim, L.o.data.image_size, L.o.data.image_size,
               mean, std);
    byol_free(&L.model);
    return rc ? 1 : 0;
}

/* ---------------------------------------------------------------- byol embed */

static const char *EMBED_USAGE =
    "usage: byol embed --ckpt FILE|DIR [--data PATH] [--dataset NAME] --out features.npy [--labels labels.npy]\n"
    "                  [--names names.txt] [--split train|test|unlabeled] [--eval-resize N]\n"
    "Pooled encoder features (evaluation-mode batch norm) of un-augmented images (as byol eval\n"
    "makes them) of the train split unless --split says: float32 [N, d]; labels as int64 [N] (-1\n"
    "where none); names one a line, aligned with the rows (an image folder's files relative to it,\n"
    "else split/index). --data defaults to the checkpoint's.";

/* The names file, written whole to a temporary and renamed (never half a file). */
static int write_names(const char *path, const Dataset *ds, Split split, int n, Err *e) {
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    if (!text) die("out of memory writing %s", path);
    for (int i = 0; i < n; i++) {
        char name[4600];
        image_name(ds, split, i, name, sizeof name);
        const size_t k = strlen(name);
        if (strchr(name, '\n')) return free(text), err_set(e, "%s: an image's name holds a newline: %.200s", path, name);
        if (len + k + 2 > cap) {
            cap = 2 * (len + k + 2);
            char *grown = realloc(text, cap);
            if (!grown) die("out of memory writing %s", path);
            text = grown;
        }
        memcpy(text + len, name, k);
        len += k;
        text[len++] = '\n';
    }
    const int rc = atomic_write_file(path, text, len, e);
    free(text);
    return rc;
}

int cmd_embed(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *labels_out = NULL, *names_out = NULL, *split_name = "train";
    ModelConfig asked;
    DataOptions dopt;
    data_options_default(&dopt);
    int threads = 0, eval_resize = 0;
    ComputeOptions po = {NULL, NULL, NULL, NULL};
    Flag flags[9 + COMPUTE_FLAG_COUNT + MODEL_FLAG_COUNT] = {
        {"ckpt", FLAG_STRING, &ckpt, "checkpoint file, or a run folder (its newest)", 0, -1},
        {"data", FLAG_STRING, &dopt.data, "dataset path (the checkpoint's)", 0, -1},
        {"dataset", FLAG_STRING, &dopt.dataset, "dataset kind (detected)", 0, -1},
        {"out", FLAG_STRING, &out, "features .npy", 0, -1},
        {"labels", FLAG_STRING, &labels_out, "labels .npy (optional)", 0, -1},
        {"names", FLAG_STRING, &names_out, "each row's image, one a line: a folder's file relative to it, else split/index (optional)", 0, -1},
        {"split", FLAG_STRING, &split_name, "train, test or unlabeled (train)", 0, -1},
        {"threads", FLAG_INT, &threads, "threads (the cores this process may use: affinity mask, cgroup quota)", 1, 4096},
        {"eval-resize", FLAG_INT, &eval_resize, "short side resized to N (bicubic) before the centre crop; 0: largest square (0)", 0, 16384},
    };
    compute_flags(flags + 9, &po);
    ckpt_model_flags(flags + 9 + COMPUTE_FLAG_COUNT, &asked, 0);
    Err e;
    int rc = flags_parse(argc, argv, flags, 9 + COMPUTE_FLAG_COUNT + MODEL_FLAG_COUNT, EMBED_USAGE, &e);
    if (rc == 1) return 0;
    if (rc) return cmd_fail("embed", &e, 2);
    if (!ckpt || !out) {
        fprintf(stderr, "byol embed: --ckpt and --out are required (see --help)\n");
        return 2;
    }
    Split split;
    if (split_parse(split_name, &split)) {
        fprintf(stderr, "byol embed: --split: unknown split '%s' (train, test, unlabeled)\n", split_name);
        return 2;
    }
    threads_set(threads);
    if (plan_apply(&po, NULL, &e)) return cmd_fail("embed", &e, 2);
    const Backend *be = compute_backend(&po, &e);
    if (!be) return cmd_fail("embed", &e, 2);
    Loaded L;
    memset(&L, 0, sizeof L);
    if (load_checkpoint(&L, ckpt, &asked, argc, argv, &e)) return cmd_fail("embed", &e, 1);
    const int data_from_ckpt = !dopt.data;
    if (data_from_ckpt) dopt.data = L.o.data.data, dopt.dataset = dopt.dataset ? dopt.dataset : L.o.data.dataset;
    Dataset ds;
    if (open_data(&ds, &dopt, data_from_ckpt, ckpt, &e)) {
        byol_free(&L.model);
        return cmd_fail("embed", &e, 1);
    }
    rc = 1;
    float *f = NULL;
    int32_t *lab = NULL;
    int64_t *lab64 = NULL;
    FeatureConfig fc;
    if (run_feature_config(&L, &ds, eval_resize, be, &fc, &e)) {
        fprintf(stderr, "byol embed: %s\n", e.msg);
        goto out;
    }
    int d, n = extract_features(&L.model.encoder, L.model.online.params, L.model.online.buffers, &ds, split, &fc,
                                &f, &lab, &d, &e);
    if (n < 0) {
        fprintf(stderr, "byol embed: %s\n", e.msg);
        goto out;
    }
    int64_t shape[2] = {n, d};
    if (npy_write_f32(out, f, 2, shape, &e)) {
        fprintf(stderr, "byol embed: %s\n", e.msg);
        goto out;
    }
    if (labels_out) {
        lab64 = malloc(sizeof *lab64 * (size_t)n);
        if (!lab64) die("out of memory");
        for (int i = 0; i < n; i++) lab64[i] = lab[i];
        if (npy_write_i64(labels_out, lab64, 1, shape, &e)) {
            fprintf(stderr, "byol embed: %s\n", e.msg);
            goto out;
        }
    }
    if (names_out && write_names(names_out, &ds, split, n, &e)) {
        fprintf(stderr, "byol embed: %s\n", e.msg);
        goto out;
    }
    char prep[128];
    feature_preprocess_name(&fc, prep, sizeof prep);
    printf("wrote %s: %d x %d features of the %s split (%s)%s%s%s%s\n", out, n, d, SPLIT_NAMES[split], prep,
           labels_out ? ", labels in " : "", labels_out ? labels_out : "", names_out ? ", names in " : "",
           names_out ? names_out : "");
    rc = 0;
out:
    xfree(f), free(lab), free(lab64);
    byol_free(&L.model);
    dataset_close(&ds);
    return rc;
}
