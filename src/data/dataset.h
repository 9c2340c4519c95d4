/* Datasets: what images there are, in which split, with which labels, and how to get image i's
 * pixels. Formats: IDX (MNIST, Fashion-MNIST; gzipped or not), the CIFAR-10/100 binary
 * versions, the STL-10 binary version, and image folders (torchvision's ImageFolder layout).
 *
 * Fixed-size formats are mapped or read into memory once, as stored; pixels are converted to
 * HWC on access. A folder keeps only its file list: images are decoded on access, so memory
 * stays bounded whatever the folder's size. */
#ifndef BYOL_DATASET_H
#define BYOL_DATASET_H

#include <stdint.h>
#include <stdio.h>

#include "../core/common.h"
#include "image.h"

typedef enum { SPLIT_TRAIN, SPLIT_TEST, SPLIT_UNLABELED, SPLIT_COUNT } Split;
extern const char *const SPLIT_NAMES[SPLIT_COUNT]; /* "train", "test", "unlabeled" */
/* A split by its name; -1 when there is none of that name. */
int split_parse(const char *name, Split *out);

/* How a fixed-size format stores one image's pixels inside its record. */
typedef enum {
    PIXELS_HWC,          /* IDX (one channel) */
    PIXELS_CHW,          /* CIFAR: three planes, each row-major */
    PIXELS_CHW_COLMAJOR, /* STL-10: three planes, each column-major */
} PixelLayout;

typedef struct {
    int n;              /* images in this split (0: split absent) */
    int32_t *labels;    /* n labels in [0, n_classes), or -1 where there is none */
    /* Fixed-size formats: image i is at records + i * record_stride + pixel_offset. */
    const uint8_t *records;
    size_t record_stride, pixel_offset;
    PixelLayout layout;
    /* Folders: image i is the file paths[i]. */
    char **paths;
} DatasetSplit;

typedef struct {
    char kind[16];          /* "mnist", "fashion-mnist", "cifar10", "cifar100", "stl10", "folder" */
    char root[4096];
    int channels;           /* 1 or 3: what dataset_image returns */
    int height, width;      /* stored size; for a folder the typical image's (the median by
                             * shorter side), and sizes_vary set when not all images share it */
    int sizes_vary;
    int max_height, max_width; /* the largest height and width (those above for fixed sizes) */
    int n_classes;
    char **class_names;     /* n_classes names */
    DatasetSplit split[SPLIT_COUNT];
    int n_skipped;          /* folder files that were skipped, each with one warning */
    char **skipped;         /* n_skipped lines "path: reason" */
    /* Owned memory: mapped files and buffers, released by dataset_close. */
    struct {
        void *p;
        size_t size;
        int mapped;
    } blobs[16];
    int n_blobs;
} Dataset;

/* Opens PATH as dataset `kind` ("mnist", "fashion-mnist", "cifar10", "cifar100", "stl10",
 * "folder"), or detects the format when kind is NULL. Each skipped folder file is also printed
 * as one warning line to `warn` (NULL: silent). Fails with one line naming the file and the
 * problem: unreadable path, empty folder, truncated or wrongly sized file (expected vs found),
 * bad IDX magic, labels that do not match the images. */
int dataset_open(Dataset *ds, const char *path, const char *kind, FILE *warn, Err *e);
void dataset_close(Dataset *ds);

/* The view side to train at when --image-size is not given: the (typical) image's shorter side,
 * at most 224 when sizes vary (photos are brought to ImageNet's size, not trained at full size). */
int dataset_default_image_size(const Dataset *ds);

/* A view of ds whose split s holds only rows[0..n) of ds's split s, in that order (labels,
 * pictures or folder paths), sharing everything else with ds: so that extract_features computes
 * the features of chosen images only (retrieval's queries, fine-tuning's labelled subset).
 * Released by dataset_split_view_free, never by dataset_close; ds must outlive it. */
void dataset_split_view(Dataset *view, const Dataset *ds, Split s, const int *rows, int n);
void dataset_split_view_free(Dataset *view, Split s);

/* Image i of split s as HWC uint8 with ds->channels channels, in out (reused across calls).
 * min_side is a decoding hint for folders (see image_decode_mem). Thread-safe: any number of
 * threads may call it at once with their own `out`. */
int dataset_image(const Dataset *ds, Split s, int i, int min_side, Image *out, Err *e);

/* Internal: the per-format openers dataset_open dispatches to (src/data/{idx,cifar,stl10,
 * folder}.c). Each fills ds (kind, channels, size, classes, splits, blobs) or fails. */
int idx_open(Dataset *ds, const char *root, int fashion, Err *e);
int cifar_open(Dataset *ds, const char *root, int cifar100, Err *e);
int stl10_open(Dataset *ds, const char *root, Err *e);
/* The record counts the fixed-size formats must hold exactly (files of any other size are
 * refused): the official archives' by default. Fuzz targets open with small counts, so that
 * hostile files of a few kilobytes reach every check after the size check. */
typedef struct {
    int cifar_batch;    /* each CIFAR-10 batch and CIFAR-100's test.bin: 10000 */
    int cifar100_train; /* CIFAR-100's train.bin: 50000 */
    int stl_train, stl_test, stl_unlabeled; /* 5000, 8000, 100000 */
} DatasetCounts;
extern const DatasetCounts DATASET_COUNTS_OFFICIAL;
int cifar_open_counts(Dataset *ds, const char *root, int cifar100, const DatasetCounts *counts, Err *e);
int stl10_open_counts(Dataset *ds, const char *root, const DatasetCounts *counts, Err *e);
/* root is a folder (the layouts of folder.c), or one image file: then a train split of that
 * image alone, unlabeled. */
int folder_open(Dataset *ds, const char *root, FILE *warn, Err *e);
/* 1 when path is a regular file whose extension is an image byol.c reads. */
int folder_image_file(const char *path);
/* Helpers for openers: keep a blob (mapped or malloc'ed) for dataset_close to release, and the
 * whole file mapped read-only (size returned; errors name the file). */
void dataset_keep_blob(Dataset *ds, void *p, size_t size, int mapped);
const uint8_t *dataset_map_file(Dataset *ds, const char *path, size_t *size, Err *e);
char *dataset_strdup(const char *s);
/* Sets n_classes and class_names: from the text file root/file when it exists (one name a line,
 * blank lines skipped, exactly n names), else from `defaults` (NULL: "0" .. "n-1"). */
int dataset_set_class_names(Dataset *ds, const char *root, const char *file, int n,
                            const char *const *defaults, Err *e);

#endif
