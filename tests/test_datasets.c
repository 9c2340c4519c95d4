/* Datasets in fixed-size formats (IDX plain and gzipped, CIFAR-10, CIFAR-100, STL-10): small
 * generated files opened by kind and by detection, pixels checked position by position against
 * the layout each format stores (so CHW and column-major conversions are exact), every malformed
 * input refused with one line naming the file (expected vs found sizes where relevant), and the
 * real Fashion-MNIST from Debian's dataset-fashion-mnist package. CIFAR and STL-10 files must
 * have their official sizes; the tests make them sparse (a few KB on disk each). */
#include <pthread.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/dataset.h"
#include "harness.h"

/* ---------------------------------------------------------------- file helpers */

/* A fresh folder TEST_TMP/name (emptied if it exists); returns its path. */
static const char *fresh_dir(const char *name) {
    const char *p = tmp_path(name);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", p, p);
    if (system(cmd) != 0) {
        printf("FATAL cannot create %s\n", p);
        exit(2);
    }
    return p;
}

static const char *in_dir(const char *dir, const char *name) {
    static char buf[8][1200];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile g = gzopen(path, "wb");
    if (!g || (n && gzwrite(g, data, (unsigned)n) != (int)n) || gzclose(g) != Z_OK) {
        printf("FATAL cannot write %s\n", path);
        exit(2);
    }
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

/* Expects dataset_open to fail with one line that names `file` (NULL: not checked) and
 * contains each of the NULL-terminated needles. */
static void expect_open_error_v(const char *path, const char *kind, const char *file,
                                const char *const *needles) {
    Dataset ds;
    Err e = {{0}};
    int rc = dataset_open(&ds, path, kind, NULL, &e);
    CHECK(rc != 0, "%s (%s) accepted, expected an error", path, kind ? kind : "detect");
    if (rc == 0) {
        dataset_close(&ds);
        return;
    }
    if (file) CHECK(strstr(e.msg, file) != NULL, "message '%s' does not name %s", e.msg, file);
    for (int i = 0; needles[i]; i++)
        CHECK(strstr(e.msg, needles[i]) != NULL, "message '%s' lacks '%s'", e.msg, needles[i]);
    CHECK(strchr(e.msg, '\n') == NULL, "message is one line: '%s'", e.msg);
}
#define expect_open_error(path, kind, file, ...) \
    expect_open_error_v(path, kind, file, (const char *const[]){__VA_ARGS__, NULL})

/* ---------------------------------------------------------------- IDX */

/* Pixel y, x of IDX image i: distinct along rows and columns. */
static uint8_t idx_px(int i, int y, int x) { return (uint8_t)(i * 37 + y * 11 + x * 5 + 1); }
static uint8_t idx_label(int i) { return (uint8_t)((i * 7 + 3) % 10); }

/* An IDX image file's bytes (16-byte header, n images rows x cols); *size gets the length. */
static uint8_t *idx_images(int n, int rows, int cols, uint32_t magic, size_t *size) {
    *size = 16 + (size_t)n * rows * cols;
    uint8_t *b = malloc(*size);
    uint32_t h[4] = {magic, (uint32_t)n, (uint32_t)rows, (uint32_t)cols};
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 4; j++) b[4 * k + j] = (uint8_t)(h[k] >> (24 - 8 * j));
    for (int i = 0; i < n; i++)
        for (int y = 0; y < rows; y++)
            for (int x = 0; x < cols; x++) b[16 + ((size_t)i * rows + y) * cols + x] = idx_px(i, y, x);
    return b;
}

static void put_be32_idx(uint8_t *p, uint32_t v) {
    for (int j = 0; j < 4; j++) p[j] = (uint8_t)(v >> (24 - 8 * j));
}

static uint8_t *idx_labels(int n, size_t *size) {
    *size = 8 + (size_t)n;
    uint8_t *b = malloc(*size);
    uint32_t h[2] = {0x801, (uint32_t)n};
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++) b[4 * k + j] = (uint8_t)(h[k] >> (24 - 8 * j));
    for (int i = 0; i < n; i++) b[8 + i] = idx_label(i);
    return b;
}

/* Writes an IDX folder: train n_train images, test n_test (0: no t10k files), rows x cols. */
static void write_idx_dir(const char *dir, int gz, int n_train, int n_test, int rows, int cols) {
    void (*w)(const char *, const void *, size_t) = gz ? write_gz : write_bytes;
    const char *sfx = gz ? ".gz" : "";
    char name[128];
    size_t n;
    uint8_t *b;
    for (int t = 0; t < 2; t++) {
        int count = t ? n_test : n_train;
        if (!count) continue;
        const char *pre = t ? "t10k" : "train";
        snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", pre, sfx);
        b = idx_images(count, rows, cols, 0x803, &n);
        w(in_dir(dir, name), b, n);
        free(b);
        snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", pre, sfx);
        b = idx_labels(count, &n);
        w(in_dir(dir, name), b, n);
        free(b);
    }
}

/* Checks split s of an opened IDX dataset: count, labels, and every pixel of images 0 and n-1. */
static void check_idx_split(const Dataset *ds, Split s, int n, int rows, int cols) {
    const DatasetSplit *sp = &ds->split[s];
    CHECK(sp->n == n, "%s split: %d images, expected %d", SPLIT_NAMES[s], sp->n, n);
    if (sp->n != n) return;
    int bad = 0;
    for (int i = 0; i < n; i++) bad += sp->labels[i] != idx_label(i);
    CHECK(bad == 0, "%s split: %d wrong labels", SPLIT_NAMES[s], bad);
    Image img = {0};
    Err e;
    int which[2] = {0, n - 1};
    for (int k = 0; k < 2; k++) {
        int i = which[k];
        CHECK(dataset_image(ds, s, i, 0, &img, &e) == 0, "%s", e.msg);
        CHECK(img.w == cols && img.h == rows && img.c == 1, "image %d is %dx%dx%d", i, img.w,
              img.h, img.c);
        bad = 0;
        for (int y = 0; y < rows; y++)
            for (int x = 0; x < cols; x++) bad += img.px[y * cols + x] != idx_px(i, y, x);
        CHECK(bad == 0, "%s image %d: %d wrong pixels", SPLIT_NAMES[s], i, bad);
    }
    image_free(&img);
}

static void test_idx_plain(void) {
    const char *dir = fresh_dir("digits_plain");
    write_idx_dir(dir, 0, 7, 3, 5, 6);
    for (int detect = 0; detect < 2; detect++) {
        Dataset ds;
        Err e;
        int rc = dataset_open(&ds, dir, detect ? NULL : "mnist", NULL, &e);
        CHECK(rc == 0, "%s", e.msg);
        if (rc) continue;
        CHECK(strcmp(ds.kind, "mnist") == 0, "kind %s", ds.kind);
        CHECK(ds.channels == 1 && ds.height == 5 && ds.width == 6 && !ds.sizes_vary,
              "channels %d size %dx%d", ds.channels, ds.height, ds.width);
        CHECK(ds.n_classes == 10 && strcmp(ds.class_names[0], "0") == 0 &&
                  strcmp(ds.class_names[9], "9") == 0, "class names");
        check_idx_split(&ds, SPLIT_TRAIN, 7, 5, 6);
        check_idx_split(&ds, SPLIT_TEST, 3, 5, 6);
        CHECK(ds.split[SPLIT_UNLABELED].n == 0, "no unlabeled split");
        dataset_close(&ds);
    }
    /* The test split is optional. */
    dir = fresh_dir("digits_train_only");
    write_idx_dir(dir, 0, 4, 0, 2, 3);
    Dataset ds;
    Err e;
    CHECK(dataset_open(&ds, dir, NULL, NULL, &e) == 0, "%s", e.msg);
    check_idx_split(&ds, SPLIT_TRAIN, 4, 2, 3);
    CHECK(ds.split[SPLIT_TEST].n == 0, "no test split");
    dataset_close(&ds);
}

static void test_idx_gz(void) {
    /* "fashion" in the folder's name makes detection choose Fashion-MNIST. */
    const char *dir = fresh_dir("my_Fashion_gz");
    write_idx_dir(dir, 1, 9, 4, 4, 3);
    for (int detect = 0; detect < 2; detect++) {
        Dataset ds;
        Err e;
        int rc = dataset_open(&ds, dir, detect ? NULL : "fashion-mnist", NULL, &e);
        CHECK(rc == 0, "%s", e.msg);
        if (rc) continue;
        CHECK(strcmp(ds.kind, "fashion-mnist") == 0, "kind %s", ds.kind);
        CHECK(ds.channels == 1 && ds.height == 4 && ds.width == 3, "size");
        CHECK(ds.n_classes == 10 && strcmp(ds.class_names[0], "T-shirt/top") == 0 &&
                  strcmp(ds.class_names[9], "Ankle boot") == 0, "Fashion-MNIST class names");
        check_idx_split(&ds, SPLIT_TRAIN, 9, 4, 3);
        check_idx_split(&ds, SPLIT_TEST, 4, 4, 3);
        dataset_close(&ds);
    }
    /* Plain train files and gzipped test files in one folder. */
    dir = fresh_dir("digits_mixed");
    write_idx_dir(dir, 0, 3, 0, 4, 4);
    const char *tmp = fresh_dir("digits_mixed_tmp");
    write_idx_dir(tmp, 1, 0, 2, 4, 4);
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "mv '%s'/t10k-* '%s'/", tmp, dir);
    CHECK(system(cmd) == 0, "moving files");
    Dataset ds;
    Err e;
    CHECK(dataset_open(&ds, dir, "mnist", NULL, &e) == 0, "%s", e.msg);
    check_idx_split(&ds, SPLIT_TRAIN, 3, 4, 4);
    check_idx_split(&ds, SPLIT_TEST, 2, 4, 4);
    dataset_close(&ds);
    /* Uncompressed data under a .gz name is read as it is (as gzip -dc would). */
    dir = fresh_dir("digits_not_really_gz");
    write_idx_dir(dir, 0, 3, 0, 4, 4);
    snprintf(cmd, sizeof cmd, "cd '%s' && mv train-images-idx3-ubyte train-images-idx3-ubyte.gz",
             dir);
    CHECK(system(cmd) == 0, "renaming");
    CHECK(dataset_open(&ds, dir, "mnist", NULL, &e) == 0, "%s", e.msg);
    check_idx_split(&ds, SPLIT_TRAIN, 3, 4, 4);
    dataset_close(&ds);
}

static void test_idx_errors(void) {
    size_t n;
    uint8_t *b;
    const char *dir, *f;

    /* Bad magic: a label file's magic on the image file. */
    dir = fresh_dir("idx_magic");
    write_idx_dir(dir, 0, 3, 0, 2, 2);
    f = in_dir(dir, "train-images-idx3-ubyte");
    b = idx_images(3, 2, 2, 0x801, &n);
    write_bytes(f, b, n);
    free(b);
    expect_open_error(dir, "mnist", f, "bad IDX magic 0x00000801", "expected 0x00000803");

    /* Truncated, plain: 5 images of 3x4 are 76 bytes; 70 written. */
    dir = fresh_dir("idx_trunc");
    write_idx_dir(dir, 0, 5, 0, 3, 4);
    f = in_dir(dir, "train-images-idx3-ubyte");
    b = idx_images(5, 3, 4, 0x803, &n);
    write_bytes(f, b, n - 6);
    expect_open_error(dir, "mnist", f, "expected 76 bytes, found 70");
    /* ... and too long. */
    uint8_t *longer = calloc(1, n + 3);
    memcpy(longer, b, n);
    write_bytes(f, longer, n + 3);
    free(longer);
    expect_open_error(dir, "mnist", f, "expected 76 bytes, found 79");

    /* Truncated, gzipped: found is the decompressed size. */
    dir = fresh_dir("idx_trunc_gz");
    write_idx_dir(dir, 1, 5, 0, 3, 4);
    f = in_dir(dir, "train-images-idx3-ubyte.gz");
    write_gz(f, b, n - 6);
    expect_open_error(dir, NULL, f, "expected 76 bytes, found 70");
    free(b);

    /* Labels for 4 images next to 5 images. */
    dir = fresh_dir("idx_count");
    write_idx_dir(dir, 0, 5, 0, 3, 4);
    f = in_dir(dir, "train-labels-idx1-ubyte");
    b = idx_labels(4, &n);
    write_bytes(f, b, n);
    free(b);
    expect_open_error(dir, "mnist", f, "4 labels", "5 images");

    /* A label value of 10. */
    b = idx_labels(5, &n);
    b[8 + 2] = 10;
    write_bytes(f, b, n);
    free(b);
    expect_open_error(dir, "mnist", f, "label 10 at index 2");

    /* Corrupt gzip data: bytes flipped inside the deflate stream. */
    dir = fresh_dir("idx_corrupt_gz");
    write_idx_dir(dir, 1, 50, 0, 16, 16);
    f = in_dir(dir, "train-images-idx3-ubyte.gz");
    uint8_t *gz = slurp(f, &n);
    for (size_t i = n / 3; i < n / 3 + 8; i++) gz[i] ^= 0x5a;
    write_bytes(f, gz, n);
    free(gz);
    expect_open_error(dir, "mnist", f, "corrupt gzip data");
    /* ... and a gzip stream cut in half. */
    dir = fresh_dir("idx_cut_gz");
    write_idx_dir(dir, 1, 50, 0, 16, 16);
    f = in_dir(dir, "train-images-idx3-ubyte.gz");
    gz = slurp(f, &n);
    write_bytes(f, gz, n / 2);
    free(gz);
    expect_open_error(dir, "mnist", f, "truncated gzip data");

    /* Gzip bombs: files that decompress to far more than their headers announce are refused
     * after expected + 1 bytes, without decompressing (or allocating) the rest. Labels: a header
     * for 2 labels (10 bytes) followed by 10 MB of zeros. */
    dir = fresh_dir("idx_bomb_labels");
    write_idx_dir(dir, 1, 2, 0, 4, 4);
    f = in_dir(dir, "train-labels-idx1-ubyte.gz");
    {
        size_t big = 10u << 20;
        uint8_t *z = calloc(1, big);
        b = idx_labels(2, &n);
        memcpy(z, b, n);
        free(b);
        write_gz(f, z, big);
        free(z);
    }
    struct stat st;
    CHECK(stat(f, &st) == 0 && st.st_size < 100000, "the bomb is small: %lld bytes",
          (long long)st.st_size);
    expect_open_error(dir, "mnist", f, "expected 10 bytes, found more than 10");
    /* Images: a header for 2 images of 4x4 (48 bytes), then 1 GiB of zeros, made of 64
     * concatenated gzip members of 16 MiB of zeros each (about 1 MB on disk). Decompressing it
     * all would take seconds and a 1 GiB buffer; refusing it takes microseconds. */
    dir = fresh_dir("idx_bomb_images");
    write_idx_dir(dir, 1, 2, 0, 4, 4);
    f = in_dir(dir, "train-images-idx3-ubyte.gz");
    {
        const size_t chunk = 16u << 20;
        uint8_t *z = calloc(1, chunk);
        b = idx_images(2, 4, 4, 0x803, &n);
        write_gz(f, b, n);
        free(b);
        const char *member = tmp_path("zeros.gz");
        write_gz(member, z, chunk);
        free(z);
        size_t mn;
        uint8_t *m = slurp(member, &mn);
        FILE *fp = fopen(f, "ab");
        for (int k = 0; k < 64; k++) CHECK(fwrite(m, 1, mn, fp) == mn, "appending");
        fclose(fp);
        free(m);
    }
    double t0 = now_seconds();
    expect_open_error(dir, NULL, f, "expected 48 bytes, found more than 48");
    double dt = now_seconds() - t0;
    CHECK(dt < 1.0, "a 1 GiB gzip bomb took %.2f s to refuse", dt);
    /* A header announcing the largest allowed dimensions (1e8 images of 4096x4096, 1.7 PB)
     * with 26 bytes behind it: the buffer grows with the data that arrives, so this is a size
     * error, not an attempt to allocate 1.7 PB. */
    dir = fresh_dir("idx_huge_header_gz");
    write_idx_dir(dir, 1, 2, 0, 4, 4);
    f = in_dir(dir, "train-images-idx3-ubyte.gz");
    b = idx_images(2, 4, 4, 0x803, &n);
    put_be32_idx(b + 4, 100000000u);
    put_be32_idx(b + 8, 4096);
    put_be32_idx(b + 12, 4096);
    write_gz(f, b, 42);
    free(b);
    expect_open_error(dir, NULL, f, "expected 1677721600000016 bytes, found 42");
    /* ... and a dimension beyond the limits is refused from the header alone. */
    b = idx_images(2, 4, 4, 0x803, &n);
    put_be32_idx(b + 8, 5000);
    write_gz(f, b, n);
    free(b);
    expect_open_error(dir, NULL, f, "implausible IDX images: dimension 1 is 5000");
    /* A header cut short inside the gzip stream. */
    b = idx_images(2, 4, 4, 0x803, &n);
    write_gz(f, b, 10);
    free(b);
    expect_open_error(dir, NULL, f, "expected at least 16 bytes (the header), found 10");

    /* Test files only: detected as IDX all the same, and the missing train files named. */
    dir = fresh_dir("idx_test_only");
    write_idx_dir(dir, 1, 0, 2, 2, 2);
    expect_open_error(dir, NULL, dir, "train-images-idx3-ubyte");

    /* Only half of the test pair. */
    dir = fresh_dir("idx_half_test");
    write_idx_dir(dir, 0, 3, 2, 2, 2);
    remove(in_dir(dir, "t10k-labels-idx1-ubyte"));
    expect_open_error(dir, "mnist", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");

    /* Test images of another size than the train images. */
    dir = fresh_dir("idx_test_size");
    write_idx_dir(dir, 0, 3, 0, 2, 2);
    b = idx_images(2, 3, 3, 0x803, &n);
    write_bytes(in_dir(dir, "t10k-images-idx3-ubyte"), b, n);
    free(b);
    b = idx_labels(2, &n);
    write_bytes(in_dir(dir, "t10k-labels-idx1-ubyte"), b, n);
    free(b);
    expect_open_error(dir, "mnist", "t10k-images-idx3-ubyte", "3x3", "2x2");

    /* No train images at all. */
    dir = fresh_dir("idx_empty");
    expect_open_error(dir, "mnist", dir, "train-images-idx3-ubyte");
}

/* ---------------------------------------------------------------- CIFAR */

/* Full-size files are made sparse: the few records a test checks are written at the start (or
 * patched in place), then the file is extended to its official size with ftruncate, so it takes
 * a few KB on disk however large it is. The rest reads back as zero bytes: label 0 and black
 * pixels. */
static void set_size(const char *path, size_t size) {
    if (truncate(path, (off_t)size) != 0) {
        printf("FATAL cannot resize %s to %zu bytes\n", path, size);
        exit(2);
    }
}

/* Overwrites n bytes at offset `at` of an existing file, keeping the rest (and its holes). */
static void patch_bytes(const char *path, size_t at, const void *data, size_t n) {
    FILE *f = fopen(path, "r+b");
    if (!f || fseek(f, (long)at, SEEK_SET) != 0 || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        printf("FATAL cannot patch %s\n", path);
        exit(2);
    }
}

/* Channel k, row y, column x of CIFAR/STL image `id`: distinct for every position in one image
 * (mod 256 over 32x32 is not, but a transposition or a channel mix-up changes most pixels). */
static uint8_t rgb_px(int id, int k, int y, int x) {
    return (uint8_t)(id * 101 + k * 71 + y * 13 + x * 3 + (x * y) % 7);
}

/* Record bytes for CIFAR image `id`: label byte(s), then three row-major planes. */
static void cifar_record(uint8_t *r, int id, int cifar100, int label) {
    int off = 1;
    if (cifar100) {
        r[0] = (uint8_t)(label / 5); /* coarse */
        r[1] = (uint8_t)label;
        off = 2;
    } else {
        r[0] = (uint8_t)label;
    }
    for (int k = 0; k < 3; k++)
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) r[off + k * 1024 + y * 32 + x] = rgb_px(id, k, y, x);
}

static int cifar_label(int id, int cifar100) { return cifar100 ? (id * 37 + 99) % 100 : (id * 3 + 1) % 10; }

enum { C10_BATCH = 10000, C100_TRAIN = 50000, C100_TEST = 10000 };

static size_t cifar_rec(int cifar100) { return cifar100 ? 3074 : 3073; }

/* A file of `total` records whose first `count` are images first .. first+count-1 (the rest
 * zero, sparse); total 0: exactly the `count` records. */
static void write_cifar(const char *path, int first, int count, int cifar100, int total) {
    size_t rec = cifar_rec(cifar100);
    uint8_t *b = malloc(rec * count);
    for (int i = 0; i < count; i++)
        cifar_record(b + rec * i, first + i, cifar100, cifar_label(first + i, cifar100));
    write_bytes(path, b, rec * count);
    free(b);
    if (total) set_size(path, rec * (size_t)total);
}

/* Every pixel of image i of split s equals rgb_px(id, ...), in HWC order (id < 0: all zero). */
static void check_rgb_image(const Dataset *ds, Split s, int i, int id, int side) {
    Image img = {0};
    Err e;
    int rc = dataset_image(ds, s, i, 0, &img, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc == 0) {
        CHECK(img.w == side && img.h == side && img.c == 3, "image is %dx%dx%d", img.w, img.h,
              img.c);
        int bad = 0;
        for (int y = 0; y < side; y++)
            for (int x = 0; x < side; x++)
                for (int k = 0; k < 3; k++)
                    bad += img.px[(y * side + x) * 3 + k] != (id < 0 ? 0 : rgb_px(id, k, y, x));
        CHECK(bad == 0, "%s image %d: %d of %d pixel values wrong", SPLIT_NAMES[s], i, bad,
              side * side * 3);
    }
    image_free(&img);
}

/* Records written at index `at` of a split: images first .. first+count-1. */
typedef struct {
    int at, count, first;
} Written;

/* Split s holds n images: the written runs (labels and every pixel checked) and zero records
 * elsewhere (label 0; the first one after each run and the last one checked black). */
static void check_cifar_split(const Dataset *ds, Split s, int n, const Written *runs, int nruns,
                              int cifar100) {
    const DatasetSplit *sp = &ds->split[s];
    CHECK(sp->n == n, "%s split: %d images, expected %d", SPLIT_NAMES[s], sp->n, n);
    if (sp->n != n) return;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int want = 0;
        for (int r = 0; r < nruns; r++)
            if (i >= runs[r].at && i < runs[r].at + runs[r].count)
                want = cifar_label(runs[r].first + i - runs[r].at, cifar100);
        bad += sp->labels[i] != want;
    }
    CHECK(bad == 0, "%s split: %d wrong labels", SPLIT_NAMES[s], bad);
    for (int r = 0; r < nruns; r++) {
        for (int j = 0; j < runs[r].count; j++)
            check_rgb_image(ds, s, runs[r].at + j, runs[r].first + j, 32);
        check_rgb_image(ds, s, runs[r].at + runs[r].count, -1, 32);
    }
    check_rgb_image(ds, s, n - 1, -1, 32);
}

static void test_cifar10(void) {
    const char *dir = fresh_dir("c10");
    write_cifar(in_dir(dir, "data_batch_1.bin"), 0, 3, 0, C10_BATCH);
    write_cifar(in_dir(dir, "data_batch_2.bin"), 3, 2, 0, C10_BATCH);
    write_cifar(in_dir(dir, "test_batch.bin"), 100, 2, 0, C10_BATCH);
    const Written train[2] = {{0, 3, 0}, {C10_BATCH, 2, 3}}, test[1] = {{0, 2, 100}};
    for (int detect = 0; detect < 2; detect++) {
        Dataset ds;
        Err e;
        int rc = dataset_open(&ds, dir, detect ? NULL : "cifar10", NULL, &e);
        CHECK(rc == 0, "%s", e.msg);
        if (rc) continue;
        CHECK(strcmp(ds.kind, "cifar10") == 0, "kind %s", ds.kind);
        CHECK(ds.channels == 3 && ds.height == 32 && ds.width == 32, "size");
        CHECK(ds.n_classes == 10 && strcmp(ds.class_names[0], "airplane") == 0 &&
                  strcmp(ds.class_names[9], "truck") == 0, "default class names");
        check_cifar_split(&ds, SPLIT_TRAIN, 2 * C10_BATCH, train, 2, 0); /* across both files */
        check_cifar_split(&ds, SPLIT_TEST, C10_BATCH, test, 1, 0);
        dataset_close(&ds);
    }
    /* The full-size files are sparse: a few KB on disk each. */
    struct stat st;
    CHECK(stat(in_dir(dir, "data_batch_1.bin"), &st) == 0 && st.st_size == 30730000 &&
              st.st_blocks * 512 < 1 << 20, "sparse batch: %lld bytes, %lld on disk",
          (long long)st.st_size, (long long)st.st_blocks * 512);
    /* Class names from batches.meta.txt (CRLF and blank lines tolerated); one batch only (mapped). */
    remove(in_dir(dir, "data_batch_2.bin"));
    write_text(in_dir(dir, "batches.meta.txt"), "c0\r\nc1\nc2\nc3\nc4\nc5\nc6\nc7\nc8\nlast one\n\n\n");
    Dataset ds;
    Err e;
    CHECK(dataset_open(&ds, dir, NULL, NULL, &e) == 0, "%s", e.msg);
    CHECK(ds.n_classes == 10 && strcmp(ds.class_names[0], "c0") == 0 &&
              strcmp(ds.class_names[9], "last one") == 0, "names from batches.meta.txt");
    check_cifar_split(&ds, SPLIT_TRAIN, C10_BATCH, train, 1, 0);
    dataset_close(&ds);
    write_text(in_dir(dir, "batches.meta.txt"), "a\nb\nc\n");
    expect_open_error(dir, NULL, "batches.meta.txt", "3 class names, expected 10");
}

static void test_cifar100(void) {
    const char *dir = fresh_dir("c100");
    write_cifar(in_dir(dir, "train.bin"), 0, 4, 1, C100_TRAIN);
    write_cifar(in_dir(dir, "test.bin"), 50, 3, 1, C100_TEST);
    const Written train[1] = {{0, 4, 0}}, test[1] = {{0, 3, 50}};
    for (int detect = 0; detect < 2; detect++) {
        Dataset ds;
        Err e;
        int rc = dataset_open(&ds, dir, detect ? NULL : "cifar100", NULL, &e);
        CHECK(rc == 0, "%s", e.msg);
        if (rc) continue;
        CHECK(strcmp(ds.kind, "cifar100") == 0, "kind %s", ds.kind);
        CHECK(ds.channels == 3 && ds.height == 32 && ds.width == 32, "size");
        CHECK(ds.n_classes == 100 && strcmp(ds.class_names[0], "0") == 0 &&
                  strcmp(ds.class_names[99], "99") == 0, "default class names");
        check_cifar_split(&ds, SPLIT_TRAIN, C100_TRAIN, train, 1, 1);
        check_cifar_split(&ds, SPLIT_TEST, C100_TEST, test, 1, 1);
        CHECK(ds.split[SPLIT_TRAIN].labels[0] == 99, "fine label 99 kept");
        dataset_close(&ds);
    }
    char names[2000] = "";
    for (int i = 0; i < 100; i++) {
        char line[32];
        snprintf(line, sizeof line, "fine%d\n", i);
        strcat(names, line);
    }
    write_text(in_dir(dir, "fine_label_names.txt"), names);
    Dataset ds;
    Err e;
    CHECK(dataset_open(&ds, dir, NULL, NULL, &e) == 0, "%s", e.msg);
    CHECK(ds.n_classes == 100 && strcmp(ds.class_names[42], "fine42") == 0,
          "names from fine_label_names.txt");
    dataset_close(&ds);
}

static void test_cifar_errors(void) {
    const char *dir = fresh_dir("c10_size"), *f;
    f = in_dir(dir, "data_batch_1.bin");
    /* Not a whole number of records. */
    write_cifar(f, 0, 2, 0, 0);
    FILE *fp = fopen(f, "ab");
    fwrite("xxxxx", 1, 5, fp);
    fclose(fp);
    expect_open_error(dir, NULL, f, "expected 30730000 bytes (10000 records), found 6151",
                      "3073-byte records");
    /* Cut on a record boundary: one record short of the official 10000, then one too many. */
    write_cifar(f, 0, 2, 0, C10_BATCH - 1);
    expect_open_error(dir, NULL, f, "expected 30730000 bytes (10000 records), found 30726927",
                      "9999 records: truncated");
    set_size(f, 3073 * (size_t)(C10_BATCH + 1));
    expect_open_error(dir, "cifar10", f, "expected 30730000 bytes (10000 records), found 30733073",
                      "10001 records");
    write_bytes(f, "", 0);
    expect_open_error(dir, "cifar10", f, "expected 30730000 bytes (10000 records), found 0");
    /* A later batch and the test batch are checked as strictly. */
    write_cifar(f, 0, 1, 0, C10_BATCH);
    const char *f2 = in_dir(dir, "data_batch_2.bin");
    write_cifar(f2, 0, 1, 0, 2);
    expect_open_error(dir, "cifar10", f2, "expected 30730000 bytes (10000 records), found 6146",
                      "2 records: truncated");
    remove(f2);
    const char *ft = in_dir(dir, "test_batch.bin");
    write_cifar(ft, 0, 1, 0, 1);
    expect_open_error(dir, "cifar10", ft, "expected 30730000 bytes (10000 records), found 3073",
                      "(1 record: truncated");

    dir = fresh_dir("c10_label");
    f = in_dir(dir, "data_batch_1.bin");
    write_cifar(f, 0, 3, 0, C10_BATCH);
    f2 = in_dir(dir, "data_batch_2.bin");
    write_cifar(f2, 3, 2, 0, C10_BATCH);
    patch_bytes(f2, 3073, "\x0a", 1); /* label 10 in the second record of batch 2 */
    expect_open_error(dir, "cifar10", f2, "label 10 of record 1");
    write_cifar(f2, 3, 2, 0, C10_BATCH);
    patch_bytes(f2, 3073 * (size_t)(C10_BATCH - 1), "\xff", 1); /* and in its last record */
    expect_open_error(dir, "cifar10", f2, "label 255 of record 9999");

    dir = fresh_dir("c10_gap");
    write_cifar(in_dir(dir, "data_batch_1.bin"), 0, 1, 0, C10_BATCH);
    write_cifar(in_dir(dir, "data_batch_3.bin"), 0, 1, 0, C10_BATCH);
    expect_open_error(dir, NULL, "data_batch_3.bin", "data_batch_2.bin");

    dir = fresh_dir("c100_size");
    f = in_dir(dir, "train.bin");
    write_cifar(f, 0, 2, 0, 0); /* CIFAR-10 records in a CIFAR-100 file: 6146 bytes */
    expect_open_error(dir, "cifar100", f, "expected 153700000 bytes (50000 records), found 6146",
                      "3074-byte records");
    /* A CIFAR-10 batch's 10000 records in a CIFAR-100 file: not a multiple of 3074 either. */
    write_cifar(f, 0, 2, 0, C10_BATCH);
    expect_open_error(dir, "cifar100", f, "found 30730000", "3074-byte records");
    /* 49999 records, cut on a record boundary. */
    write_cifar(f, 0, 2, 1, C100_TRAIN - 1);
    expect_open_error(dir, "cifar100", f,
                      "expected 153700000 bytes (50000 records), found 153696926",
                      "49999 records: truncated");
    /* The train file where the test file belongs: 50000 records, not 10000. */
    write_cifar(f, 0, 2, 1, C100_TRAIN);
    const char *t = in_dir(dir, "test.bin");
    write_cifar(t, 0, 2, 1, C100_TRAIN);
    expect_open_error(dir, NULL, t, "expected 30740000 bytes (10000 records), found 153700000",
                      "50000 records: too many");

    dir = fresh_dir("c100_label");
    f = in_dir(dir, "test.bin");
    write_cifar(in_dir(dir, "train.bin"), 0, 2, 1, C100_TRAIN);
    write_cifar(f, 0, 2, 1, C100_TEST);
    patch_bytes(f, 1, "\x64", 1); /* fine label 100 */
    expect_open_error(dir, NULL, f, "label 100 of record 0");
    write_cifar(f, 0, 2, 1, C100_TEST);
    patch_bytes(f, 3074 * (size_t)5, "\x14", 1); /* coarse label 20 in a zero record */
    expect_open_error(dir, NULL, f, "coarse label 20 of record 5");
}

/* ---------------------------------------------------------------- STL-10 */

enum { STL_IMG = 3 * 96 * 96, STL_TRAIN = 5000, STL_TEST = 8000, STL_UNLABELED = 100000 };

/* An STL-10 X file of `total` images (sparse) whose first `count` are images first ..
 * first+count-1, planes column-major as stored. */
static void write_stl_x(const char *path, int first, int count, int total) {
    size_t n = (size_t)STL_IMG * count;
    uint8_t *b = calloc(1, n ? n : 1);
    for (int i = 0; i < count; i++)
        for (int k = 0; k < 3; k++)
            for (int x = 0; x < 96; x++)
                for (int y = 0; y < 96; y++)
                    b[(size_t)STL_IMG * i + k * 9216 + x * 96 + y] = rgb_px(first + i, k, y, x);
    write_bytes(path, b, n);
    free(b);
    set_size(path, (size_t)STL_IMG * total);
}

static uint8_t stl_label(int id) { return (uint8_t)(id % 10 + 1); } /* 1..10 as stored */

/* A y file of `count` labels for images first .. first+count-1, written in full (a zero byte
 * is not a valid STL-10 label, so y files cannot be sparse; they are small). */
static void write_stl_y(const char *path, int first, int count) {
    uint8_t *b = malloc((size_t)count);
    for (int i = 0; i < count; i++) b[i] = stl_label(first + i);
    write_bytes(path, b, (size_t)count);
    free(b);
}

static void test_stl10(void) {
    const char *dir = fresh_dir("stl");
    write_stl_x(in_dir(dir, "train_X.bin"), 0, 2, STL_TRAIN);
    write_stl_y(in_dir(dir, "train_y.bin"), 0, STL_TRAIN);
    write_stl_x(in_dir(dir, "test_X.bin"), 9, 2, STL_TEST); /* labels 10 and 1: stored 9 and 0 */
    write_stl_y(in_dir(dir, "test_y.bin"), 9, STL_TEST);
    write_stl_x(in_dir(dir, "unlabeled_X.bin"), 20, 3, STL_UNLABELED); /* 2.7 GB, sparse */
    for (int detect = 0; detect < 2; detect++) {
        Dataset ds;
        Err e;
        int rc = dataset_open(&ds, dir, detect ? NULL : "stl10", NULL, &e);
        CHECK(rc == 0, "%s", e.msg);
        if (rc) continue;
        CHECK(strcmp(ds.kind, "stl10") == 0, "kind %s", ds.kind);
        CHECK(ds.channels == 3 && ds.height == 96 && ds.width == 96, "size");
        CHECK(ds.n_classes == 10 && strcmp(ds.class_names[1], "bird") == 0 &&
                  strcmp(ds.class_names[7], "monkey") == 0, "default class names");
        const DatasetSplit *tr = &ds.split[SPLIT_TRAIN], *te = &ds.split[SPLIT_TEST],
                           *un = &ds.split[SPLIT_UNLABELED];
        int ok = tr->n == STL_TRAIN && te->n == STL_TEST && un->n == STL_UNLABELED;
        CHECK(ok, "counts %d %d %d", tr->n, te->n, un->n);
        if (ok) {
            CHECK(tr->labels[0] == 0 && tr->labels[1] == 1, "train labels");
            CHECK(te->labels[0] == 9 && te->labels[1] == 0, "test labels 10, 1 -> 9, 0");
            int bad = 0;
            for (int i = 0; i < STL_TEST; i++) bad += te->labels[i] != stl_label(9 + i) - 1;
            CHECK(bad == 0, "%d wrong test labels", bad);
            CHECK(un->labels[0] == -1 && un->labels[STL_UNLABELED - 1] == -1,
                  "unlabeled labels are -1");
            check_rgb_image(&ds, SPLIT_TRAIN, 1, 1, 96);
            check_rgb_image(&ds, SPLIT_TRAIN, 2, -1, 96);
            check_rgb_image(&ds, SPLIT_TEST, 0, 9, 96);
            check_rgb_image(&ds, SPLIT_UNLABELED, 2, 22, 96);
            check_rgb_image(&ds, SPLIT_UNLABELED, STL_UNLABELED - 1, -1, 96);
        }
        dataset_close(&ds);
    }
    struct stat st;
    CHECK(stat(in_dir(dir, "unlabeled_X.bin"), &st) == 0 && st.st_blocks * 512 < 1 << 20,
          "sparse unlabeled_X.bin: %lld bytes on disk", (long long)st.st_blocks * 512);
    /* Unlabeled alone is a dataset; class names from class_names.txt. */
    dir = fresh_dir("stl_unlabeled");
    write_stl_x(in_dir(dir, "unlabeled_X.bin"), 0, 1, STL_UNLABELED);
    write_text(in_dir(dir, "class_names.txt"), "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n");
    Dataset ds;
    Err e;
    CHECK(dataset_open(&ds, dir, NULL, NULL, &e) == 0, "%s", e.msg);
    CHECK(ds.split[SPLIT_UNLABELED].n == STL_UNLABELED && ds.split[SPLIT_TRAIN].n == 0,
          "unlabeled only");
    CHECK(ds.n_classes == 10 && strcmp(ds.class_names[9], "j") == 0, "class_names.txt");
    dataset_close(&ds);
}

static void test_stl10_errors(void) {
    const char *dir = fresh_dir("stl_size"), *f;
    f = in_dir(dir, "train_X.bin");
    write_stl_y(in_dir(dir, "train_y.bin"), 0, STL_TRAIN);
    /* Not a whole number of images. */
    write_stl_x(f, 0, 1, STL_TRAIN);
    set_size(f, (size_t)STL_IMG * STL_TRAIN + 100);
    expect_open_error(dir, NULL, f, "expected 138240000 bytes (5000 images), found 138240100",
                      "not a whole number of 27648-byte");
    /* Cut on an image boundary, and one image too many. */
    write_stl_x(f, 0, 1, STL_TRAIN - 1);
    expect_open_error(dir, NULL, f, "expected 138240000 bytes (5000 images), found 138212352",
                      "4999 images: truncated");
    set_size(f, (size_t)STL_IMG * (STL_TRAIN + 1));
    expect_open_error(dir, "stl10", f, "expected 138240000 bytes (5000 images), found 138267648",
                      "5001 images: too many");
    /* The test and unlabeled files against their own counts. */
    write_stl_x(f, 0, 1, STL_TRAIN);
    const char *t = in_dir(dir, "test_X.bin");
    write_stl_x(t, 0, 1, STL_TRAIN); /* a train-sized test file */
    write_stl_y(in_dir(dir, "test_y.bin"), 0, STL_TRAIN);
    expect_open_error(dir, NULL, t, "expected 221184000 bytes (8000 images), found 138240000",
                      "5000 images: truncated");
    remove(t);
    remove(in_dir(dir, "test_y.bin"));
    const char *u = in_dir(dir, "unlabeled_X.bin");
    write_stl_x(u, 0, 1, STL_UNLABELED - 1);
    expect_open_error(dir, NULL, u, "expected 2764800000 bytes (100000 images), found 2764772352",
                      "99999 images: truncated");
    write_stl_x(u, 0, 1, 1);
    expect_open_error(dir, NULL, u, "found 27648 (1 image: truncated");

    /* X and y counts that disagree: y is checked against the official count too. */
    dir = fresh_dir("stl_count");
    write_stl_x(in_dir(dir, "train_X.bin"), 0, 2, STL_TRAIN);
    write_stl_y(in_dir(dir, "train_y.bin"), 0, STL_TRAIN - 1);
    expect_open_error(dir, "stl10", "train_y.bin", "expected 5000 bytes (5000 labels",
                      "train_X.bin), found 4999");
    write_stl_y(in_dir(dir, "train_y.bin"), 0, STL_TRAIN + 3);
    expect_open_error(dir, "stl10", "train_y.bin", "expected 5000 bytes (5000 labels",
                      "found 5003");

    uint8_t y[STL_TEST];
    for (int t2 = 0; t2 < 3; t2++) {
        for (int i = 0; i < STL_TEST; i++) y[i] = stl_label(i);
        int at = t2 == 2 ? STL_TEST - 1 : 1;
        y[at] = t2 == 1 ? 11 : 0;
        dir = fresh_dir("stl_label");
        write_stl_x(in_dir(dir, "test_X.bin"), 0, 2, STL_TEST);
        write_bytes(in_dir(dir, "test_y.bin"), y, STL_TEST);
        write_stl_x(in_dir(dir, "unlabeled_X.bin"), 0, 1, STL_UNLABELED);
        expect_open_error(dir, NULL, "test_y.bin",
                          t2 == 0 ? "label 0 at index 1"
                                  : t2 == 1 ? "label 11 at index 1" : "label 0 at index 7999");
    }

    dir = fresh_dir("stl_half");
    write_stl_x(in_dir(dir, "train_X.bin"), 0, 1, STL_TRAIN);
    expect_open_error(dir, NULL, "train_X.bin", "train_y.bin");

    dir = fresh_dir("stl_none");
    write_stl_x(in_dir(dir, "test_X.bin"), 0, 1, STL_TEST);
    write_stl_y(in_dir(dir, "test_y.bin"), 0, STL_TEST);
    expect_open_error(dir, "stl10", dir, "unlabeled_X.bin");
    expect_open_error(dir, NULL, dir, "unlabeled_X.bin"); /* detected as STL-10 all the same */
}

/* ---------------------------------------------------------------- dataset_open, dataset_image */

static void test_open_errors(void) {
    const char *missing = tmp_path("no_such_folder");
    expect_open_error(missing, NULL, missing, "cannot open: No such file or directory (check --data)");
    expect_open_error(missing, "cifar10", missing, "cannot open: No such file or directory");
    const char *dir = fresh_dir("kind");
    expect_open_error(dir, "imagenet", NULL, "unknown dataset 'imagenet'",
                      "(mnist, fashion-mnist, cifar10, cifar100, stl10, folder)");
    /* A kind that does not match the files names what it looked for. */
    write_cifar(in_dir(dir, "data_batch_1.bin"), 0, 1, 0, 0);
    expect_open_error(dir, "mnist", dir, "train-images-idx3-ubyte");
    expect_open_error(dir, "stl10", dir, "train_X.bin");
}

/* torchvision's CIFAR downloads are the Python (pickle) versions: named as such, with the
 * binary version and folders as the way out, whether --data is the layout or the folder above. */
static void test_cifar_python_layout(void) {
    char dir[800], root[800];
    snprintf(dir, sizeof dir, "%s", fresh_dir("cifar-10-batches-py"));
    const char *names[] = {"batches.meta", "data_batch_1", "data_batch_2", "test_batch", "readme.html"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) write_bytes(in_dir(dir, names[i]), "\x80\x02}q", 4);
    expect_open_error(dir, NULL, dir, "torchvision's CIFAR-10 Python version", "cifar-10-batches-bin", "folder of images");
    expect_open_error(dir, "cifar10", dir, "Python version", "cifar-10-batches-bin");
    expect_open_error(dir, "folder", dir, "Python version");
    /* torchvision's root: the layout is a subfolder. */
    snprintf(root, sizeof root, "%s", fresh_dir("torchvision_root"));
    char sub[900];
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-py", root);
    mkdir(sub, 0700);
    write_bytes(in_dir(sub, "data_batch_1"), "\x80\x02}q", 4);
    expect_open_error(root, NULL, sub, "torchvision's CIFAR-10 Python version", "cifar-10-batches-bin");
    /* CIFAR-100's: train, test, meta. */
    snprintf(dir, sizeof dir, "%s", fresh_dir("cifar-100-python"));
    const char *names100[] = {"meta", "train", "test"};
    for (size_t i = 0; i < ARRAY_LEN(names100); i++) write_bytes(in_dir(dir, names100[i]), "\x80\x02}q", 4);
    expect_open_error(dir, NULL, dir, "torchvision's CIFAR-100 Python version", "cifar-100-binary");
    expect_open_error(dir, "cifar100", dir, "CIFAR-100 Python version");
}

/* A folder in none of the fixed-size formats is opened as an image folder (folder.c). */
static void test_detect_folder(void) {
    const char *dir = fresh_dir("pictures");
    Err e;
    uint8_t px[4 * 3 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 9);
    const char *sub[2] = {"cats", "dogs"};
    for (int c = 0; c < 2; c++) {
        char d[700];
        snprintf(d, sizeof d, "%s/%s", dir, sub[c]);
        mkdir(d, 0700);
        CHECK(png_write(in_dir(d, "a.png"), px, 4, 3, 3, &e) == 0, "%s", e.msg);
    }
    Dataset ds;
    int rc = dataset_open(&ds, dir, NULL, NULL, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc) return;
    CHECK(strcmp(ds.kind, "folder") == 0, "detected as %s", ds.kind);
    CHECK(ds.split[SPLIT_TRAIN].n == 2 && ds.n_classes == 2, "%d images, %d classes",
          ds.split[SPLIT_TRAIN].n, ds.n_classes);
    dataset_close(&ds);
}

static void test_image_index_range(void) {
    const char *dir = fresh_dir("range");
    write_cifar(in_dir(dir, "data_batch_1.bin"), 0, 3, 0, C10_BATCH);
    Dataset ds;
    Err e;
    CHECK(dataset_open(&ds, dir, NULL, NULL, &e) == 0, "%s", e.msg);
    Image img = {0};
    CHECK(dataset_image(&ds, SPLIT_TRAIN, 10000, 0, &img, &e) != 0 &&
              strstr(e.msg, "image 10000") && strstr(e.msg, "10000 images"),
          "index n refused: %s", e.msg);
    CHECK(dataset_image(&ds, SPLIT_TRAIN, -1, 0, &img, &e) != 0, "index -1 refused");
    CHECK(dataset_image(&ds, SPLIT_TEST, 0, 0, &img, &e) != 0 && strstr(e.msg, "test"),
          "absent split refused: %s", e.msg);
    CHECK(dataset_image(&ds, SPLIT_TRAIN, 9999, 0, &img, &e) == 0, "%s", e.msg);
    image_free(&img);
    dataset_close(&ds);
    /* dataset_close twice is harmless (it zeroes the struct). */
    dataset_close(&ds);
}

/* dataset_image from several threads at once, each with its own Image. */
typedef struct {
    const Dataset *ds;
    int bad;
} ThreadArg;

static void *image_thread(void *p) {
    ThreadArg *a = p;
    Image img = {0};
    Err e;
    for (int rep = 0; rep < 20; rep++)
        for (int i = 0; i < 4; i++) { /* the images written; the rest of the file is zero */
            if (dataset_image(a->ds, SPLIT_TRAIN, i, 0, &img, &e) != 0) {
                a->bad++;
                continue;
            }
            for (int y = 0; y < 96; y += 5)
                for (int x = 0; x < 96; x += 3)
                    for (int k = 0; k < 3; k++)
                        a->bad += img.px[(y * 96 + x) * 3 + k] != rgb_px(i, k, y, x);
        }
    image_free(&img);
    return NULL;
}

static void test_image_threads(void) {
    const char *dir = fresh_dir("stl_threads");
    write_stl_x(in_dir(dir, "train_X.bin"), 0, 4, STL_TRAIN);
    write_stl_y(in_dir(dir, "train_y.bin"), 0, STL_TRAIN);
    Dataset ds;
    Err e;
    CHECK(dataset_open(&ds, dir, NULL, NULL, &e) == 0, "%s", e.msg);
    pthread_t th[4];
    ThreadArg arg[4];
    for (int t = 0; t < 4; t++) {
        arg[t] = (ThreadArg){&ds, 0};
        pthread_create(&th[t], NULL, image_thread, &arg[t]);
    }
    int bad = 0;
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        bad += arg[t].bad;
    }
    CHECK(bad == 0, "%d wrong pixels or failures across threads", bad);
    dataset_close(&ds);
}

/* ---------------------------------------------------------------- real Fashion-MNIST */

/* Debian's dataset-fashion-mnist. Facts checked with Python's gzip module: the first train
 * label is 9 (Ankle boot), the first train image's pixels sum to 76247 with its first 255 at
 * index 417; the last test label is 5 and the last test image sums to 24390. */
static void test_real_fashion_mnist(void) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    /* CI installs it (.ci/run); a developer without it gets told how. */
    CHECK(stat(dir, &st) == 0, "%s absent: apt-get install dataset-fashion-mnist", dir);
    if (stat(dir, &st) != 0) return;
    Dataset ds;
    Err e;
    int rc = dataset_open(&ds, dir, NULL, NULL, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc) return;
    CHECK(strcmp(ds.kind, "fashion-mnist") == 0, "detected as %s", ds.kind);
    CHECK(ds.channels == 1 && ds.height == 28 && ds.width == 28, "28x28 gray");
    CHECK(ds.split[SPLIT_TRAIN].n == 60000 && ds.split[SPLIT_TEST].n == 10000, "counts %d %d",
          ds.split[SPLIT_TRAIN].n, ds.split[SPLIT_TEST].n);
    if (ds.split[SPLIT_TRAIN].n == 60000 && ds.split[SPLIT_TEST].n == 10000) {
        int l0 = ds.split[SPLIT_TRAIN].labels[0];
        CHECK(l0 == 9 && strcmp(ds.class_names[l0], "Ankle boot") == 0, "first label %d", l0);
        CHECK(ds.split[SPLIT_TEST].labels[9999] == 5, "last test label");
        Image img = {0};
        CHECK(dataset_image(&ds, SPLIT_TRAIN, 0, 0, &img, &e) == 0, "%s", e.msg);
        long sum = 0;
        int first255 = -1;
        for (int i = 0; i < 784; i++) {
            sum += img.px[i];
            if (img.px[i] == 255 && first255 < 0) first255 = i;
        }
        CHECK(sum == 76247 && first255 == 417, "first image: sum %ld, first 255 at %d", sum,
              first255);
        CHECK(dataset_image(&ds, SPLIT_TEST, 9999, 0, &img, &e) == 0, "%s", e.msg);
        sum = 0;
        for (int i = 0; i < 784; i++) sum += img.px[i];
        CHECK(sum == 24390, "last test image: sum %ld", sum);
        image_free(&img);
    }
    dataset_close(&ds);
}

int main(void) {
    test_tmpdir("test_datasets");
    RUN(test_idx_plain);
    RUN(test_idx_gz);
    RUN(test_idx_errors);
    RUN(test_cifar10);
    RUN(test_cifar100);
    RUN(test_cifar_errors);
    RUN(test_stl10);
    RUN(test_stl10_errors);
    RUN(test_open_errors);
    RUN(test_cifar_python_layout);
    RUN(test_detect_folder);
    RUN(test_image_index_range);
    RUN(test_image_threads);
    RUN(test_real_fashion_mnist);
    return test_finish();
}
