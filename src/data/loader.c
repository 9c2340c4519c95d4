/* Threaded two-view loader: see loader.h. One mutex guards the ring's bookkeeping; pixels are
 * written outside it, each image of a slot by exactly one worker. */
#include "loader.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/threads.h"

/* ---------------------------------------------------------------- epoch order */

int64_t epoch_permute(int64_t i, int64_t n, uint64_t seed, int epoch) {
    if (n <= 1) return 0;
    int bits = 2;
    while (((int64_t)1 << bits) < n) bits += 2;
    const int half = bits / 2;
    const uint64_t mask = ((uint64_t)1 << half) - 1;
    uint64_t keys[4];
    for (int r = 0; r < 4; r++) keys[r] = rng_mix64(rng_keyed(seed, (uint64_t)epoch, 0x5eed, (uint64_t)r).s);
    uint64_t x = (uint64_t)i;
    do { /* cycle walking: re-encrypt until the value falls inside [0, n) */
        uint64_t left = x >> half, right = x & mask;
        for (int r = 0; r < 4; r++) {
            uint64_t f = rng_mix64(right ^ keys[r]) & mask;
            uint64_t t = left ^ f;
            left = right, right = t;
        }
        x = left << half | right;
    } while (x >= (uint64_t)n);
    return (int64_t)x;
}

/* ---------------------------------------------------------------- loader */

typedef struct {
    int64_t batch; /* the batch this slot holds or is being filled with */
    int done;      /* images finished */
    int ready;
    float *views, *local_views;
    int32_t *labels, *indices;
} Slot;

struct Loader {
    LoaderConfig cfg;
    int n_images, batches_per_epoch;
    size_t view_floats; /* C * S * S */
    size_t local_floats; /* C * s * s of a local view */
    Slot *slots;
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, ready_cv;
    int64_t next_unit;     /* next (batch, image) unit to hand to a worker: batch * B + k */
    int64_t next_consume;  /* the batch loader_next returns next */
    int stop;
    atomic_llong failures;
    uint8_t *warned;       /* per image: a decode failure was reported */
    int decode_min_side;   /* JPEG reduced-scale decoding keeps the short side at least this */
    int global;            /* images of each global batch: this loader's and other ranks' */
};

int loader_default_workers(void) {
    const int w = threads_available() / 4;
    return w < 1 ? 1 : w > 8 ? 8 : w;
}

int loader_batches_per_epoch(const Loader *l) { return l->batches_per_epoch; }
int64_t loader_decode_failures(const Loader *l) { return atomic_load(&l->failures); }

/* Decodes image idx, or when it fails (a file corrupted after the folder was scanned) warns once
 * and takes the next image of the split that decodes: deterministic, like the rest. */
static int32_t load_image(Loader *l, int32_t idx, Image *img) {
    const Dataset *ds = l->cfg.ds;
    for (int tries = 0; tries < 100; tries++) {
        Err e;
        if (dataset_image(ds, l->cfg.split, idx, l->decode_min_side, img, &e) == 0) return idx;
        atomic_fetch_add(&l->failures, 1);
        pthread_mutex_lock(&l->mu);
        if (!l->warned[idx]) {
            l->warned[idx] = 1;
            fprintf(stderr, "byol: warning: %s (replaced by the next image)\n", e.msg);
        }
        pthread_mutex_unlock(&l->mu);
        idx = (idx + 1) % l->cfg.ds->split[l->cfg.split].n;
    }
    die("%s: 100 images in a row failed to decode: is the dataset still there?", ds->root);
}

static void *worker_main(void *arg) {
    Loader *l = arg;
    const int B = l->cfg.batch, P = l->cfg.slots;
    Image img = {0};
    AugScratch scratch = {0};
    for (;;) {
        pthread_mutex_lock(&l->mu);
        const int64_t unit = l->next_unit++;
        const int64_t t = unit / B;
        const int k = (int)(unit % B);
        Slot *s = &l->slots[t % P];
        while (!l->stop && s->batch != t) pthread_cond_wait(&l->work_cv, &l->mu);
        int stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        if (stop) break;

        const int epoch = (int)(t / l->batches_per_epoch);
        const int64_t pos = (t % l->batches_per_epoch) * l->global + l->cfg.first + k;
        int32_t idx = (int32_t)epoch_permute(pos, l->n_images, l->cfg.seed, epoch);
        if (l->cfg.subset) idx = l->cfg.subset[idx];
        const int32_t want = idx;
        idx = load_image(l, idx, &img);
        const int32_t *labels = l->cfg.ds->split[l->cfg.split].labels;
        s->labels[k] = labels ? labels[idx] : -1;
        s->indices[k] = idx;
        for (int v = 0; v < (l->cfg.one_view ? 1 : 2); v++) {
            /* Keyed by the image the permutation chose, so a replacement does not shift others. */
            Rng r = rng_keyed(l->cfg.seed, (uint64_t)epoch, (uint64_t)want, (uint64_t)v);
            ViewParams p;
            aug_draw(&p, &l->cfg.aug, v, img.h, img.w, &r);
            aug_apply(s->views + ((size_t)v * B + k) * l->view_floats, &img, &p, &l->cfg.aug, &scratch);
        }
        for (int v = 0; v < l->cfg.local_crops; v++) { /* view 2's settings at the local size and scales */
            Rng r = rng_keyed(l->cfg.seed, (uint64_t)epoch, (uint64_t)want, (uint64_t)(2 + v));
            ViewParams p;
            aug_draw(&p, &l->cfg.local_aug, 1, img.h, img.w, &r);
            aug_apply(s->local_views + ((size_t)v * B + k) * l->local_floats, &img, &p, &l->cfg.local_aug, &scratch);
        }

        pthread_mutex_lock(&l->mu);
        if (++s->done == B) {
            s->ready = 1;
            pthread_cond_broadcast(&l->ready_cv);
        }
        pthread_mutex_unlock(&l->mu);
    }
    image_free(&img);
    aug_scratch_free(&scratch);
    return NULL;
}

Loader *loader_create(const LoaderConfig *cfg, Err *e) {
    const DatasetSplit *sp = &cfg->ds->split[cfg->split];
    if (aug_config_check(&cfg->aug, e)) return NULL;
    if (cfg->local_crops && aug_config_check(&cfg->local_aug, e)) return NULL;
    if (cfg->aug.channels != cfg->ds->channels) {
        err_set(e, "augmentation set up for %d channels, dataset has %d", cfg->aug.channels, cfg->ds->channels);
        return NULL;
    }
    const int global = cfg->global > 0 ? cfg->global : cfg->batch;
    if (cfg->batch < 1 || cfg->first < 0 || (int64_t)cfg->first + cfg->batch > global) {
        err_set(e, "loader: images [%d, %d) are not within a global batch of %d", cfg->first,
                cfg->first + cfg->batch, global);
        return NULL;
    }
    const int n_images = cfg->subset ? cfg->subset_n : sp->n;
    if (cfg->subset)
        for (int i = 0; i < cfg->subset_n; i++)
            if (cfg->subset[i] < 0 || cfg->subset[i] >= sp->n)
                die("internal: loader subset index %d outside the %s split's %d images", cfg->subset[i],
                    SPLIT_NAMES[cfg->split], sp->n);
    if (n_images < global) {
        err_set(e, "%s: the %s split has %d images%s, fewer than one batch of %d (lower --batch)", cfg->ds->root,
                SPLIT_NAMES[cfg->split], n_images, cfg->subset ? " in the labelled subset" : "", global);
        return NULL;
    }
    Loader *l = calloc(1, sizeof *l);
    if (!l) die("out of memory creating the loader");
    l->cfg = *cfg;
    l->global = global;
    if (l->cfg.workers < 1) l->cfg.workers = loader_default_workers();
    if (l->cfg.slots < 2) l->cfg.slots = 2;
    l->n_images = n_images;
    l->decode_min_side = aug_decode_min_side(&cfg->aug);
    if (cfg->local_crops && aug_decode_min_side(&cfg->local_aug) > l->decode_min_side)
        l->decode_min_side = aug_decode_min_side(&cfg->local_aug);
    l->local_floats = (size_t)cfg->local_aug.channels * cfg->local_aug.image_size * cfg->local_aug.image_size;
    l->batches_per_epoch = n_images / global;
    l->view_floats = (size_t)cfg->aug.channels * cfg->aug.image_size * cfg->aug.image_size;
    l->slots = calloc((size_t)l->cfg.slots, sizeof *l->slots);
    l->warned = calloc((size_t)sp->n, 1);
    if (!l->slots || !l->warned) die("out of memory creating the loader");
    l->next_unit = cfg->start_step * cfg->batch;
    l->next_consume = cfg->start_step;
    for (int s = 0; s < l->cfg.slots; s++) {
        const int64_t t = cfg->start_step + s;
        l->slots[t % l->cfg.slots].batch = t;
        l->slots[s].views = xmalloc((cfg->one_view ? 1 : 2) * (size_t)cfg->batch * l->view_floats * sizeof(float),
                                    "loader batch (lower --batch-size or --image-size)");
        if (cfg->local_crops)
            l->slots[s].local_views = xmalloc((size_t)cfg->local_crops * cfg->batch * l->local_floats * sizeof(float),
                                              "loader local views (lower --local-crops or --batch)");
        l->slots[s].labels = xmalloc((size_t)cfg->batch * sizeof(int32_t), "loader labels");
        l->slots[s].indices = xmalloc((size_t)cfg->batch * sizeof(int32_t), "loader indices");
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->ready_cv, NULL);
    atomic_init(&l->failures, 0);
    l->threads = calloc((size_t)l->cfg.workers, sizeof *l->threads);
    if (!l->threads) die("out of memory creating the loader's %d threads (lower --workers)", l->cfg.workers);
    for (int i = 0; i < l->cfg.workers; i++) {
        if (pthread_create(&l->threads[i], NULL, worker_main, l) != 0)
            die("cannot start loader thread %d of %d (lower --workers)", i + 1, l->cfg.workers);
        l->n_threads++;
    }
    return l;
}

Batch loader_next(Loader *l) {
    const int P = l->cfg.slots;
    pthread_mutex_lock(&l->mu);
    if (l->next_consume > l->cfg.start_step) { /* hand the previous batch's slot back */
        Slot *prev = &l->slots[(l->next_consume - 1) % P];
        prev->batch += P;
        prev->done = 0;
        prev->ready = 0;
        pthread_cond_broadcast(&l->work_cv);
    }
    const int64_t t = l->next_consume++;
    Slot *s = &l->slots[t % P];
    while (!(s->batch == t && s->ready)) pthread_cond_wait(&l->ready_cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
    Batch b = {s->views, s->local_views, s->labels, s->indices, (int)(t / l->batches_per_epoch),
               (int)(t % l->batches_per_epoch), t};
    return b;
}

void loader_destroy(Loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_threads; i++) pthread_join(l->threads[i], NULL);
    for (int s = 0; s < l->cfg.slots; s++) {
        xfree(l->slots[s].views);
        if (l->slots[s].local_views) xfree(l->slots[s].local_views);
        l->slots[s].local_views = NULL;
        xfree(l->slots[s].labels);
        xfree(l->slots[s].indices);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->ready_cv);
    free(l->slots);
    free(l->threads);
    free(l->warned);
    free(l);
}

/* ---------------------------------------------------------------- channel statistics */

int dataset_channel_stats(const Dataset *ds, Split s, int max_images, int min_side, float *mean,
                          float *std, Err *e) {
    const DatasetSplit *sp = &ds->split[s];
    const int C = ds->channels;
    if (sp->n < 1) return err_set(e, "%s: the %s split is empty", ds->root, SPLIT_NAMES[s]);
    int n = sp->n;
    if (ds->split[s].paths && max_images > 0 && n > max_images) n = max_images;
    double sum[3] = {0}, sq[3] = {0}, count = 0;
    int used = 0;
    Image img = {0};
    for (int j = 0; j < n; j++) {
        int idx = (int)((int64_t)j * sp->n / n); /* evenly spaced */
        Err de;
        if (dataset_image(ds, s, idx, min_side, &img, &de)) continue; /* counted by the loader */
        const size_t px = (size_t)img.w * img.h;
        uint64_t is[3] = {0}, iq[3] = {0};
        for (size_t i = 0; i < px; i++)
            for (int c = 0; c < C; c++) {
                unsigned v = img.px[i * C + c];
                is[c] += v, iq[c] += v * v;
            }
        for (int c = 0; c < C; c++) sum[c] += (double)is[c], sq[c] += (double)iq[c];
        count += (double)px;
        used++;
    }
    image_free(&img);
    if (!used) return err_set(e, "%s: no image of the %s split could be decoded", ds->root, SPLIT_NAMES[s]);
    for (int c = 0; c < C; c++) {
        double m = sum[c] / count / 255.0, var = sq[c] / count / (255.0 * 255.0) - m * m;
        mean[c] = (float)m;
        std[c] = (float)sqrt(var > 0 ? var : 0);
    }
    return used;
}
