/* Datasets: opening by kind or by detection, the helpers the per-format openers share (blobs,
 * mapped files, class names), release, and image access with the layout conversion to HWC. */
#include "dataset.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const SPLIT_NAMES[SPLIT_COUNT] = {"train", "test", "unlabeled"};
const DatasetCounts DATASET_COUNTS_OFFICIAL = {10000, 50000, 5000, 8000, 100000};

int split_parse(const char *name, Split *out) {
    for (int s = 0; s < SPLIT_COUNT; s++)
        if (strcmp(name, SPLIT_NAMES[s]) == 0) {
            *out = (Split)s;
            return 0;
        }
    return -1;
}

void dataset_keep_blob(Dataset *ds, void *p, size_t size, int mapped) {
    if (ds->n_blobs >= (int)ARRAY_LEN(ds->blobs))
        die("dataset %s: more than %d buffers kept (internal limit)", ds->root,
            (int)ARRAY_LEN(ds->blobs));
    ds->blobs[ds->n_blobs].p = p;
    ds->blobs[ds->n_blobs].size = size;
    ds->blobs[ds->n_blobs].mapped = mapped;
    ds->n_blobs++;
}

/* An empty file maps nothing: it gets this address, valid and never dereferenced. */
static const uint8_t empty_file[1];

const uint8_t *dataset_map_file(Dataset *ds, const char *path, size_t *size, Err *e) {
    size_t n;
    int fd = open_regular_file(path, &n, e);
    if (fd < 0) return NULL;
    *size = n;
    if (n == 0) {
        close(fd);
        return empty_file;
    }
    void *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd);
    if (p == MAP_FAILED) {
        err_set(e, "%s: cannot map %zu bytes: %s", path, n, strerror(saved));
        return NULL;
    }
    dataset_keep_blob(ds, p, n, 1);
    return p;
}

char *dataset_strdup(const char *s) {
    char *r = strdup(s);
    if (!r) die("out of memory copying a %zu-byte string", strlen(s));
    return r;
}

int dataset_set_class_names(Dataset *ds, const char *root, const char *file, int n,
                            const char *const *defaults, Err *e) {
    ds->n_classes = n;
    ds->class_names = calloc((size_t)n, sizeof(char *));
    if (!ds->class_names) die("out of memory for %d class names", n);
    char path[4200];
    struct stat st;
    if (file) snprintf(path, sizeof path, "%s/%s", root, file);
    if (!file || stat(path, &st) != 0) {
        for (int i = 0; i < n; i++) {
            char num[16];
            snprintf(num, sizeof num, "%d", i);
            ds->class_names[i] = dataset_strdup(defaults ? defaults[i] : num);
        }
        return 0;
    }
    size_t size;
    uint8_t *text = read_file(path, &size, e);
    if (!text) return -1;
    int count = 0;
    size_t i = 0;
    while (i < size) {
        size_t j = i;
        while (j < size && text[j] != '\n') j++;
        size_t a = i, b = j; /* trim spaces and the \r of CRLF files */
        while (a < b && isspace(text[a])) a++;
        while (b > a && isspace(text[b - 1])) b--;
        if (b > a) {
            if (count < n) {
                char *name = malloc(b - a + 1);
                if (!name) die("out of memory for a class name");
                memcpy(name, text + a, b - a);
                name[b - a] = 0;
                ds->class_names[count] = name;
            }
            count++;
        }
        i = j + 1;
    }
    free(text);
    if (count != n)
        return err_set(e, "%s: %d class names, expected %d (one a line)", path, count, n);
    return 0;
}

void dataset_close(Dataset *ds) {
    for (int s = 0; s < SPLIT_COUNT; s++) {
        DatasetSplit *sp = &ds->split[s];
        free(sp->labels);
        if (sp->paths) {
            for (int i = 0; i < sp->n; i++) free(sp->paths[i]);
            free(sp->paths);
        }
    }
    if (ds->class_names) {
        for (int i = 0; i < ds->n_classes; i++) free(ds->class_names[i]);
        free(ds->class_names);
    }
    if (ds->skipped) {
        for (int i = 0; i < ds->n_skipped; i++) free(ds->skipped[i]);
        free(ds->skipped);
    }
    for (int b = 0; b < ds->n_blobs; b++) {
        if (ds->blobs[b].mapped)
            munmap(ds->blobs[b].p, ds->blobs[b].size);
        else
            free(ds->blobs[b].p);
    }
    memset(ds, 0, sizeof *ds);
}

static int file_exists(const char *dir, const char *name) {
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Whether the canonical path contains "fashion" (any case): Fashion-MNIST and MNIST share the
 * IDX file names, so only the folder's name tells them apart. */
static int path_says_fashion(const char *path) {
    char *real = realpath(path, NULL);
    const char *p = real ? real : path;
    int found = 0;
    for (size_t i = 0; p[i] && !found; i++) {
        const char *w = "fashion";
        size_t k = 0;
        while (w[k] && p[i + k] && tolower((unsigned char)p[i + k]) == w[k]) k++;
        found = w[k] == 0;
    }
    free(real);
    return found;
}

/* By the files a format's folder holds. A folder with only some of them (just the test files,
 * say) is still detected, so that its opener names what is missing. */
static const char *detect_kind(const char *path) {
    if (file_exists(path, "train-images-idx3-ubyte") ||
        file_exists(path, "train-images-idx3-ubyte.gz") ||
        file_exists(path, "t10k-images-idx3-ubyte") ||
        file_exists(path, "t10k-images-idx3-ubyte.gz"))
        return path_says_fashion(path) ? "fashion-mnist" : "mnist";
    if (file_exists(path, "data_batch_1.bin") || file_exists(path, "test_batch.bin"))
        return "cifar10";
    if (file_exists(path, "train.bin") || file_exists(path, "test.bin")) return "cifar100";
    if (file_exists(path, "train_X.bin") || file_exists(path, "unlabeled_X.bin") ||
        file_exists(path, "test_X.bin"))
        return "stl10";
    return "folder";
}

static int dir_exists(const char *dir, const char *name) {
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* torchvision's CIFAR datasets download the Python versions: pickled batches without ".bin"
 * ("cifar-10-batches-py": data_batch_1 .. 5, test_batch, batches.meta; "cifar-100-python":
 * train, test, meta). byol.c reads the binary versions; say so rather than "no images found".
 * Also catches --data naming torchvision's root folder, the one that holds the layout. */
static int refuse_python_cifar(const char *path, Err *e) {
    const char *which = NULL, *bin = NULL, *where = path;
    char sub[4200];
    if (file_exists(path, "batches.meta") || file_exists(path, "data_batch_1") || file_exists(path, "test_batch"))
        which = "CIFAR-10", bin = "cifar-10-batches-bin (cifar-10-binary.tar.gz)";
    else if (file_exists(path, "meta") && (file_exists(path, "train") || file_exists(path, "test")))
        which = "CIFAR-100", bin = "cifar-100-binary (cifar-100-binary.tar.gz)";
    else if (dir_exists(path, "cifar-10-batches-py") && !dir_exists(path, "cifar-10-batches-bin")) {
        which = "CIFAR-10", bin = "cifar-10-batches-bin (cifar-10-binary.tar.gz)";
        snprintf(sub, sizeof sub, "%s/cifar-10-batches-py", path);
        where = sub;
    } else if (dir_exists(path, "cifar-100-python") && !dir_exists(path, "cifar-100-binary")) {
        which = "CIFAR-100", bin = "cifar-100-binary (cifar-100-binary.tar.gz)";
        snprintf(sub, sizeof sub, "%s/cifar-100-python", path);
        where = sub;
    }
    if (!which) return 0;
    return err_set(e, "%s: torchvision's %s Python version (pickled batches), which byol.c does not read: "
                      "use the binary version, %s from https://www.cs.toronto.edu/~kriz/cifar.html, or a "
                      "folder of images", where, which, bin);
}

int dataset_open(Dataset *ds, const char *path, const char *kind, FILE *warn, Err *e) {
    memset(ds, 0, sizeof *ds);
    static const char *const kinds[] = {"mnist", "fashion-mnist", "cifar10", "cifar100", "stl10",
                                        "folder"};
    if (kind) {
        int known = 0;
        for (size_t k = 0; k < ARRAY_LEN(kinds); k++) known |= strcmp(kind, kinds[k]) == 0;
        if (!known)
            return err_set(e, "unknown dataset '%s' (mnist, fashion-mnist, cifar10, cifar100, "
                              "stl10, folder)", kind);
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return err_set(e, "%s: cannot open: %s (check --data)", path, strerror(errno));
    if (strlen(path) >= sizeof ds->root) return err_set(e, "%s: path too long", path);
    snprintf(ds->root, sizeof ds->root, "%s", path);
    if (!kind) {
        if (!S_ISDIR(st.st_mode) && !folder_image_file(path))
            return err_set(e, "%s: neither a folder nor an image file (--data names the folder that holds the "
                              "dataset's files, or one image)", path);
        kind = S_ISDIR(st.st_mode) ? detect_kind(path) : "folder";
    }
    int no_cifar_bin = (strcmp(kind, "cifar10") == 0 && !file_exists(path, "data_batch_1.bin")) ||
                       (strcmp(kind, "cifar100") == 0 && !file_exists(path, "train.bin"));
    if (S_ISDIR(st.st_mode) && (strcmp(kind, "folder") == 0 || no_cifar_bin) && refuse_python_cifar(path, e) != 0)
        return -1;
    int rc;
    if (strcmp(kind, "mnist") == 0)
        rc = idx_open(ds, path, 0, e);
    else if (strcmp(kind, "fashion-mnist") == 0)
        rc = idx_open(ds, path, 1, e);
    else if (strcmp(kind, "cifar10") == 0)
        rc = cifar_open(ds, path, 0, e);
    else if (strcmp(kind, "cifar100") == 0)
        rc = cifar_open(ds, path, 1, e);
    else if (strcmp(kind, "stl10") == 0)
        rc = stl10_open(ds, path, e);
    else
        rc = folder_open(ds, path, warn, e);
    if (rc != 0) {
        dataset_close(ds);
        return -1;
    }
    if (!ds->kind[0]) snprintf(ds->kind, sizeof ds->kind, "%s", kind);
    if (!ds->max_height) {
        ds->max_height = ds->height;
        ds->max_width = ds->width;
    }
    return 0;
}

int dataset_default_image_size(const Dataset *ds) {
    int side = MIN(ds->height, ds->width);
    return ds->sizes_vary ? MIN(side, 224) : side;
}

int dataset_image(const Dataset *ds, Split s, int i, int min_side, Image *out, Err *e) {
    if ((int)s < 0 || s >= SPLIT_COUNT)
        return err_set(e, "dataset %s: no split number %d", ds->root, (int)s);
    const DatasetSplit *sp = &ds->split[s];
    if (i < 0 || i >= sp->n)
        return err_set(e, "dataset %s: image %d out of range: the %s split holds %d images",
                       ds->root, i, SPLIT_NAMES[s], sp->n);
    if (sp->paths) return image_decode_file(out, sp->paths[i], ds->channels, min_side, e);

    const int W = ds->width, H = ds->height, C = ds->channels;
    const size_t plane = (size_t)W * H;
    const uint8_t *src = sp->records + (size_t)i * sp->record_stride + sp->pixel_offset;
    image_reserve(out, W, H, C);
    uint8_t *dst = out->px;
    switch (sp->layout) {
    case PIXELS_HWC:
        memcpy(dst, src, plane * C);
        break;
    case PIXELS_CHW:
        for (int k = 0; k < C; k++) {
            const uint8_t *p = src + k * plane;
            for (size_t j = 0; j < plane; j++) dst[j * C + k] = p[j];
        }
        break;
    case PIXELS_CHW_COLMAJOR:
        for (int k = 0; k < C; k++) {
            const uint8_t *p = src + k * plane;
            for (int x = 0; x < W; x++) {
                const uint8_t *col = p + (size_t)x * H;
                for (int y = 0; y < H; y++) dst[((size_t)y * W + x) * C + k] = col[y];
            }
        }
        break;
    default:
        return err_set(e, "dataset %s: unknown pixel layout %d", ds->root, (int)sp->layout);
    }
    return 0;
}

void dataset_split_view(Dataset *view, const Dataset *ds, Split s, const int *rows, int n) {
    *view = *ds;
    view->n_blobs = 0; /* the blobs stay ds's */
    const DatasetSplit *from = &ds->split[s];
    DatasetSplit *to = &view->split[s];
    to->n = n;
    to->labels = NULL;
    if (from->labels) {
        to->labels = xmalloc((size_t)n * sizeof(int32_t), "the split view's labels");
        for (int i = 0; i < n; i++) to->labels[i] = from->labels[rows[i]];
    }
    if (from->paths) {
        to->paths = xmalloc((size_t)n * sizeof(char *), "the split view's paths");
        for (int i = 0; i < n; i++) to->paths[i] = from->paths[rows[i]];
        return;
    }
    /* Fixed-size records are found by position, so the chosen ones are copied together. */
    uint8_t *rec = xmalloc((size_t)n * from->record_stride, "the split view's records");
    for (int i = 0; i < n; i++)
        memcpy(rec + (size_t)i * from->record_stride, from->records + (size_t)rows[i] * from->record_stride,
               from->record_stride);
    to->records = rec;
}

void dataset_split_view_free(Dataset *view, Split s) {
    DatasetSplit *sp = &view->split[s];
    xfree(sp->labels);
    if (sp->paths)
        xfree(sp->paths);
    else
        xfree((void *)sp->records);
    memset(sp, 0, sizeof *sp);
}
