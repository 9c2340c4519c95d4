/* CIFAR-10 and CIFAR-100, binary versions ("cifar-10-batches-bin", "cifar-100-binary").
 *
 * CIFAR-10: data_batch_1.bin .. data_batch_5.bin (train: batch 1 required, then consecutive
 * ones; all five in the official archive), test_batch.bin (test, optional). Each record is one
 * label byte and 3072 pixel bytes (three 32x32 planes, R, G, B, rows in order).
 * CIFAR-100: train.bin (required) and test.bin (optional), records of a coarse label byte, a
 * fine label byte and the 3072 pixels; the fine label (100 classes) is the label.
 * Every file must hold exactly the official archive's record count (10000 per CIFAR-10 batch and
 * in test.bin, 50000 in train.bin): a file cut short, even on a record boundary, is refused.
 *
 * A split in one file is mapped; the CIFAR-10 train batches are read into one buffer (150 MB)
 * so that its records are contiguous. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset.h"


static const char *const CIFAR10_NAMES[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                              "dog",      "frog",       "horse", "ship", "truck"};

enum { CIFAR_PIXELS = 3 * 32 * 32, CIFAR_MAX_FILES = 5 };

typedef struct {
    const char *name;       /* "CIFAR-10" or "CIFAR-100" */
    size_t record;          /* 3073 or 3074 */
    int n_classes;
} CifarFormat;

static int is_file(const char *path, size_t *size) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    *size = (size_t)st.st_size;
    return 1;
}

/* The official archives' record counts: CIFAR-10 batches and the CIFAR-100 test file hold
 * 10000 records, CIFAR-100's train.bin 50000. Anything else (a file cut on a record boundary
 * included) is refused. */
static int check_size(const CifarFormat *f, const char *path, size_t size, size_t records,
                      Err *e) {
    size_t expect = records * f->record;
    if (size == expect) return 0;
    if (size % f->record)
        return err_set(e, "%s: wrongly sized %s file: expected %zu bytes (%zu records), found "
                          "%zu (not a whole number of %zu-byte records: truncated?)", path,
                       f->name, expect, records, size, f->record);
    size_t got = size / f->record;
    return err_set(e, "%s: wrongly sized %s file: expected %zu bytes (%zu records), found %zu "
                      "(%zu record%s: %s)", path, f->name, expect, records, size, got,
                   got == 1 ? "" : "s", size < expect ? "truncated?" : "too many");
}

/* Reads the files one after another into one malloc'ed buffer, kept by ds; a single file is
 * mapped instead. Sizes were checked by the caller (and are checked again against the read). */
static const uint8_t *load_files(Dataset *ds, char paths[][4200], const size_t *sizes, int n,
                                 size_t total, Err *e) {
    if (n == 1) {
        size_t size;
        const uint8_t *p = dataset_map_file(ds, paths[0], &size, e);
        if (p && size != sizes[0]) {
            err_set(e, "%s: changed size while being opened", paths[0]);
            return NULL;
        }
        return p;
    }
    uint8_t *buf = malloc(total);
    if (!buf) die("out of memory reading %.1f MiB of CIFAR batches", total / 1048576.0);
    dataset_keep_blob(ds, buf, total, 0);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f) {
            err_set(e, "%s: cannot open: %s", paths[i], strerror(errno));
            return NULL;
        }
        size_t got = fread(buf + off, 1, sizes[i], f);
        int extra = fgetc(f) != EOF;
        fclose(f);
        if (got != sizes[i] || extra) {
            err_set(e, "%s: read %zu bytes, expected %zu (file changed or read error)", paths[i],
                    got, sizes[i]);
            return NULL;
        }
        off += sizes[i];
    }
    return buf;
}

/* One split from `n` files of `records` records each: sizes, labels, the record table. */
static int open_split(Dataset *ds, const CifarFormat *f, DatasetSplit *sp, char paths[][4200],
                      int n, size_t records, Err *e) {
    size_t sizes[CIFAR_MAX_FILES] = {0}, total = 0;
    for (int i = 0; i < n; i++) {
        if (!is_file(paths[i], &sizes[i]))
            return err_set(e, "%s: cannot open: %s", paths[i], strerror(errno ? errno : ENOENT));
        if (check_size(f, paths[i], sizes[i], records, e) != 0) return -1;
        total += sizes[i];
    }
    const uint8_t *rec = load_files(ds, paths, sizes, n, total, e);
    if (!rec) return -1;
    int count = (int)(total / f->record);
    sp->labels = malloc(sizeof(int32_t) * (size_t)count);
    if (!sp->labels) die("out of memory for %d labels", count);
    /* Label errors name the file the record came from. */
    int file = 0;
    size_t file_end = sizes[0] / f->record, file_start = 0;
    for (int i = 0; i < count; i++) {
        while ((size_t)i >= file_end && file + 1 < n) {
            file_start = file_end;
            file_end += sizes[++file] / f->record;
        }
        const uint8_t *r = rec + (size_t)i * f->record;
        int label = f->record == 3074 ? r[1] : r[0];
        if (f->record == 3074 && r[0] >= 20)
            return err_set(e, "%s: coarse label %d of record %zu is out of range (0..19): not "
                              "a %s binary file?", paths[file], r[0], (size_t)i - file_start,
                           f->name);
        if (label >= f->n_classes)
            return err_set(e, "%s: label %d of record %zu is out of range (0..%d): not a %s "
                              "binary file?", paths[file], label, (size_t)i - file_start,
                           f->n_classes - 1, f->name);
        sp->labels[i] = label;
    }
    sp->n = count;
    sp->records = rec;
    sp->record_stride = f->record;
    sp->pixel_offset = f->record - CIFAR_PIXELS;
    sp->layout = PIXELS_CHW;
    return 0;
}

int cifar_open(Dataset *ds, const char *root, int cifar100, Err *e) {
    return cifar_open_counts(ds, root, cifar100, &DATASET_COUNTS_OFFICIAL, e);
}

int cifar_open_counts(Dataset *ds, const char *root, int cifar100, const DatasetCounts *counts, Err *e) {
    static const CifarFormat C10 = {"CIFAR-10", 1 + CIFAR_PIXELS, 10};
    static const CifarFormat C100 = {"CIFAR-100", 2 + CIFAR_PIXELS, 100};
    const CifarFormat *f = cifar100 ? &C100 : &C10;
    snprintf(ds->kind, sizeof ds->kind, "%s", cifar100 ? "cifar100" : "cifar10");
    ds->channels = 3;
    ds->height = ds->width = 32;
    char paths[CIFAR_MAX_FILES][4200];
    size_t size;
    int n = 0;
    if (cifar100) {
        snprintf(paths[0], sizeof paths[0], "%s/train.bin", root);
        if (!is_file(paths[0], &size))
            return err_set(e, "%s: no train.bin (a CIFAR-100 binary folder holds train.bin and "
                              "test.bin)", root);
        n = 1;
    } else {
        for (int b = 1; b <= CIFAR_MAX_FILES; b++) {
            snprintf(paths[n], sizeof paths[n], "%s/data_batch_%d.bin", root, b);
            if (is_file(paths[n], &size)) {
                if (n != b - 1)
                    return err_set(e, "%s exists but %s/data_batch_%d.bin does not (the train "
                                      "batches must be consecutive from 1)", paths[n], root, n + 1);
                n++;
            }
        }
        if (n == 0)
            return err_set(e, "%s: no data_batch_1.bin (a CIFAR-10 binary folder holds "
                              "data_batch_1.bin .. data_batch_5.bin and test_batch.bin)", root);
    }
    size_t train_records = (size_t)(cifar100 ? counts->cifar100_train : counts->cifar_batch);
    if (open_split(ds, f, &ds->split[SPLIT_TRAIN], paths, n, train_records, e) != 0) return -1;

    snprintf(paths[0], sizeof paths[0], "%s/%s", root, cifar100 ? "test.bin" : "test_batch.bin");
    if (is_file(paths[0], &size) &&
        open_split(ds, f, &ds->split[SPLIT_TEST], paths, 1, (size_t)counts->cifar_batch, e) != 0)
        return -1;

    return dataset_set_class_names(ds, root, cifar100 ? "fine_label_names.txt" : "batches.meta.txt",
                                   f->n_classes, cifar100 ? NULL : CIFAR10_NAMES, e);
}
