/* IDX files (MNIST, Fashion-MNIST), plain or gzipped: train-images-idx3-ubyte,
 * train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each with or without
 * .gz. A plain image file is mapped; a gzipped one is decompressed once into memory (47 MB for
 * MNIST's train split), never past one byte more than its header announces. Labels are copied
 * into int32 and their buffers released. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "dataset.h"


static const char *const FASHION_NAMES[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                              "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};

enum { IDX_MAX_SIDE = 4096 };
#define IDX_MAX_COUNT 100000000u

/* root/name if it exists, else root/name.gz if that exists; 0 when neither does. */
static int find_idx(const char *root, const char *name, char *path, size_t cap, int *gz) {
    struct stat st;
    snprintf(path, cap, "%s/%s", root, name);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        *gz = 0;
        return 1;
    }
    snprintf(path, cap, "%s/%s.gz", root, name);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        *gz = 1;
        return 1;
    }
    return 0;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Header checks shared by images (ndim 3) and labels (ndim 1) on the first `avail` bytes:
 * magic, plausible dimensions (dims[0] is the count); *expect gets the file's exact size. */
static int parse_idx_header(const char *path, const uint8_t *p, size_t avail, int ndim,
                            uint32_t *dims, uint64_t *expect, Err *e) {
    const uint32_t magic = ndim == 3 ? 0x00000803u : 0x00000801u;
    const char *what = ndim == 3 ? "images" : "labels";
    size_t header = 4 + 4 * (size_t)ndim;
    if (avail < 4)
        return err_set(e, "%s: truncated or wrongly sized IDX file: expected at least %zu "
                          "bytes (the header), found %zu", path, header, avail);
    uint32_t m = be32(p);
    if (m != magic)
        return err_set(e, "%s: bad IDX magic 0x%08x (expected 0x%08x for %s)", path, m, magic,
                       what);
    if (avail < header)
        return err_set(e, "%s: truncated or wrongly sized IDX file: expected at least %zu "
                          "bytes (the header), found %zu", path, header, avail);
    uint64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        dims[d] = be32(p + 4 + 4 * d);
        uint32_t hi = d == 0 ? IDX_MAX_COUNT : IDX_MAX_SIDE;
        if (dims[d] < 1 || dims[d] > hi)
            return err_set(e, "%s: implausible IDX %s: dimension %d is %u (allowed 1..%u)", path,
                           what, d, dims[d], hi);
        n *= dims[d]; /* at most 1e8 * 4096 * 4096 < 2^51 */
    }
    *expect = n + header;
    if (*expect >= SIZE_MAX)
        return err_set(e, "%s: IDX %s of %llu bytes do not fit in memory", path, what,
                       (unsigned long long)*expect);
    return 0;
}

/* The full check on a whole file's bytes: header, then the exact size. */
static int check_idx(const char *path, const uint8_t *p, size_t size, int ndim, uint32_t *dims,
                     Err *e) {
    uint64_t expect = 0;
    if (parse_idx_header(path, p, size, ndim, dims, &expect, e) != 0) return -1;
    if (expect != size)
        return err_set(e, "%s: truncated or wrongly sized IDX file: expected %llu bytes, found "
                          "%zu", path, (unsigned long long)expect, size);
    return 0;
}

/* The gzip trailer's ISIZE (uncompressed size mod 2^32 of the last member): exact for every
 * ordinary .gz file, so the buffer is allocated once when it agrees with the header. A truncated
 * or hostile file's last 4 bytes are arbitrary: a hint beyond what deflate can expand the file
 * to (at most 1032:1) is ignored. */
static size_t gz_size_hint(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint8_t m[2], t[4];
    size_t hint = 0;
    int gzip = fread(m, 1, 2, f) == 2 && m[0] == 0x1f && m[1] == 0x8b;
    long csize = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (!gzip) hint = csize > 0 ? (size_t)csize : 0; /* gzread passes it through as is */
    else if (csize >= 18 && fseek(f, -4, SEEK_END) == 0 && fread(t, 1, 4, f) == 4)
        hint = (size_t)t[0] | (size_t)t[1] << 8 | (size_t)t[2] << 16 | (size_t)t[3] << 24;
    fclose(f);
    return csize > 0 && hint <= (size_t)csize * 1032 ? hint : 0;
}

/* zlib prefixes its messages with the file name; drop it, we name the file ourselves. */
static const char *gz_message(gzFile g, const char *path, int *code) {
    const char *m = gzerror(g, code);
    size_t n = strlen(path);
    if (m && strncmp(m, path, n) == 0 && m[n] == ':') m += n + 1;
    while (m && *m == ' ') m++;
    return m && *m ? m : "unknown zlib error";
}

/* gzread into buf until *len reaches `want` or the stream ends; -1 (message set) on corrupt or
 * truncated gzip data. *len counts the bytes in buf. */
static int gz_read_upto(gzFile g, const char *path, uint8_t *buf, size_t want, size_t *len,
                        Err *e) {
    while (*len < want) {
        size_t chunk = want - *len;
        if (chunk > (1u << 30)) chunk = 1u << 30;
        int got = gzread(g, buf + *len, (unsigned)chunk);
        if (got < 0) {
            int code;
            return err_set(e, "%s: corrupt gzip data: %s", path, gz_message(g, path, &code));
        }
        if (got == 0) break;
        *len += (size_t)got;
    }
    int code;
    const char *msg = gz_message(g, path, &code);
    if (code == Z_BUF_ERROR)
        return err_set(e, "%s: truncated gzip data: the stream ends after %zu decompressed bytes",
                       path, *len);
    if (code != Z_OK) return err_set(e, "%s: corrupt gzip data: %s", path, msg);
    return 0;
}

/* Decompresses a .gz IDX file (gzread passes plain files through) into a malloc'ed buffer of
 * exactly the size its header announces. The header is decompressed and checked first, and no
 * more than one byte past the announced size is ever decompressed: a small file that inflates
 * to gigabytes (a gzip bomb) is refused after expected + 1 bytes. The buffer grows with the
 * data that actually arrives (one allocation when the gzip trailer agrees with the header). */
static uint8_t *read_gz(const char *path, int ndim, size_t *size, Err *e) {
    gzFile g = gzopen(path, "rb");
    if (!g) {
        err_set(e, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        return NULL;
    }
    gzbuffer(g, 1 << 17);
    const size_t header = 4 + 4 * (size_t)ndim;
    uint8_t head[16];
    size_t len = 0;
    uint32_t dims[3];
    uint64_t expect64 = 0;
    if (gz_read_upto(g, path, head, header, &len, e) != 0 ||
        parse_idx_header(path, head, len, ndim, dims, &expect64, e) != 0) {
        gzclose(g);
        return NULL;
    }
    const size_t expect = (size_t)expect64, limit = expect + 1;
    size_t cap = limit;
    if (gz_size_hint(path) != expect && cap > ((size_t)1 << 20)) cap = (size_t)1 << 20;
    uint8_t *buf = malloc(cap);
    if (!buf) die("out of memory decompressing %s (%zu bytes)", path, cap);
    memcpy(buf, head, len);
    for (;;) {
        if (gz_read_upto(g, path, buf, cap, &len, e) != 0) {
            gzclose(g);
            free(buf);
            return NULL;
        }
        if (len < cap || cap == limit) break; /* end of stream, or one byte past expect */
        cap = cap > limit / 2 ? limit : cap * 2;
        uint8_t *nb = realloc(buf, cap);
        if (!nb) die("out of memory decompressing %s (%zu bytes)", path, cap);
        buf = nb;
    }
    if (len > expect) {
        gzclose(g); /* the rest of the stream is never decompressed */
        free(buf);
        err_set(e, "%s: truncated or wrongly sized IDX file: expected %zu bytes, found more than "
                   "%zu (decompressed)", path, expect, expect);
        return NULL;
    }
    int rc = gzclose(g);
    if (rc != Z_OK) {
        free(buf);
        err_set(e, "%s: %s", path, rc == Z_BUF_ERROR ? "truncated gzip data" : "corrupt gzip data");
        return NULL;
    }
    if (len < expect) {
        free(buf);
        err_set(e, "%s: truncated or wrongly sized IDX file: expected %zu bytes, found %zu "
                   "(decompressed)", path, expect, len);
        return NULL;
    }
    *size = len;
    return buf;
}

/* One IDX file's bytes: mapped (plain; kept by ds) or decompressed (gz; the caller owns it and
 * *owned is set). */
static const uint8_t *load_idx(Dataset *ds, const char *path, int gz, int ndim, size_t *size,
                               uint8_t **owned, Err *e) {
    *owned = NULL;
    if (!gz) return dataset_map_file(ds, path, size, e);
    *owned = read_gz(path, ndim, size, e);
    return *owned;
}

/* Opens one split from its image and label files; fills sp and, for the train split, the
 * dataset's size. */
static int open_split(Dataset *ds, DatasetSplit *sp, const char *ipath, int igz,
                      const char *lpath, int lgz, Err *e) {
    size_t isize, lsize;
    uint8_t *iowned, *lowned;
    const uint8_t *img = load_idx(ds, ipath, igz, 3, &isize, &iowned, e);
    if (!img) return -1;
    if (iowned) dataset_keep_blob(ds, iowned, isize, 0); /* released by dataset_close */
    uint32_t idims[3] = {0}, ldims[1] = {0};
    if (check_idx(ipath, img, isize, 3, idims, e) != 0) return -1;
    if (ds->height && (ds->height != (int)idims[1] || ds->width != (int)idims[2]))
        return err_set(e, "%s: %ux%u images, but the train split's are %dx%d", ipath, idims[1],
                       idims[2], ds->height, ds->width);

    /* Labels are copied out, so their bytes are released here (a mapped file is unmapped by
     * dataset_close, which is cheap: the train labels are 60 KB). */
    const uint8_t *lab;
    if (lgz) {
        lab = load_idx(ds, lpath, 1, 1, &lsize, &lowned, e);
    } else {
        lowned = read_file(lpath, &lsize, e);
        lab = lowned;
    }
    if (!lab) return -1;
    int rc = check_idx(lpath, lab, lsize, 1, ldims, e);
    if (rc == 0 && ldims[0] != idims[0])
        rc = err_set(e, "%s holds %u labels but %s %u images", lpath, ldims[0], ipath, idims[0]);
    if (rc == 0) {
        sp->labels = malloc(sizeof(int32_t) * ldims[0]);
        if (!sp->labels) die("out of memory for %u labels", ldims[0]);
        for (uint32_t i = 0; i < ldims[0] && rc == 0; i++) {
            uint8_t v = lab[8 + i];
            if (v >= 10)
                rc = err_set(e, "%s: label %u at index %u is out of range (0..9)", lpath, v, i);
            sp->labels[i] = v;
        }
    }
    free(lowned);
    if (rc != 0) return -1;
    sp->n = (int)idims[0];
    sp->records = img + 16;
    sp->record_stride = (size_t)idims[1] * idims[2];
    sp->pixel_offset = 0;
    sp->layout = PIXELS_HWC;
    ds->height = (int)idims[1];
    ds->width = (int)idims[2];
    return 0;
}

int idx_open(Dataset *ds, const char *root, int fashion, Err *e) {
    snprintf(ds->kind, sizeof ds->kind, "%s", fashion ? "fashion-mnist" : "mnist");
    ds->channels = 1;
    char ip[4200], lp[4200];
    int igz, lgz;
    if (!find_idx(root, "train-images-idx3-ubyte", ip, sizeof ip, &igz))
        return err_set(e, "%s: no train-images-idx3-ubyte or train-images-idx3-ubyte.gz (an "
                          "MNIST folder holds {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz])",
                       root);
    if (!find_idx(root, "train-labels-idx1-ubyte", lp, sizeof lp, &lgz))
        return err_set(e, "%s: no train-labels-idx1-ubyte or train-labels-idx1-ubyte.gz next to "
                          "the train images", root);
    if (open_split(ds, &ds->split[SPLIT_TRAIN], ip, igz, lp, lgz, e) != 0) return -1;

    int have_i = find_idx(root, "t10k-images-idx3-ubyte", ip, sizeof ip, &igz);
    int have_l = find_idx(root, "t10k-labels-idx1-ubyte", lp, sizeof lp, &lgz);
    if (have_i != have_l)
        return err_set(e, "%s exists but %s/%s[.gz] does not: the test split needs both", have_i ? ip : lp,
                       root, have_i ? "t10k-labels-idx1-ubyte" : "t10k-images-idx3-ubyte");
    if (have_i && open_split(ds, &ds->split[SPLIT_TEST], ip, igz, lp, lgz, e) != 0) return -1;

    return dataset_set_class_names(ds, root, NULL, 10, fashion ? FASHION_NAMES : NULL, e);
}
