/* Shared by the fuzz targets whose parsers read files by name (datasets): the input is cut into
 * files, written into a private temporary folder, and the parser opens that folder.
 *
 * Input layout: one byte of flags (what the target makes of them is its own), then files, each
 * as a 4-byte little-endian length and that many bytes; a length of 0 leaves the file out, a
 * length beyond the input takes what is left. The files get the target's names in order. */
#ifndef BYOL_FUZZ_FILES_H
#define BYOL_FUZZ_FILES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fz_dir[256];

static void fz_remove_all(const char *const *names, int n) {
    char p[512];
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/%s", fz_dir, names[i]);
        unlink(p);
    }
}

static const char *const *fz_cleanup_names;
static int fz_cleanup_n;
static void fz_cleanup(void) {
    fz_remove_all(fz_cleanup_names, fz_cleanup_n);
    rmdir(fz_dir);
}

/* The folder, made once per process (in /dev/shm when there is one: no disk traffic). */
static const char *fz_folder(const char *const *all_names, int n_all) {
    if (!fz_dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fz_dir, sizeof fz_dir, "%s/byol-fuzz.XXXXXX", base);
        if (!mkdtemp(fz_dir)) {
            perror("mkdtemp");
            abort();
        }
        fz_cleanup_names = all_names;
        fz_cleanup_n = n_all;
        atexit(fz_cleanup);
    }
    return fz_dir;
}

/* Writes the input's files under names[0..n) (every name removed first); returns the flags. */
static uint8_t fz_write_files(const uint8_t *data, size_t size, const char *const *names, int n) {
    fz_remove_all(names, n);
    if (size == 0) return 0;
    uint8_t flags = data[0];
    size_t pos = 1;
    char p[512];
    for (int i = 0; i < n && pos < size; i++) {
        uint32_t len = 0;
        for (int k = 0; k < 4; k++) len |= (uint32_t)(pos + k < size ? data[pos + k] : 0) << (8 * k);
        pos += 4;
        if (pos > size) break;
        if (len == 0) continue;
        size_t take = len < size - pos ? len : size - pos;
        snprintf(p, sizeof p, "%s/%s", fz_dir, names[i]);
        FILE *f = fopen(p, "wb");
        if (!f || fwrite(data + pos, 1, take, f) != take || fclose(f) != 0) {
            perror(p);
            abort();
        }
        pos += take;
    }
    return flags;
}

/* Reads every image of every split (what a training run and an evaluation would touch). */
#include "data/dataset.h"
static void fz_touch_images(const Dataset *ds) {
    Image img = {0};
    Err e;
    for (int s = 0; s < SPLIT_COUNT; s++)
        for (int i = 0; i < ds->split[s].n && i < 64; i++)
            if (dataset_image(ds, (Split)s, i, 0, &img, &e) == 0) {
                volatile uint8_t sink = img.px[(size_t)img.w * img.h * img.c - 1];
                (void)sink;
            }
    image_free(&img);
}

#endif
