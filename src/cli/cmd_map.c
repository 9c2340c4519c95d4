/* byol map: a 2-D map (PCA or t-SNE) of a run's encoder features on the test split, coloured by
 * class, as PNG and SVG. The features are byol embed's; the maths is src/eval/embed_map.c, the
 * figure src/eval/map_plot.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/threads.h"
#include "../eval/embed_map.h"
#include "../eval/features.h"
#include "../eval/map_plot.h"
#include "ckpt_model.h"
#include "commands.h"

static const char *MAP_USAGE =
    "usage: byol map --ckpt FILE|DIR [--data PATH] [--dataset NAME] --out map.png [--svg map.svg]\n"
    "                [--method pca|tsne] [--points 5000] [--perplexity 30] [--iters 1000] [--tsne-exact]\n"
    "                [--init pca|random] [--seed 0] [--eval-resize N] [--threads N]\n"
    "A 2-D map of the encoder's features (as byol embed computes them) of the test split (the train\n"
    "split when there is none), --points images evenly spaced, coloured by class with a legend.\n"
    "pca: the top two principal components. tsne: t-SNE as scikit-learn runs it (PCA to 50 dims\n"
    "first, early exaggeration 12 for 250 iterations, learning rate max(N / 48, 50), PCA\n"
    "initialisation), exact up to 2000 points and Barnes-Hut (theta 0.5) above. The PNG and the SVG\n"
    "(--out with .svg for .png unless --svg) are written together or not at all. Last line: JSON\n"
    "with the share of points whose 10 nearest neighbours in the map mostly share their class.";

static void tsne_progress(int iter, double kl, void *ctx) {
    const double *t0 = ctx;
    if (iter % 250 == 0) {
        printf("t-SNE      iteration %d, KL %.4f%s, %.1f s\n", iter, kl, iter <= 250 ? " (exaggerated P)" : "",
               now_seconds() - *t0);
        fflush(stdout);
    }
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void json_number_or_null(double v) {
    if (v >= 0)
        printf("%.6f", v);
    else
        printf("null");
}

int cmd_map(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *svg_arg = NULL, *method = "tsne", *init = "pca";
    ModelConfig asked;
    DataOptions dopt;
    data_options_default(&dopt);
    int points = 5000, threads = 0, seed = 0, iters = 1000, exact = 0, eval_resize = 0;
    float perplexity = 30;
    ComputeOptions po = {NULL, NULL, NULL, NULL};
    enum { NF = 14 };
    Flag flags[NF + COMPUTE_FLAG_COUNT + MODEL_FLAG_COUNT] = {
        {"ckpt", FLAG_STRING, &ckpt, "checkpoint file, or a run folder (its newest)", 0, -1},
        {"data", FLAG_STRING, &dopt.data, "dataset path (the checkpoint's)", 0, -1},
        {"dataset", FLAG_STRING, &dopt.dataset, "dataset kind (detected)", 0, -1},
        {"out", FLAG_STRING, &out, "the PNG", 0, -1},
        {"svg", FLAG_STRING, &svg_arg, "the SVG (--out with .svg for .png)", 0, -1},
        {"method", FLAG_STRING, &method, "pca or tsne (tsne)", 0, -1},
        {"points", FLAG_INT, &points, "images mapped, evenly spaced over the split (5000)", 0, -1},
        {"perplexity", FLAG_FLOAT, &perplexity, "t-SNE's effective number of neighbours (30)", 0, -1},
        {"iters", FLAG_INT, &iters, "t-SNE iterations, the 250 exaggerated ones included (1000)", 1, 1000000},
        {"tsne-exact", FLAG_SWITCH, &exact, "exact O(N^2) gradients whatever N (exact up to 2000 points)", 0, 1},
        {"init", FLAG_STRING, &init, "t-SNE's start: pca or random (pca; random draws from --seed)", 0, -1},
        {"seed", FLAG_INT, &seed, "seed of --init random (0)", 0, 2147483647},
        {"threads", FLAG_INT, &threads, "threads (the cores this process may use: affinity mask, cgroup quota)", 1, 4096},
        {"eval-resize", FLAG_INT, &eval_resize, "short side resized to N (bicubic) before the centre crop; 0: largest square (0)", 0, 16384},
    };
    const int nfixed = NF;
    compute_flags(flags + nfixed, &po);
    ckpt_model_flags(flags + nfixed + COMPUTE_FLAG_COUNT, &asked, 0);
    int nf = nfixed + COMPUTE_FLAG_COUNT + MODEL_FLAG_COUNT;
    /* --method is the map's (pca, tsne) here: the model flag of that name (byol, simsiam, dino)
     * is left out, the checkpoint says which it is anyway */
    for (int i = nfixed; i < nf; i++)
        if (!strcmp(flags[i].name, "method")) {
            memmove(flags + i, flags + i + 1, sizeof(Flag) * (size_t)(nf - i - 1));
            nf--;
            break;
        }
    Err e;
    int rc = flags_parse(argc, argv, flags, nf, MAP_USAGE, &e);
    if (rc == 1) return 0;
    if (rc) return cmd_fail("map", &e, 2);
    if (!ckpt || !out) {
        fprintf(stderr, "byol map: --ckpt and --out are required (see --help)\n");
        return 2;
    }
    const int tsne = !strcmp(method, "tsne");
    if (!tsne && strcmp(method, "pca")) {
        fprintf(stderr, "byol map: --method %s: unknown method (pca or tsne)\n", method);
        return 2;
    }
    if (strcmp(init, "pca") && strcmp(init, "random")) {
        fprintf(stderr, "byol map: --init %s: unknown start (pca or random)\n", init);
        return 2;
    }
    if (points < 2) {
        fprintf(stderr, "byol map: --points %d: a map needs at least 2 points (5000 is the default)\n", points);
        return 2;
    }
    if (!(perplexity > 0) || !isfinite(perplexity)) {
        fprintf(stderr, "byol map: --perplexity %g: must be positive (5 to 50 is usual, 30 the default)\n", (double)perplexity);
        return 2;
    }
    if (tsne && points < tsne_min_points(perplexity)) {
        fprintf(stderr,
                "byol map: --points %d is too few for --perplexity %g: t-SNE needs at least 3 x perplexity + 1 = %d points; "
                "lower --perplexity to at most %.4g or raise --points\n",
                points, (double)perplexity, tsne_min_points(perplexity), floor((points - 1) / 3.0 * 1e4) / 1e4);
        return 2;
    }
    /* the SVG beside the PNG: map.png -> map.svg, anything else gets .svg appended */
    char svg[4200];
    const size_t ol = strlen(out);
    if (svg_arg)
        snprintf(svg, sizeof svg, "%s", svg_arg);
    else if (ol >= 4 && !strcasecmp(out + ol - 4, ".png"))
        snprintf(svg, sizeof svg, "%.*s.svg", (int)(ol - 4), out);
    else
        snprintf(svg, sizeof svg, "%s.svg", out);
    if (!strcmp(svg, out)) {
        fprintf(stderr, "byol map: --svg %s is the --out PNG's path too: give them different names\n", svg);
        return 2;
    }
    if (map_output_check(out, &e)) {
        fprintf(stderr, "byol map: --out %s\n", e.msg);
        return 2;
    }
    if (map_output_check(svg, &e)) {
        fprintf(stderr, "byol map: %s %s\n", svg_arg ? "--svg" : "the SVG beside --out:", e.msg);
        return 2;
    }

    threads_set(threads);
    if (plan_apply(&po, NULL, &e)) return cmd_fail("map", &e, 2);
    const Backend *be = compute_backend(&po, &e);
    if (!be) return cmd_fail("map", &e, 2);
    const double t_start = now_seconds();
    Loaded L;
    memset(&L, 0, sizeof L);
    /* load_checkpoint checks every model flag given against the checkpoint: not our --method */
    char **margv = malloc(sizeof(char *) * (size_t)(argc + 1));
    if (!margv) die("out of memory");
    int margc = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--method")) {
            i++;
            continue;
        }
        if (!strncmp(argv[i], "--method=", 9)) continue;
        margv[margc++] = argv[i];
    }
    margv[margc] = NULL;
    rc = load_checkpoint(&L, ckpt, &asked, margc, margv, &e);
    free(margv);
    if (rc) return cmd_fail("map", &e, 1);
    const int data_from_ckpt = !dopt.data;
    if (data_from_ckpt) dopt.data = L.o.data.data, dopt.dataset = dopt.dataset ? dopt.dataset : L.o.data.dataset;
    Dataset ds;
    if (open_data(&ds, &dopt, data_from_ckpt, ckpt, &e)) {
        byol_free(&L.model);
        return cmd_fail("map", &e, 1);
    }
    rc = 1;
    float *f = NULL, *xy = NULL;
    int32_t *lab = NULL;
    Pca pca;
    memset(&pca, 0, sizeof pca);
    Split split = SPLIT_TEST;
    if (ds.split[SPLIT_TEST].n == 0) {
        split = SPLIT_TRAIN;
        printf("note       %s has no test split: mapping the train split\n", ds.root);
    }
    FeatureConfig fc;
    if (run_feature_config(&L, &ds, eval_resize, be, &fc, &e)) {
        fprintf(stderr, "byol map: %s (pass a --data of the images it was trained on)\n", e.msg);
        goto out;
    }
    fc.max_images = points;
    int d;
    const int n = extract_features(&L.model.encoder, L.model.online.params, L.model.online.buffers, &ds, split, &fc, &f,
                                   &lab, &d, &e);
    if (n < 0) {
        fprintf(stderr, "byol map: %s\n", e.msg);
        goto out;
    }
    const double t_feat = now_seconds() - t_start;
    if (n < 2 || (tsne && n < tsne_min_points(perplexity))) {
        fprintf(stderr,
                "byol map: the %s split of %s has %d images, too few for %s (at least %d); %s\n", SPLIT_NAMES[split],
                ds.root, n, tsne ? "t-SNE at this --perplexity" : "a map", tsne ? tsne_min_points(perplexity) : 2,
                tsne ? "lower --perplexity" : "use a larger dataset");
        goto out;
    }
    char prep[128];
    feature_preprocess_name(&fc, prep, sizeof prep);
    printf("features   %d %s images, %d dims (%s), %.1f s\n", n, SPLIT_NAMES[split], d, prep, t_feat);
    fflush(stdout);

    xy = malloc(sizeof(float) * 2 * (size_t)n);
    if (!xy) die("out of memory (the map)");
    const double t0 = now_seconds();
    TsneInfo ti;
    if (tsne) {
        TsneOptions o;
        tsne_defaults(&o);
        o.perplexity = perplexity, o.iters = iters, o.seed = (uint64_t)seed, o.init_random = !strcmp(init, "random");
        if (flag_given(argc, argv, "tsne-exact")) o.exact = exact ? 1 : -1;
        o.progress = tsne_progress, o.progress_ctx = (void *)&t0;
        if (tsne_2d(f, n, d, &o, xy, &ti, &e)) {
            fprintf(stderr, "byol map: %s\n", e.msg);
            goto out;
        }
    } else if (pca_2d(f, n, d, xy, &pca, &e)) {
        fprintf(stderr, "byol map: %s\n", e.msg);
        goto out;
    }
    const double t_map = now_seconds() - t0;
    int has_labels = 0;
    for (int i = 0; i < n; i++) has_labels |= lab[i] >= 0;
    const double agree2 = map_knn_agreement(xy, n, 2, lab, 10), agreef = map_knn_agreement(f, n, d, lab, 10);

    char title[512], subtitle[1200], xl[96], yl[96];
    const char *base = strrchr(ds.root, '/');
    base = base && base[1] ? base + 1 : ds.root;
    if (tsne)
        snprintf(title, sizeof title, "t-SNE of %d %s images of %.200s (perplexity %g)", n, SPLIT_NAMES[split], base,
                 (double)perplexity);
    else
        snprintf(title, sizeof title, "PCA of %d %s images of %.200s", n, SPLIT_NAMES[split], base);
    if (has_labels)
        snprintf(subtitle, sizeof subtitle, "%s (step %lld), %d-d features; 10-NN label agreement %.3f in the map, %.3f in the features",
                 ckpt, (long long)L.step, d, agree2, agreef);
    else
        snprintf(subtitle, sizeof subtitle, "%s (step %lld), %d-d features, no labels", ckpt, (long long)L.step, d);
    MapPlot mp = {.xy = xy, .n = n, .labels = has_labels ? lab : NULL, .n_classes = ds.n_classes,
                  .class_names = (const char *const *)ds.class_names, .title = title, .subtitle = subtitle};
    if (!tsne) {
        snprintf(xl, sizeof xl, "PC1 (%.1f%% of the variance)", 100 * pca.variance[0] / fmax(pca.total_variance, 1e-300));
        snprintf(yl, sizeof yl, "PC2 (%.1f%% of the variance)",
                 pca.k > 1 ? 100 * pca.variance[1] / fmax(pca.total_variance, 1e-300) : 0.0);
        mp.x_label = xl, mp.y_label = yl;
    }
    if (map_plot_write(&mp, out, svg, &e)) {
        fprintf(stderr, "byol map: %s\n", e.msg);
        goto out;
    }
    if (tsne)
        printf("t-SNE      %s, perplexity %g, %d iterations, learning rate %g, KL %.4f, %d-d input, %.1f s\n",
               ti.exact ? "exact" : "Barnes-Hut (theta 0.5, sparse P)", (double)perplexity, ti.iterations, ti.learning_rate,
               ti.kl, ti.input_dims, t_map);
    else
        printf("PCA        %s, %s, %d iterations%s, %.2f s\n", xl, yl, pca.iterations, pca.converged ? "" : " (NOT converged)",
               t_map);
    if (has_labels)
        printf("agreement  10-NN label agreement %.4f in the map, %.4f in the %d-d features\n", agree2, agreef, d);
    printf("wrote      %s and %s\n", out, svg);
    printf("{\"method\": \"%s\", \"points\": %d, \"dims\": %d, \"split\": \"%s\", \"seconds\": %.3f, "
           "\"seconds_features\": %.3f, \"knn_agreement_2d\": ",
           tsne ? "tsne" : "pca", n, d, SPLIT_NAMES[split], t_map, t_feat);
    json_number_or_null(has_labels ? agree2 : -1);
    printf(", \"knn_agreement_features\": ");
    json_number_or_null(has_labels ? agreef : -1);
    printf(", \"knn_k\": 10");
    if (tsne)
        printf(", \"perplexity\": %g, \"iterations\": %d, \"exact\": %s, \"kl_divergence\": %.6f, \"input_dims\": %d",
               (double)perplexity, ti.iterations, ti.exact ? "true" : "false", ti.kl, ti.input_dims);
    else
        printf(", \"explained_variance_ratio\": [%.6f, %.6f]", pca.variance[0] / fmax(pca.total_variance, 1e-300),
               pca.k > 1 ? pca.variance[1] / fmax(pca.total_variance, 1e-300) : 0.0);
    printf(", \"ckpt\": ");
    json_string(ckpt);
    printf(", \"step\": %lld, \"png\": ", (long long)L.step);
    json_string(out);
    printf(", \"svg\": ");
    json_string(svg);
    printf("}\n");
    rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
out:
    pca_free(&pca);
    xfree(f), free(lab), free(xy);
    byol_free(&L.model);
    dataset_close(&ds);
    return rc;
}
