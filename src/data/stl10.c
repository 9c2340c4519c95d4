/* STL-10, binary version ("stl10_binary"): train_X.bin + train_y.bin (5000 labelled images),
 * test_X.bin + test_y.bin (8000), unlabeled_X.bin (100000, 2.7 GB). X files hold 96x96 RGB
 * images, each as three planes stored column-major (the official reader transposes them with
 * np.transpose(images, (0, 3, 2, 1))); y files one byte per image, labels 1..10. Every file
 * must have exactly its official size (a file cut short on an image boundary is refused too).
 *
 * X files are mapped, never copied; pixels are transposed on access. Each pair is optional, but
 * a pair needs both halves, and the train pair or the unlabeled file must exist. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset.h"


static const char *const STL10_NAMES[10] = {"airplane", "bird",  "car",    "cat",  "deer",
                                            "dog",      "horse", "monkey", "ship", "truck"};

enum { STL_SIDE = 96, STL_IMAGE = 3 * STL_SIDE * STL_SIDE };

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int file_size(const char *path, size_t *size, Err *e) {
    struct stat st;
    if (stat(path, &st) != 0) return err_set(e, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return err_set(e, "%s: not a regular file", path);
    *size = (size_t)st.st_size;
    return 0;
}

/* Checks an X file's size against the official image count, then maps it. */
static const uint8_t *map_x(Dataset *ds, const char *path, int count, Err *e) {
    size_t size, expect = (size_t)count * STL_IMAGE;
    if (file_size(path, &size, e) != 0) return NULL;
    if (size != expect) {
        if (size % STL_IMAGE)
            err_set(e, "%s: wrongly sized STL-10 file: expected %zu bytes (%d images), found %zu "
                       "(not a whole number of %d-byte 96x96x3 images: truncated?)", path, expect,
                    count, size, STL_IMAGE);
        else
            err_set(e, "%s: wrongly sized STL-10 file: expected %zu bytes (%d images), found %zu "
                       "(%zu image%s: %s)", path, expect, count, size, size / STL_IMAGE,
                    size / STL_IMAGE == 1 ? "" : "s", size < expect ? "truncated?" : "too many");
        return NULL;
    }
    const uint8_t *p = dataset_map_file(ds, path, &size, e);
    if (p && size != expect) {
        err_set(e, "%s: changed size while being opened", path);
        return NULL;
    }
    return p;
}

static void set_split(DatasetSplit *sp, const uint8_t *x, int n) {
    sp->n = n;
    sp->records = x;
    sp->record_stride = STL_IMAGE;
    sp->pixel_offset = 0;
    sp->layout = PIXELS_CHW_COLMAJOR;
}

/* A labelled split of `count` images from prefix_X.bin and prefix_y.bin; absent (0) when
 * neither exists. */
static int open_pair(Dataset *ds, const char *root, const char *prefix, int count,
                     DatasetSplit *sp, Err *e) {
    char xp[4200], yp[4200];
    snprintf(xp, sizeof xp, "%s/%s_X.bin", root, prefix);
    snprintf(yp, sizeof yp, "%s/%s_y.bin", root, prefix);
    int hx = exists(xp), hy = exists(yp);
    if (!hx && !hy) return 0;
    if (hx != hy)
        return err_set(e, "%s exists but %s does not: the %s split needs both", hx ? xp : yp,
                       hx ? yp : xp, prefix);
    const int n = count;
    const uint8_t *x = map_x(ds, xp, n, e);
    if (!x) return -1;
    size_t ny;
    if (file_size(yp, &ny, e) != 0) return -1;
    if (ny != (size_t)n)
        return err_set(e, "%s: wrongly sized STL-10 label file: expected %d bytes (%d labels, "
                          "one per image of %s), found %zu", yp, n, n, xp, ny);
    uint8_t *y = read_file(yp, &ny, e);
    if (!y) return -1;
    if (ny != (size_t)n) { /* changed since the check above */
        err_set(e, "%s holds %d images but %s %zu labels", xp, n, yp, ny);
        free(y);
        return -1;
    }
    sp->labels = malloc(sizeof(int32_t) * (size_t)n);
    if (!sp->labels) die("out of memory for %d labels", n);
    for (int i = 0; i < n; i++) {
        if (y[i] < 1 || y[i] > 10) {
            err_set(e, "%s: label %d at index %d is out of range (STL-10 labels are 1..10)", yp,
                    y[i], i);
            free(y);
            return -1;
        }
        sp->labels[i] = y[i] - 1;
    }
    free(y);
    set_split(sp, x, n);
    return 0;
}

int stl10_open(Dataset *ds, const char *root, Err *e) {
    return stl10_open_counts(ds, root, &DATASET_COUNTS_OFFICIAL, e);
}

int stl10_open_counts(Dataset *ds, const char *root, const DatasetCounts *counts, Err *e) {
    snprintf(ds->kind, sizeof ds->kind, "stl10");
    ds->channels = 3;
    ds->height = ds->width = STL_SIDE;
    if (open_pair(ds, root, "train", counts->stl_train, &ds->split[SPLIT_TRAIN], e) != 0) return -1;
    if (open_pair(ds, root, "test", counts->stl_test, &ds->split[SPLIT_TEST], e) != 0) return -1;
    char up[4200];
    snprintf(up, sizeof up, "%s/unlabeled_X.bin", root);
    if (exists(up)) {
        const int n = counts->stl_unlabeled;
        const uint8_t *x = map_x(ds, up, n, e);
        if (!x) return -1;
        DatasetSplit *sp = &ds->split[SPLIT_UNLABELED];
        sp->labels = malloc(sizeof(int32_t) * (size_t)n);
        if (!sp->labels) die("out of memory for %d labels", n);
        for (int i = 0; i < n; i++) sp->labels[i] = -1;
        set_split(sp, x, n);
    }
    if (ds->split[SPLIT_TRAIN].n == 0 && ds->split[SPLIT_UNLABELED].n == 0)
        return err_set(e, "%s: no train_X.bin + train_y.bin and no unlabeled_X.bin (an STL-10 "
                          "binary folder holds them, with test_X.bin + test_y.bin)", root);
    return dataset_set_class_names(ds, root, "class_names.txt", 10, STL10_NAMES, e);
}
