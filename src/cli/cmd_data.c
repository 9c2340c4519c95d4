/* byol data: what the trainer would see of a dataset. byol augment: a picture of the views. */
#include <cjson/cJSON.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../core/threads.h"
#include "../data/loader.h"
#include "commands.h"
#include "data_flags.h"

/* Splits to pretrain on, in order of preference: STL-10's unlabeled images are what it is for. */
static Split stats_split(const Dataset *ds) {
    return ds->split[SPLIT_TRAIN].n ? SPLIT_TRAIN : SPLIT_UNLABELED;
}

static const char *DATA_USAGE =
    "usage: byol data [--data PATH] [--dataset NAME] [--stats-images N]\n"
    "Describes a dataset as the trainer sees it: images per split, classes and per-class counts,\n"
    "image size and channels, channel mean/std, skipped files. The last line is the same as JSON.";

int cmd_data(int argc, char **argv) {
    DataOptions o;
    data_options_default(&o);
    int stats_images = 10000, threads = 0, verify = 1;
    Flag flags[5] = {
        {"data", FLAG_STRING, &o.data, "dataset path (" DEFAULT_DATA ")", 0, -1},
        {"dataset", FLAG_STRING, &o.dataset, "mnist, fashion-mnist, cifar10, cifar100, stl10, folder (detected)", 0, -1},
        {"stats-images", FLAG_INT, &stats_images, "folders: images sampled for mean/std (10000; fixed formats use all)", 1, 1 << 30},
        {"threads", FLAG_INT, &threads, "threads (the cores this process may use: affinity mask, cgroup quota)", 1, 4096},
        {"verify", FLAG_INT, &verify, "folders: decode every image to find corrupt ones, 0 or 1 (1)", 0, 1},
    };
    Err e;
    int rc = flags_parse(argc, argv, flags, 5, DATA_USAGE, &e);
    if (rc == 1) return 0;
    if (rc) return cmd_fail("data", &e, 2);
    threads_set(threads);
    Dataset ds;
    if (data_open(&ds, &o, stderr, &e)) return cmd_fail("data", &e, 1);

    /* A folder's headers were checked when it was opened; a file can still be cut or corrupt
     * after its header, which only a full decode finds. */
    int n_bad = 0;
    char **bad = NULL;
    if (verify && strcmp(ds.kind, "folder") == 0) {
        for (int s = 0; s < SPLIT_COUNT; s++) {
            const int n = ds.split[s].n;
            char **msg = calloc((size_t)(n ? n : 1), sizeof *msg);
            if (!msg) die("out of memory verifying %s", ds.root);
#pragma omp parallel
            {
                Image img = {0};
#pragma omp for schedule(dynamic, 64)
                for (int i = 0; i < n; i++) {
                    Err de;
                    if (dataset_image(&ds, (Split)s, i, 0, &img, &de)) msg[i] = strdup(de.msg);
                }
                image_free(&img);
            }
            for (int i = 0; i < n; i++)
                if (msg[i]) {
                    fprintf(stderr, "byol: warning: %s (fails to decode: the trainer replaces it)\n", msg[i]);
                    char **grown = realloc(bad, sizeof *bad * (size_t)(n_bad + 1));
                    if (!grown) die("out of memory");
                    bad = grown;
                    bad[n_bad++] = msg[i];
                }
            free(msg);
        }
    }

    float mean[3] = {0}, std[3] = {0};
    const Split ss = stats_split(&ds);
    int used = dataset_channel_stats(&ds, ss, stats_images, 0, mean, std, &e);
    if (used < 0) {
        dataset_close(&ds);
        return cmd_fail("data", &e, 1);
    }

    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "dataset", ds.kind);
    cJSON_AddStringToObject(j, "path", ds.root);
    cJSON_AddNumberToObject(j, "channels", ds.channels);
    cJSON_AddNumberToObject(j, "height", ds.height);
    cJSON_AddNumberToObject(j, "width", ds.width);
    cJSON_AddBoolToObject(j, "sizes_vary", ds.sizes_vary);
    printf("dataset   %s at %s\n", ds.kind, ds.root);
    cJSON_AddNumberToObject(j, "max_height", ds.max_height);
    cJSON_AddNumberToObject(j, "max_width", ds.max_width);
    cJSON_AddNumberToObject(j, "default_image_size", dataset_default_image_size(&ds));
    if (ds.sizes_vary)
        printf("images    %dx%d typical (median), largest %dx%d: sizes vary, %d channel%s\n", ds.width, ds.height,
               ds.max_width, ds.max_height, ds.channels, ds.channels > 1 ? "s" : "");
    else
        printf("images    %dx%d, %d channel%s\n", ds.width, ds.height, ds.channels, ds.channels > 1 ? "s" : "");
    printf("views     %d px by default (--image-size)\n", dataset_default_image_size(&ds));
    cJSON *splits = cJSON_AddObjectToObject(j, "splits");
    for (int s = 0; s < SPLIT_COUNT; s++) {
        cJSON_AddNumberToObject(splits, SPLIT_NAMES[s], ds.split[s].n);
        if (ds.split[s].n) printf("%-9s %d images\n", SPLIT_NAMES[s], ds.split[s].n);
    }
    cJSON *classes = cJSON_AddArrayToObject(j, "classes");
    cJSON *counts = cJSON_AddObjectToObject(j, "class_counts");
    int *cnt = calloc((size_t)(ds.n_classes ? ds.n_classes : 1) * SPLIT_COUNT, sizeof *cnt);
    for (int s = 0; s < SPLIT_COUNT; s++)
        for (int i = 0; i < ds.split[s].n; i++) {
            int32_t l = ds.split[s].labels ? ds.split[s].labels[i] : -1;
            if (l >= 0 && l < ds.n_classes) cnt[s * ds.n_classes + l]++;
        }
    if (ds.n_classes) printf("classes   %d%s\n", ds.n_classes, "   (images per split)");
    for (int c = 0; c < ds.n_classes; c++) {
        cJSON_AddItemToArray(classes, cJSON_CreateString(ds.class_names[c]));
        printf("  %3d %-24s", c, ds.class_names[c]);
        for (int s = 0; s < SPLIT_COUNT; s++)
            if (ds.split[s].n && ds.split[s].labels && s != SPLIT_UNLABELED)
                printf(" %s %d", SPLIT_NAMES[s], cnt[s * ds.n_classes + c]);
        printf("\n");
    }
    for (int s = 0; s < SPLIT_COUNT; s++) {
        if (!ds.split[s].n || s == SPLIT_UNLABELED) continue;
        cJSON *arr = cJSON_AddArrayToObject(counts, SPLIT_NAMES[s]);
        for (int c = 0; c < ds.n_classes; c++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(cnt[s * ds.n_classes + c]));
    }
    free(cnt);
    cJSON *jm = cJSON_AddArrayToObject(j, "mean"), *js = cJSON_AddArrayToObject(j, "std");
    printf("mean/std ");
    for (int c = 0; c < ds.channels; c++) {
        cJSON_AddItemToArray(jm, cJSON_CreateNumber(mean[c]));
        cJSON_AddItemToArray(js, cJSON_CreateNumber(std[c]));
        printf(" %.4f/%.4f", mean[c], std[c]);
    }
    printf("   (%s split, %d images)\n", SPLIT_NAMES[ss], used);
    cJSON_AddNumberToObject(j, "stats_images", used);
    cJSON *sk = cJSON_AddArrayToObject(j, "skipped");
    printf("skipped   %d file%s\n", ds.n_skipped + n_bad, ds.n_skipped + n_bad == 1 ? "" : "s");
    for (int i = 0; i < ds.n_skipped; i++) {
        printf("  %s\n", ds.skipped[i]);
        cJSON_AddItemToArray(sk, cJSON_CreateString(ds.skipped[i]));
    }
    for (int i = 0; i < n_bad; i++) {
        printf("  %s (fails to decode)\n", bad[i]);
        cJSON_AddItemToArray(sk, cJSON_CreateString(bad[i]));
        free(bad[i]);
    }
    free(bad);
    cJSON_AddNumberToObject(j, "undecodable", n_bad);
    char *line = cJSON_PrintUnformatted(j);
    printf("%s\n", line);
    free(line);
    cJSON_Delete(j);
    dataset_close(&ds);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "byol data: cannot write to standard output\n");
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- byol augment */

static const char *AUG_USAGE =
    "usage: byol augment [--data PATH] [--dataset NAME] --out grid.png|grid.jpg [--n 8] [--seed S] [augmentation flags]\n"
    "Writes a PNG or JPEG grid (by --out's extension), one row per image: the original (resized), view 1, view 2 (un-normalized),\n"
    "drawn exactly as epoch 0 of training with the same --seed would draw them.";

/* Copies an S x S x C picture into the grid at (row, col) cells, scaled by `zoom` (nearest). */
static void blit(uint8_t *grid, int gw, const uint8_t *px, int S, int C, int zoom, int x0, int y0) {
    for (int y = 0; y < S * zoom; y++)
        for (int x = 0; x < S * zoom; x++)
            memcpy(grid + ((size_t)(y0 + y) * gw + x0 + x) * C, px + ((size_t)(y / zoom) * S + x / zoom) * C, (size_t)C);
}

int cmd_augment(int argc, char **argv) {
    DataOptions o;
    data_options_default(&o);
    const char *out = NULL, *split_name = "train";
    int n = 8, seed = 0, threads = 0;
    Flag flags[DATA_FLAG_COUNT + 5];
    data_flags(flags, &o);
    int nf = DATA_FLAG_COUNT;
    flags[nf++] = (Flag){"out", FLAG_STRING, &out, "output picture: .png, .jpg or .jpeg", 0, -1};
    flags[nf++] = (Flag){"n", FLAG_INT, &n, "images (rows) (8)", 1, 256};
    flags[nf++] = (Flag){"seed", FLAG_INT, &seed, "random seed (0)", 0, 2147483647};
    flags[nf++] = (Flag){"split", FLAG_STRING, &split_name, "train, test or unlabeled (train)", 0, -1};
    flags[nf++] = (Flag){"threads", FLAG_INT, &threads, "threads (the cores this process may use: affinity mask, cgroup quota)", 1, 4096};
    Err e;
    int rc = flags_parse(argc, argv, flags, nf, AUG_USAGE, &e);
    if (rc == 1) return 0;
    if (rc) return cmd_fail("augment", &e, 2);
    if (!out) {
        fprintf(stderr, "byol augment: --out is required (see --help)\n");
        return 2;
    }
    /* The format follows the name, so that the file is what its extension says; checked before
     * any image is read. */
    const char *ext = strrchr(out, '.');
    if (ext && strchr(ext, '/')) ext = NULL;
    int as_jpeg = ext && (strcasecmp(ext, ".jpg") == 0 || strcasecmp(ext, ".jpeg") == 0);
    if (!as_jpeg && !(ext && strcasecmp(ext, ".png") == 0)) {
        fprintf(stderr, "byol augment: --out %s: unknown picture format '%s' (name it .png, .jpg or .jpeg)\n", out,
                ext ? ext : "");
        return 2;
    }
    Split split;
    if (split_parse(split_name, &split)) {
        fprintf(stderr, "byol augment: --split: unknown split '%s' (train, test, unlabeled)\n", split_name);
        return 2;
    }
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", out);
    if (access(dirname(dirbuf), W_OK) != 0) {
        fprintf(stderr, "byol augment: --out %s: its folder does not exist or is not writable\n", out);
        return 1;
    }
    threads_set(threads);
    Dataset ds;
    if (data_open(&ds, &o, stderr, &e)) return cmd_fail("augment", &e, 1);
    AugConfig ac;
    if (data_aug_config(&ac, &o, &ds, &e)) {
        dataset_close(&ds);
        return cmd_fail("augment", &e, 2);
    }
    const int N = ds.split[split].n;
    if (N < 1) {
        fprintf(stderr, "byol augment: %s: the %s split is empty\n", ds.root, SPLIT_NAMES[split]);
        dataset_close(&ds);
        return 1;
    }
    const int S = ac.image_size, C = ds.channels, zoom = S < 96 ? (96 + S - 1) / S : 1, cell = S * zoom, gap = 2;
    const int gw = 3 * cell + 4 * gap, gh = n * cell + (n + 1) * gap;
    uint8_t *grid = xmalloc((size_t)gw * gh * C, "augmentation grid");
    memset(grid, 255, (size_t)gw * gh * C);
    uint8_t *pic = xmalloc((size_t)S * S * C, "view");
    float *orig = xmalloc((size_t)S * S * C * sizeof(float), "view");
    Image img = {0};
    AugScratch scratch = {0};
    rc = 0;
    for (int r = 0; r < n && !rc; r++) {
        /* Epoch 0's first images under this seed, as the loader would order them. */
        int32_t idx = (int32_t)epoch_permute(r % N, N, (uint64_t)seed, 0);
        if (dataset_image(&ds, split, idx, S, &img, &e)) {
            rc = 1;
            break;
        }
        aug_resized_crop(orig, img.px, img.h, img.w, C, 0, 0, img.h, img.w, S, ac.interp, &scratch);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                for (int k = 0; k < C; k++) {
                    float v = orig[((size_t)k * S + y) * S + x];
                    pic[((size_t)y * S + x) * C + k] = (uint8_t)lrintf((v < 0 ? 0 : v > 1 ? 1 : v) * 255.0f);
                }
        const int y0 = gap + r * (cell + gap);
        blit(grid, gw, pic, S, C, zoom, gap, y0);
        for (int v = 0; v < 2; v++) {
            Rng rng = rng_keyed((uint64_t)seed, 0, (uint64_t)idx, (uint64_t)v);
            ViewParams p;
            aug_draw(&p, &ac, v, img.h, img.w, &rng);
            aug_apply_u8(pic, &img, &p, &ac, &scratch);
            blit(grid, gw, pic, S, C, zoom, gap + (v + 1) * (cell + gap), y0);
        }
    }
    if (!rc) rc = (as_jpeg ? jpeg_write(out, grid, gw, gh, C, 95, &e) : png_write(out, grid, gw, gh, C, &e)) ? 1 : 0;
    if (rc) fprintf(stderr, "byol augment: %s\n", e.msg);
    else {
        printf("wrote %s: %d rows (original, view 1, view 2), %dx%d views%s\n", out, n, S, S,
               zoom > 1 ? " (enlarged for viewing)" : "");
        if (fflush(stdout) != 0 || ferror(stdout)) {
            fprintf(stderr, "byol augment: cannot write to standard output\n");
            rc = 1;
        }
    }
    image_free(&img);
    aug_scratch_free(&scratch);
    xfree(grid), xfree(pic), xfree(orig);
    dataset_close(&ds);
    return rc;
}
