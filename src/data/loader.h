/* The training loader: worker threads decode and augment two views of every image ahead of the
 * trainer, into a ring of batch slots (two by default: the trainer reads one while the workers
 * fill the next).
 *
 * Reproducible by construction: batch t is batch t % nb of epoch t / nb (nb = images / B, the
 * last partial batch dropped); the epoch's order is a keyed pseudo-random permutation of
 * (seed, epoch); image i's two views draw from Rng streams keyed by (seed, epoch, i, view). No
 * draw depends on the worker that makes it, so the batches are the same bits whatever --workers
 * or --threads. */
#ifndef BYOL_LOADER_H
#define BYOL_LOADER_H

#include <stdint.h>

#include "augment.h"
#include "dataset.h"

typedef struct {
    const Dataset *ds;
    Split split;
    AugConfig aug;
    int batch;     /* B */
    uint64_t seed;
    int workers;   /* threads; 0: loader_default_workers() */
    int slots;     /* batches in flight (>= 2) */
    int64_t start_step; /* first batch to produce (a resumed run starts where it stopped) */
    /* Data-parallel runs: every global batch has `global` images (0: batch, one process) and
     * this loader delivers images [first, first + batch) of each (a rank's shard, or the reach
     * of a balanced one: src/dist/balance.h). The epoch order and every view are those the
     * one-process run draws for the global batch. */
    int first, global;
    /* Multi-crop: local_crops more views of each image, drawn with local_aug (its size, crop
     * scales; view 2's other settings), keyed (seed, epoch, image, 2 + l). 0: none. */
    int local_crops;
    AugConfig local_aug;
    /* Fine-tuning: the epochs run over these subset_n indices of the split only (a labelled
     * fraction: src/eval/subset.h), and one_view draws view 1 alone (views holds [1][B]...). */
    const int32_t *subset;
    int subset_n;
    int one_view;
} LoaderConfig;

typedef struct Loader Loader;

/* Fails (one line) when the split has fewer than B images or the config is invalid. */
Loader *loader_create(const LoaderConfig *cfg, Err *e);
/* A quarter of the cores, at least 1, at most 8. One worker decodes and augments about 20,000 CIFAR
 * images/s at 32 px and 370 large JPEGs/s at 224 px (bench/loader.sh), far more than a CPU
 * training step consumes, so the rest of the cores are left to the step. */
int loader_default_workers(void);
void loader_destroy(Loader *l);
int loader_batches_per_epoch(const Loader *l);

/* The next batch, blocking until it is ready: views [2][B][C][S][S] floats (view 1 of all B
 * images, then view 2), labels [B] (-1 where unlabeled), and its epoch and index within the
 * epoch. The memory stays valid until the following call. */
typedef struct {
    const float *views;
    const float *local_views; /* [local_crops][B][C][s][s], NULL without */
    const int32_t *labels;
    const int32_t *indices; /* dataset index of each image */
    int epoch, step_in_epoch;
    int64_t step;
} Batch;
Batch loader_next(Loader *l);

/* Images that failed to decode while loading (each warned about once and replaced by the next
 * image of the split that decodes). */
int64_t loader_decode_failures(const Loader *l);

/* Position i of epoch e's order over n images: a keyed bijection of [0, n) (a Feistel network
 * with cycle walking), computed without storing the permutation. */
int64_t epoch_permute(int64_t i, int64_t n, uint64_t seed, int epoch);

/* Per-channel mean and standard deviation of the split's pixels in [0, 1]: every image of a
 * fixed-size format, an evenly spaced sample of at most max_images for a folder (decoded at a
 * reduced scale with min_side). Returns the number of images used. */
int dataset_channel_stats(const Dataset *ds, Split s, int max_images, int min_side, float *mean,
                          float *std, Err *e);

#endif
