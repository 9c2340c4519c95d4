/* The loader: epoch permutations are bijections, batches are the same bits whatever the number
 * of workers and slots, every image of an epoch appears once, each view is exactly what
 * aug_draw + aug_apply make for its key, and channel statistics are right. */
#include "harness.h"
#include "data/loader.h"

/* An in-memory HWC dataset: image i has pixels derived from i, label i % 7. */
static void synthetic(Dataset *ds, int n, int H, int W, int C, uint8_t **pixels) {
    memset(ds, 0, sizeof *ds);
    snprintf(ds->kind, sizeof ds->kind, "synthetic");
    snprintf(ds->root, sizeof ds->root, "synthetic");
    ds->channels = C, ds->height = H, ds->width = W, ds->n_classes = 7;
    size_t per = (size_t)H * W * C;
    *pixels = malloc(per * n);
    TestRng r = {11};
    for (size_t i = 0; i < per * n; i++) (*pixels)[i] = (uint8_t)(rng_uniform(&r) * 256);
    DatasetSplit *sp = &ds->split[SPLIT_TRAIN];
    sp->n = n;
    sp->labels = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n; i++) sp->labels[i] = i % 7;
    sp->records = *pixels, sp->record_stride = per, sp->pixel_offset = 0, sp->layout = PIXELS_HWC;
}

static void free_synthetic(Dataset *ds, uint8_t *pixels) {
    free(ds->split[SPLIT_TRAIN].labels);
    free(pixels);
}

static void test_epoch_permutation_is_a_bijection(void) {
    const int64_t sizes[] = {1, 2, 3, 7, 100, 1000, 4097, 50000};
    for (size_t k = 0; k < ARRAY_LEN(sizes); k++) {
        const int64_t n = sizes[k];
        uint8_t *seen = calloc((size_t)n, 1);
        int64_t fixed = 0, same_as_other_epoch = 0, bad = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t p = epoch_permute(i, n, 7, 3);
            if (p < 0 || p >= n || seen[p]) bad++;
            else seen[p] = 1;
            fixed += p == i;
            same_as_other_epoch += p == epoch_permute(i, n, 7, 4);
        }
        CHECK(bad == 0, "n=%lld: %lld positions repeat or fall outside", (long long)n, (long long)bad);
        if (n >= 100) {
            CHECK(fixed < n / 10, "n=%lld: %lld fixed points (not shuffled)", (long long)n, (long long)fixed);
            CHECK(same_as_other_epoch < n / 10, "n=%lld: epochs 3 and 4 agree on %lld positions", (long long)n,
                  (long long)same_as_other_epoch);
        }
        free(seen);
    }
}

/* All batches of `steps` steps, concatenated. */
static float *run_loader(const Dataset *ds, const AugConfig *ac, int B, int workers, int slots, int steps,
                         int32_t *indices, int32_t *labels, int *epochs) {
    LoaderConfig lc = {ds, SPLIT_TRAIN, *ac, B, 1234, workers, slots, 0, 0, 0, 0, {0}, NULL, 0, 0};
    Err e;
    Loader *l = loader_create(&lc, &e);
    if (!l) {
        printf("FATAL %s\n", e.msg);
        exit(2);
    }
    const size_t per = 2 * (size_t)B * ac->channels * ac->image_size * ac->image_size;
    float *all = xmalloc(per * steps * sizeof(float), "t");
    for (int t = 0; t < steps; t++) {
        Batch b = loader_next(l);
        CHECK(b.step == t, "step %lld", (long long)b.step);
        memcpy(all + per * t, b.views, per * sizeof(float));
        memcpy(indices + (size_t)t * B, b.indices, B * sizeof(int32_t));
        memcpy(labels + (size_t)t * B, b.labels, B * sizeof(int32_t));
        epochs[t] = b.epoch;
    }
    loader_destroy(l);
    return all;
}

static void test_batches_do_not_depend_on_workers(void) {
    Dataset ds;
    uint8_t *px;
    synthetic(&ds, 22, 20, 24, 3, &px);
    AugConfig ac;
    aug_config_default(&ac, 16, 3);
    ac.view[0].blur_p = 1, ac.view[1].blur_p = 0.5f, ac.blur_kernel = 3; /* exercise everything */
    ac.mean[0] = 0.5f, ac.std[0] = 0.25f;
    const int B = 5, steps = 11; /* 4 batches per epoch (2 images dropped): almost 3 epochs */
    const size_t per = 2 * (size_t)B * 3 * 16 * 16;
    int32_t idx[4][55], lab[4][55];
    int ep[4][11];
    const int configs[4][2] = {{1, 2}, {3, 2}, {2, 5}, {4, 3}};
    float *runs[4];
    for (int c = 0; c < 4; c++) runs[c] = run_loader(&ds, &ac, B, configs[c][0], configs[c][1], steps, idx[c], lab[c], ep[c]);
    for (int c = 1; c < 4; c++) {
        CHECK(memcmp(runs[0], runs[c], per * steps * sizeof(float)) == 0,
              "workers %d slots %d: different pixels than 1 worker", configs[c][0], configs[c][1]);
        CHECK(memcmp(idx[0], idx[c], sizeof idx[0]) == 0, "workers %d: different order", configs[c][0]);
    }
    /* Epoch structure: 4 batches per epoch, each image at most once per epoch, labels follow. */
    for (int t = 0; t < steps; t++) CHECK(ep[0][t] == t / 4, "step %d in epoch %d", t, ep[0][t]);
    for (int e = 0; e < 2; e++) {
        int seen[22] = {0}, dup = 0;
        for (int k = 0; k < 4 * B; k++) dup += seen[idx[0][e * 4 * B + k]]++ > 0;
        CHECK(dup == 0, "epoch %d repeats %d images", e, dup);
    }
    CHECK(memcmp(idx[0], idx[0] + 4 * B, 4 * B * sizeof(int32_t)) != 0, "epochs 0 and 1 in the same order");
    for (int k = 0; k < steps * B; k++) CHECK(lab[0][k] == idx[0][k] % 7, "label of image %d", idx[0][k]);
    /* Each view is aug_draw + aug_apply for key (seed, epoch, image, view). */
    Image img = {0};
    AugScratch s = {0};
    float *want = xmalloc(3 * 16 * 16 * 4, "t");
    int wrong = 0;
    for (int t = 0; t < steps; t += 5)
        for (int k = 0; k < B; k++)
            for (int v = 0; v < 2; v++) {
                Err e;
                int i = idx[0][t * B + k];
                CHECK(dataset_image(&ds, SPLIT_TRAIN, i, 0, &img, &e) == 0, "%s", e.msg);
                Rng r = rng_keyed(1234, (uint64_t)(t / 4), (uint64_t)i, (uint64_t)v);
                ViewParams p;
                aug_draw(&p, &ac, v, img.h, img.w, &r);
                aug_apply(want, &img, &p, &ac, &s);
                wrong += memcmp(want, runs[0] + per * t + ((size_t)v * B + k) * 3 * 16 * 16, 3 * 16 * 16 * 4) != 0;
            }
    CHECK(wrong == 0, "%d views differ from aug_apply for their key", wrong);
    xfree(want);
    image_free(&img);
    aug_scratch_free(&s);
    for (int c = 0; c < 4; c++) xfree(runs[c]);
    free_synthetic(&ds, px);
}

/* Sharded loaders (data-parallel ranks): a loader of images [first, first + n) of every global
 * batch of B delivers bit for bit what the one-process loader delivers for them, including the
 * epoch boundaries (computed from the global batch): equal shards [r*b, (r+1)*b), and the
 * overlapping reaches of balanced shards. */
static void test_shards_split_the_global_batch(void) {
    Dataset ds;
    uint8_t *px;
    synthetic(&ds, 30, 12, 12, 3, &px);
    AugConfig ac;
    aug_config_default(&ac, 8, 3);
    const int B = 9, steps = 7; /* 3 global batches per epoch: over 2 epochs */
    const size_t view = (size_t)3 * 8 * 8;
    int32_t idx[7 * 9], lab[7 * 9];
    int ep[7];
    float *whole = run_loader(&ds, &ac, B, 2, 2, steps, idx, lab, ep);
    int wrong = 0, wrong_idx = 0, wrong_ep = 0;
    /* equal shards, then reaches that overlap (b + 2 either way, clipped) */
    const int first[6] = {0, 3, 6, 0, 1, 4}, count[6] = {3, 3, 3, 5, 7, 5};
    for (int q = 0; q < 6; q++) {
        const int f = first[q], b = count[q];
        LoaderConfig lc = {&ds, SPLIT_TRAIN, ac, b, 1234, 1, 2, 0, f, B, 0, {0}, NULL, 0, 0};
        Err e;
        Loader *l = loader_create(&lc, &e);
        CHECK(l != NULL, "%s", l ? "" : e.msg);
        if (!l) continue;
        CHECK(loader_batches_per_epoch(l) == 30 / B, "batches per epoch %d", loader_batches_per_epoch(l));
        for (int t = 0; t < steps; t++) {
            Batch bt = loader_next(l);
            wrong_ep += bt.epoch != ep[t];
            for (int k = 0; k < b; k++) {
                wrong_idx += bt.indices[k] != idx[t * B + f + k] || bt.labels[k] != lab[t * B + f + k];
                for (int v = 0; v < 2; v++)
                    wrong += memcmp(bt.views + ((size_t)v * b + k) * view,
                                    whole + (size_t)t * 2 * B * view + ((size_t)v * B + f + k) * view,
                                    view * sizeof(float)) != 0;
            }
        }
        loader_destroy(l);
    }
    CHECK(wrong_idx == 0, "%d shard images differ from the global batch's", wrong_idx);
    CHECK(wrong == 0, "%d shard views differ from the one-process loader's", wrong);
    CHECK(wrong_ep == 0, "%d shard batches in another epoch", wrong_ep);
    LoaderConfig bad = {&ds, SPLIT_TRAIN, ac, 11, 1234, 1, 2, 0, 0, 33, 0, {0}, NULL, 0, 0};
    Err e;
    CHECK(loader_create(&bad, &e) == NULL && strstr(e.msg, "fewer than one batch of 33"), "%s", e.msg);
    LoaderConfig outside = {&ds, SPLIT_TRAIN, ac, 4, 1234, 1, 2, 0, 6, 9, 0, {0}, NULL, 0, 0};
    CHECK(loader_create(&outside, &e) == NULL && strstr(e.msg, "[6, 10) are not within a global batch of 9"), "%s", e.msg);
    xfree(whole);
    free_synthetic(&ds, px);
}

/* A loader started at step t (a resumed run) produces exactly the batches t, t+1, ... of a run
 * started at 0, across epoch boundaries. */
static void test_loader_resumes_at_a_step(void) {
    Dataset ds;
    uint8_t *px;
    synthetic(&ds, 13, 12, 12, 3, &px);
    AugConfig ac;
    aug_config_default(&ac, 8, 3);
    const int B = 3, per = 2 * B * 3 * 8 * 8;
    Err e;
    LoaderConfig lc = {&ds, SPLIT_TRAIN, ac, B, 99, 2, 2, 0, 00, 0, 0, {0}, NULL, 0, 0};
    Loader *a = loader_create(&lc, &e);
    float *ref = xmalloc((size_t)12 * per * 4, "t");
    for (int t = 0; t < 12; t++) memcpy(ref + (size_t)t * per, loader_next(a).views, per * 4);
    loader_destroy(a);
    for (int start = 1; start < 12; start += 5) {
        lc.start_step = start;
        Loader *b = loader_create(&lc, &e);
        for (int t = start; t < 12; t++) {
            Batch bt = loader_next(b);
            CHECK(bt.step == t && bt.epoch == t / 4, "step %lld epoch %d", (long long)bt.step, bt.epoch);
            CHECK(memcmp(bt.views, ref + (size_t)t * per, per * 4) == 0, "start %d: batch %d differs", start, t);
        }
        loader_destroy(b);
    }
    xfree(ref);
    free_synthetic(&ds, px);
}

/* A folder image that passes the header check but fails to decode: the loader warns, counts it,
 * and hands the next image instead, the same way whatever the number of workers. */
static void test_loader_replaces_undecodable_images(void) {
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/folder/c", TEST_TMP);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    CHECK(system(cmd) == 0, "mkdir");
    uint8_t px[8 * 8 * 3];
    Err e;
    for (int i = 0; i < 8; i++) {
        for (int k = 0; k < 8 * 8 * 3; k++) px[k] = (uint8_t)(i * 30 + k);
        snprintf(path, sizeof path, "%s/%d.png", dir, i);
        CHECK(png_write(path, px, 8, 8, 3, &e) == 0, "%s", e.msg);
    }
    size_t n;
    snprintf(path, sizeof path, "%s/3.png", dir);
    uint8_t *good = slurp(path, &n);
    write_bytes(path, good, n - 20); /* IHDR intact, image data cut */
    free(good);
    snprintf(path, sizeof path, "%s/folder", TEST_TMP);
    Dataset ds;
    CHECK(dataset_open(&ds, path, NULL, NULL, &e) == 0, "%s", e.msg);
    CHECK(ds.split[SPLIT_TRAIN].n == 8, "the cut file passes the header check: %d images", ds.split[SPLIT_TRAIN].n);
    AugConfig ac;
    aug_config_default(&ac, 8, 3);
    int32_t idx[2][16];
    float *views[2];
    for (int w = 0; w < 2; w++) {
        LoaderConfig lc = {&ds, SPLIT_TRAIN, ac, 4, 5, w + 1, 2, 0, 00, 0, 0, {0}, NULL, 0, 0};
        Loader *l = loader_create(&lc, &e);
        views[w] = xmalloc(4 * 2 * 4 * 3 * 8 * 8 * 4, "t");
        for (int t = 0; t < 4; t++) {
            Batch b = loader_next(l);
            memcpy(idx[w] + 4 * t, b.indices, 4 * sizeof(int32_t));
            memcpy(views[w] + (size_t)t * 2 * 4 * 192, b.views, 2 * 4 * 192 * 4);
        }
        CHECK(loader_decode_failures(l) == 2, "one failure per epoch, counted: %lld", (long long)loader_decode_failures(l));
        loader_destroy(l);
    }
    int used_bad = 0;
    for (int k = 0; k < 16; k++) used_bad += idx[0][k] == 3;
    CHECK(used_bad == 0, "the undecodable image is never handed out");
    CHECK(memcmp(idx[0], idx[1], sizeof idx[0]) == 0 && memcmp(views[0], views[1], 4 * 2 * 4 * 192 * 4) == 0,
          "replacement independent of the number of workers");
    xfree(views[0]), xfree(views[1]);
    dataset_close(&ds);
}

static void test_loader_refuses_bad_setups(void) {
    Dataset ds;
    uint8_t *px;
    synthetic(&ds, 6, 8, 8, 3, &px);
    AugConfig ac;
    aug_config_default(&ac, 8, 3);
    Err e = {{0}};
    LoaderConfig lc = {&ds, SPLIT_TRAIN, ac, 7, 1, 1, 2, 0, 00, 0, 0, {0}, NULL, 0, 0};
    CHECK(loader_create(&lc, &e) == NULL && strstr(e.msg, "6 images, fewer than one batch of 7"), "%s", e.msg);
    lc.batch = 2;
    lc.aug.channels = 1;
    CHECK(loader_create(&lc, &e) == NULL && strstr(e.msg, "channels"), "%s", e.msg);
    lc.split = SPLIT_TEST;
    lc.aug.channels = 3;
    CHECK(loader_create(&lc, &e) == NULL && strstr(e.msg, "test split has 0 images"), "%s", e.msg);
    free_synthetic(&ds, px);
}

static void test_channel_stats(void) {
    Dataset ds;
    uint8_t *px;
    synthetic(&ds, 9, 5, 4, 3, &px);
    double sum[3] = {0}, sq[3] = {0};
    const int n = 9 * 5 * 4;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            double v = px[i * 3 + c] / 255.0;
            sum[c] += v, sq[c] += v * v;
        }
    float mean[3], std[3];
    Err e;
    CHECK(dataset_channel_stats(&ds, SPLIT_TRAIN, 0, 0, mean, std, &e) == 9, "all 9 images used");
    for (int c = 0; c < 3; c++) {
        double m = sum[c] / n, sd = sqrt(sq[c] / n - m * m);
        CHECK(fabs(mean[c] - m) < 1e-6 && fabs(std[c] - sd) < 1e-6, "channel %d: %g/%g vs %g/%g", c, mean[c], std[c], m, sd);
    }
    free_synthetic(&ds, px);
}

/* Multi-crop: local views at their own size, keyed (seed, epoch, image, 2 + l), so the two
 * global views are the same bits with or without them, and the same whatever the workers. */
static void test_local_views(void) {
    Dataset ds;
    uint8_t *px;
    synthetic(&ds, 22, 20, 24, 3, &px);
    AugConfig ac, lac;
    aug_config_default(&ac, 16, 3);
    lac = ac;
    lac.image_size = 8, lac.crop_scale_min = 0.05f, lac.crop_scale_max = 0.4f;
    const int B = 5, N = 2, steps = 5;
    const size_t per = 2 * (size_t)B * 3 * 16 * 16, lper = (size_t)N * B * 3 * 8 * 8;
    float *g[2], *loc[2];
    for (int run = 0; run < 2; run++) {
        LoaderConfig lc = {&ds, SPLIT_TRAIN, ac, B, 1234, run + 1, 2, 0, 0, 0, N, lac, NULL, 0, 0};
        Err e;
        Loader *l = loader_create(&lc, &e);
        CHECK(l != NULL, "%s", e.msg);
        if (!l) return;
        g[run] = xmalloc(per * steps * 4, "t"), loc[run] = xmalloc(lper * steps * 4, "t");
        for (int t = 0; t < steps; t++) {
            Batch b = loader_next(l);
            CHECK(b.local_views != NULL, "local views delivered");
            memcpy(g[run] + per * t, b.views, per * 4);
            memcpy(loc[run] + lper * t, b.local_views, lper * 4);
        }
        loader_destroy(l);
    }
    int32_t idx[25], lab[25];
    int ep[5];
    float *plain = run_loader(&ds, &ac, B, 1, 2, steps, idx, lab, ep);
    CHECK(memcmp(plain, g[0], per * steps * 4) == 0, "the global views do not change with local views added");
    CHECK(memcmp(g[0], g[1], per * steps * 4) == 0 && memcmp(loc[0], loc[1], lper * steps * 4) == 0,
          "the same bits with 1 or 2 workers");
    const size_t one = (size_t)B * 3 * 8 * 8;
    CHECK(memcmp(loc[0], loc[0] + one, one * 4) != 0, "local views 1 and 2 differ");
    xfree(plain);
    for (int run = 0; run < 2; run++) xfree(g[run]), xfree(loc[run]);
    free_synthetic(&ds, px);
}

int main(void) {
    test_tmpdir("test_loader");
    RUN(test_epoch_permutation_is_a_bijection);
    RUN(test_batches_do_not_depend_on_workers);
    RUN(test_shards_split_the_global_batch);
    RUN(test_loader_resumes_at_a_step);
    RUN(test_loader_replaces_undecodable_images);
    RUN(test_loader_refuses_bad_setups);
    RUN(test_channel_stats);
    RUN(test_local_views);
    return test_finish();
}
