/* byol neighbors: the retrieval grid, test images and their nearest train images by the
 * encoder's features, the picture that makes a person trust an encoder, or not. */
#include <cjson/cJSON.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/threads.h"
#include "../eval/features.h"
#include "../eval/neighbors_grid.h"
#include "../eval/retrieval.h"
#include "ckpt_model.h"
#include "commands.h"

static const char *NEIGHBORS_USAGE =
    "usage: byol neighbors --ckpt FILE|DIR [--data PATH] --out grid.png [--queries 8] [--k 8] [--seed S] [--cell 64]\n"
    "                      [--captions 1] [--eval-resize N] [--threads N]\n"
    "A retrieval grid: each row a test image, then its k nearest train images by cosine similarity of the\n"
    "encoder's features (as byol embed computes them), best first; a green frame where a neighbour has the\n"
    "query's label, red where not (no frame without labels). The queries are a sample of the test split fixed\n"
    "by --seed; without a test split they come from the train split and never retrieve themselves. Pictures\n"
    "are shown as the encoder saw them (un-augmented, before normalization), enlarged by pixel replication\n"
    "(shrunk by averaging). The grid wraps into blocks side by side past 8192 pixels of height.\n"
    "Prints a line per query; last line JSON with precision@k (the share of neighbours with the query's label).";

static int fail(const char *msg, int status) {
    fprintf(stderr, "byol neighbors: %s\n", msg);
    return status;
}

/* --out must be a .png in a folder that exists and can be written, and not a folder itself:
 * refused before the minutes of feature extraction, not after. */
static int check_out(const char *out, Err *e) {
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        return err_set(e, "--out %s is a folder: give a file name ending .png", out);
    const char *ext = strrchr(out, '.');
    if (!ext || strchr(ext, '/') || strcasecmp(ext, ".png") != 0)
        return err_set(e, "--out %s: the grid is written as PNG: name it .png", out);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out);
    if (access(dirname(dir), W_OK) != 0)
        return err_set(e, "--out %s: its folder does not exist or is not writable", out);
    return 0;
}

/* The pictures of split s's rows as neighbors_display_image draws them, one after another. */
static uint8_t *pictures(const Dataset *ds, Split s, const int *rows, int n, const FeatureConfig *fc, Err *e) {
    const size_t per = (size_t)fc->image_size * fc->image_size * ds->channels;
    uint8_t *px = xmalloc((size_t)n * per, "pictures");
    Image img = {0};
    AugScratch scratch = {0};
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = neighbors_display_image(px + i * per, ds, s, rows[i], fc, &img, &scratch, e);
    image_free(&img);
    aug_scratch_free(&scratch);
    if (rc) xfree(px);
    return rc ? NULL : px;
}

int cmd_neighbors(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL;
    ModelConfig asked;
    DataOptions dopt;
    data_options_default(&dopt);
    int queries = 8, k = 8, seed = 0, cell = 64, captions = 1, threads = 0, eval_resize = 0;
    ComputeOptions po = {NULL, NULL, NULL, NULL};
    enum { OWN = 11 };
    Flag flags[OWN + COMPUTE_FLAG_COUNT + MODEL_FLAG_COUNT] = {
        {"ckpt", FLAG_STRING, &ckpt, "checkpoint file, or a run folder (its newest)", 0, -1},
        {"data", FLAG_STRING, &dopt.data, "dataset path (the checkpoint's)", 0, -1},
        {"dataset", FLAG_STRING, &dopt.dataset, "dataset kind (detected)", 0, -1},
        {"out", FLAG_STRING, &out, "the grid, .png", 0, -1},
        {"queries", FLAG_INT, &queries, "rows: test images, a sample fixed by --seed, at most the split's size (8)", 1,
         1 << 30},
        {"k", FLAG_INT, &k, "neighbours per query, at most the train split's size (8)", 1, 1 << 30},
        {"seed", FLAG_INT, &seed, "which queries (0)", 0, 2147483647},
        {"cell", FLAG_INT, &cell, "a picture's side in the grid, pixels (64)", 8, 1024},
        {"captions", FLAG_INT, &captions, "1: class names and similarities under the pictures (1)", 0, 1},
        {"eval-resize", FLAG_INT, &eval_resize,
         "short side resized to N (bicubic) before the centre crop; 0: largest square (0)", 0, 16384},
        {"threads", FLAG_INT, &threads, "threads (the cores this process may use: affinity mask, cgroup quota)", 1,
         4096},
    };
    compute_flags(flags + OWN, &po);
    ckpt_model_flags(flags + OWN + COMPUTE_FLAG_COUNT, &asked, 0);
    Err e;
    int rc = flags_parse(argc, argv, flags, OWN + COMPUTE_FLAG_COUNT + MODEL_FLAG_COUNT, NEIGHBORS_USAGE, &e);
    if (rc == 1) return 0;
    if (rc) return cmd_fail("neighbors", &e, 2);
    if (!ckpt || !out) return fail("--ckpt and --out are required (see --help)", 2);
    if (check_out(out, &e)) return cmd_fail("neighbors", &e, 2);
    threads_set(threads);
    if (plan_apply(&po, NULL, &e)) return cmd_fail("neighbors", &e, 2);
    const Backend *be = compute_backend(&po, &e);
    if (!be) return cmd_fail("neighbors", &e, 2);
    const double t0 = now_seconds();
    Loaded L;
    memset(&L, 0, sizeof L);
    if (load_checkpoint(&L, ckpt, &asked, argc, argv, &e)) return cmd_fail("neighbors", &e, 1);
    const int data_from_ckpt = !dopt.data;
    if (data_from_ckpt) dopt.data = L.o.data.data, dopt.dataset = dopt.dataset ? dopt.dataset : L.o.data.dataset;
    Dataset ds, view;
    if (open_data(&ds, &dopt, data_from_ckpt, ckpt, &e)) {
        byol_free(&L.model);
        return cmd_fail("neighbors", &e, 1);
    }
    rc = 1;
    /* Without a test split the bank doubles as the query pool, and a query must not find itself. */
    const int n_bank = ds.split[SPLIT_TRAIN].n, from_train = ds.split[SPLIT_TEST].n < 1;
    const Split qs = from_train ? SPLIT_TRAIN : SPLIT_TEST;
    int view_made = 0, *qrows = NULL, *exclude = NULL, *idx = NULL;
    float *fb = NULL, *fq = NULL, *sim = NULL;
    int32_t *lb = NULL, *lq = NULL, *nlab = NULL;
    uint8_t *qpx = NULL, *npx = NULL;
    FeatureConfig fc;
    if (run_feature_config(&L, &ds, eval_resize, be, &fc, &e)) {
        fail(e.msg, 1);
        goto out;
    }
    const int n_pool = ds.split[qs].n, k_max = n_bank - from_train;
    if (n_bank < 1) {
        err_set(&e, "%s: the train split (the bank) is empty", ds.root);
        fail(e.msg, 1);
        goto out;
    }
    if (queries > n_pool) {
        err_set(&e, "--queries %d: the %s split of %s holds %d images: give at most %d", queries, SPLIT_NAMES[qs],
                ds.root, n_pool, n_pool);
        rc = fail(e.msg, 2);
        goto out;
    }
    if (k > k_max) {
        err_set(&e, "--k %d: the train split of %s holds %d images%s: give at most %d", k, ds.root, n_bank,
                from_train ? " and a query may not return itself" : "", k_max);
        rc = fail(e.msg, 2);
        goto out;
    }
    const int labelled = ds.n_classes > 0 && ds.split[SPLIT_TRAIN].labels && ds.split[qs].labels;
    NeighborsGrid g = {.rows = queries,
                       .k = k,
                       .side = fc.image_size,
                       .channels = ds.channels,
                       .cell = cell,
                       .n_classes = ds.n_classes};
    /* The layout only asks whether there are similarities to caption; they come later. */
    static const float sim_to_come = 0;
    if (captions) g.class_names = labelled ? (const char *const *)ds.class_names : NULL, g.sim = &sim_to_come;
    NeighborsLayout lay;
    if (neighbors_layout(&g, &lay, &e)) { /* too large a grid is known before any image is read */
        rc = fail(e.msg, 2);
        goto out;
    }
    idx = xmalloc((size_t)queries * k * sizeof(int), "neighbours");
    sim = xmalloc((size_t)queries * k * sizeof(float), "neighbours");
    if (captions) g.sim = sim;

    qrows = xmalloc((size_t)queries * sizeof(int), "query indices");
    retrieval_pick(n_pool, queries, (uint64_t)seed, qrows);
    int d;
    const ResNet *net = &L.model.encoder;
    const float *params = L.model.online.params, *buffers = L.model.online.buffers;
    if (extract_features(net, params, buffers, &ds, SPLIT_TRAIN, &fc, &fb, &lb, &d, &e) < 0) {
        fail(e.msg, 1);
        goto out;
    }
    if (from_train) {
        fq = xmalloc((size_t)queries * d * sizeof(float), "query features");
        lq = malloc((size_t)queries * sizeof(int32_t));
        exclude = xmalloc((size_t)queries * sizeof(int), "query indices");
        if (!lq) die("out of memory");
        for (int i = 0; i < queries; i++) {
            memcpy(fq + (size_t)i * d, fb + (size_t)qrows[i] * d, (size_t)d * sizeof(float));
            lq[i] = lb[qrows[i]], exclude[i] = qrows[i];
        }
    } else {
        dataset_split_view(&view, &ds, qs, qrows, queries);
        view_made = 1;
        int dq;
        if (extract_features(net, params, buffers, &view, qs, &fc, &fq, &lq, &dq, &e) < 0) {
            fail(e.msg, 1);
            goto out;
        }
    }
    const double t_feat = now_seconds() - t0;
    if (retrieval_topk(fb, n_bank, fq, queries, d, k, exclude, idx, sim, &e)) {
        fail(e.msg, 1);
        goto out;
    }
    nlab = malloc((size_t)queries * k * sizeof(int32_t));
    if (!nlab) die("out of memory");
    for (size_t i = 0; i < (size_t)queries * k; i++) nlab[i] = lb[idx[i]];
    qpx = pictures(&ds, qs, qrows, queries, &fc, &e);
    npx = qpx ? pictures(&ds, SPLIT_TRAIN, idx, queries * k, &fc, &e) : NULL;
    if (!npx) {
        fail(e.msg, 1);
        goto out;
    }
    g.query = qpx, g.neighbor = npx;
    if (labelled) g.query_label = lq, g.neighbor_label = nlab;
    if (neighbors_grid_write(&g, out, &e)) {
        fail(e.msg, 1);
        goto out;
    }

    const double prec = labelled ? retrieval_precision(idx, queries, k, lb, lq) : -1;
    char prep[128], name[4200];
    feature_preprocess_name(&fc, prep, sizeof prep);
    printf("%d %s images (seed %d)%s against the %d train images: the %d nearest by cosine of %d-d features (%s), %.1f "
           "s\n",
           queries, SPLIT_NAMES[qs], seed,
           from_train ? " (no test split: the queries come from the train split and never retrieve themselves)" : "",
           n_bank, k, d, prep, t_feat);
    for (int q = 0; q < queries; q++) {
        image_name(&ds, qs, qrows[q], name, sizeof name);
        const int ql = lq[q];
        int same = 0;
        for (int j = 0; j < k; j++) same += ql >= 0 && nlab[(size_t)q * k + j] == ql;
        printf("query %d %s", q + 1, name);
        if (labelled && ql >= 0)
            printf(" [%s] %d/%d:", ds.class_names[ql], same, k);
        else
            printf(" (no label):");
        for (int j = 0; j < k; j++) {
            const size_t at = (size_t)q * k + j;
            image_name(&ds, SPLIT_TRAIN, idx[at], name, sizeof name);
            printf("%s %s", j ? "," : "", name);
            if (labelled && nlab[at] >= 0) printf(" %s", ds.class_names[nlab[at]]);
            printf(" %.4f", (double)sim[at]);
        }
        printf("\n");
    }
    printf("wrote %s: %dx%d, a row per query: the query (dark frame), then its %d nearest train images, best first%s\n",
           out, lay.w, lay.h, k, labelled ? " (green: the query's label, red: another)" : " (no labels: no frames)");
    if (prec >= 0) printf("precision@%d %.4f (%d queries)\n", k, prec, queries);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "queries", queries);
    cJSON_AddNumberToObject(j, "k", k);
    if (prec >= 0)
        cJSON_AddNumberToObject(j, "precision_at_k", round(prec * 1e6) / 1e6);
    else
        cJSON_AddNullToObject(j, "precision_at_k");
    cJSON_AddStringToObject(j, "output", out);
    cJSON_AddStringToObject(j, "query_split", SPLIT_NAMES[qs]);
    cJSON_AddNumberToObject(j, "bank", n_bank);
    cJSON_AddNumberToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "dim", d);
    cJSON_AddNumberToObject(j, "step", (double)L.step);
    cJSON_AddNumberToObject(j, "seconds", round((now_seconds() - t0) * 10) / 10);
    char *line = cJSON_PrintUnformatted(j);
    printf("%s\n", line);
    free(line);
    cJSON_Delete(j);
    rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : fail("cannot write to standard output", 1);
out:
    if (view_made) dataset_split_view_free(&view, qs);
    xfree(qrows), xfree(exclude), xfree(idx), xfree(fb), xfree(fq), xfree(sim), xfree(qpx), xfree(npx);
    free(lb), free(lq), free(nlab);
    byol_free(&L.model);
    dataset_close(&ds);
    return rc;
}
