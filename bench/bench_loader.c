/* Loader throughput: decoded + augmented images per second (two views each) through the real
 * loader, for a given dataset, view size and number of workers.
 *
 *   build/bench/bench_loader --data DIR [--image-size 224] [--workers 1] [--batch 64]
 *                            [--seconds 10]
 *
 * Prints one line: images/s, images/s per worker, and the settings, then a JSON object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "data/loader.h"

int main(int argc, char **argv) {
    const char *data = NULL, *kind = NULL;
    int S = 0, workers = 1, B = 64;
    double seconds = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--data")) data = argv[i + 1];
        else if (!strcmp(argv[i], "--dataset")) kind = argv[i + 1];
        else if (!strcmp(argv[i], "--image-size")) S = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--workers")) workers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else die("unknown flag %s", argv[i]);
    }
    if (!data) die("usage: bench_loader --data DIR [--image-size S] [--workers N] [--batch B] [--seconds T]");
    Dataset ds;
    Err e;
    if (dataset_open(&ds, data, kind, stderr, &e)) die("%s", e.msg);
    if (!S) S = ds.sizes_vary ? 224 : ds.height;
    LoaderConfig lc = {&ds, SPLIT_TRAIN, {0}, B, 0, workers, 2, 0, 0, 0};
    aug_config_default(&lc.aug, S, ds.channels);
    /* Normalization constants do not change the work; the dataset's are not needed here. */
    Loader *l = loader_create(&lc, &e);
    if (!l) die("%s", e.msg);
    loader_next(l); /* warm-up: threads started, caches filled */
    double t0 = now_seconds();
    long images = 0;
    while (now_seconds() - t0 < seconds) {
        loader_next(l);
        images += B;
    }
    double dt = now_seconds() - t0, rate = images / dt;
    printf("byol.c loader: %.1f images/s with %d worker%s = %.1f images/s per worker (%dx%d views, "
           "2 per image, batch %d, %.1f s)\n", rate, workers, workers > 1 ? "s" : "", rate / workers, S, S, B, dt);
    printf("{\"impl\": \"byol.c\", \"images_per_s\": %.2f, \"workers\": %d, \"per_worker\": %.2f, "
           "\"image_size\": %d}\n", rate, workers, rate / workers, S);
    loader_destroy(l);
    dataset_close(&ds);
    return 0;
}
