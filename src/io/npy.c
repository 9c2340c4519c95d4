#include "npy.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const int64_t NPY_MAX_DIM = (int64_t)1 << 40;

void npy_free(NpyArray *a) {
    xfree(a->data);
    memset(a, 0, sizeof *a);
}

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

/* Parses numpy's header dict, {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), },
 * strictly: exactly these three keys, each once, in any order; anything else is an error. */
static int parse_header(const char *h, const char *label, NpyArray *out, Err *e) {
    const char *p = skip_ws(h);
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    if (*p++ != '{') return err_set(e, "%s: malformed .npy header (no dict)", label);
    for (;;) {
        p = skip_ws(p);
        if (*p == '}') break;
        if (*p != '\'') return err_set(e, "%s: malformed .npy header (expected a key)", label);
        const char *key = ++p;
        while (*p && *p != '\'') p++;
        if (!*p) return err_set(e, "%s: malformed .npy header (unterminated key)", label);
        size_t klen = (size_t)(p - key);
        p = skip_ws(p + 1);
        if (*p++ != ':') return err_set(e, "%s: malformed .npy header (expected ':')", label);
        p = skip_ws(p);
        if (klen == 5 && memcmp(key, "descr", 5) == 0 && !have_descr++) {
            if (strncmp(p, "'<f4'", 5) != 0)
                return err_set(e, "%s: dtype %.8s is not supported; save float32 (np.float32 / '<f4')",
                               label, p);
            p += 5;
        } else if (klen == 13 && memcmp(key, "fortran_order", 13) == 0 && !have_fortran++) {
            if (strncmp(p, "False", 5) == 0) p += 5;
            else if (strncmp(p, "True", 4) == 0)
                return err_set(e, "%s: array is in Fortran order; save it C-contiguous", label);
            else return err_set(e, "%s: malformed fortran_order in .npy header", label);
        } else if (klen == 5 && memcmp(key, "shape", 5) == 0 && !have_shape++) {
            if (*p++ != '(') return err_set(e, "%s: malformed shape in .npy header", label);
            out->numel = 1;
            for (;;) {
                p = skip_ws(p);
                if (*p == ')') break;
                if (!isdigit((unsigned char)*p) || out->ndim == NPY_MAX_NDIM)
                    return err_set(e, "%s: malformed or too-high-rank shape in .npy header", label);
                char *end;
                long long d = strtoll(p, &end, 10);
                if (d < 0 || d > NPY_MAX_DIM || (d && out->numel > SIZE_MAX / 8 / (size_t)d))
                    return err_set(e, "%s: absurd dimension %lld in .npy header", label, d);
                out->shape[out->ndim++] = d;
                out->numel *= (size_t)d;
                p = skip_ws(end);
                if (*p == ',') p++;
                else if (*p != ')') return err_set(e, "%s: malformed shape in .npy header", label);
            }
            p++;
        } else {
            return err_set(e, "%s: unexpected or repeated key '%.*s' in .npy header", label,
                           (int)(klen > 32 ? 32 : klen), key);
        }
        p = skip_ws(p);
        if (*p == ',') p++;
        else if (*p != '}') return err_set(e, "%s: malformed .npy header (expected ',' or '}')", label);
    }
    if (!have_descr || !have_fortran || !have_shape)
        return err_set(e, "%s: .npy header lacks descr, fortran_order or shape", label);
    if (*skip_ws(p + 1) != 0) return err_set(e, "%s: trailing characters after the .npy header dict", label);
    return 0;
}

int npy_parse_f32(const uint8_t *buf, size_t size, const char *label, NpyArray *out, Err *e) {
    memset(out, 0, sizeof *out);
    if (size < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return err_set(e, "%s: not a .npy file (bad magic)", label);
    int major = buf[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = buf[8] | (size_t)buf[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (size < 12) return err_set(e, "%s: truncated .npy header", label);
        hlen = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hstart = 12;
    } else {
        return err_set(e, "%s: unsupported .npy version %d", label, major);
    }
    if (hlen > size - hstart || hlen > (1 << 20))
        return err_set(e, "%s: .npy header runs past the end of the file (truncated)", label);
    char *h = malloc(hlen + 1);
    if (!h) die("out of memory reading %s", label);
    memcpy(h, buf + hstart, hlen);
    h[hlen] = 0;

    int rc = parse_header(h, label, out, e);
    free(h);
    if (rc) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    size_t have = size - hstart - hlen, want = out->numel * sizeof(float);
    if (have != want) {
        int n = out->ndim;
        memset(out, 0, sizeof *out);
        return err_set(e, "%s: data has %zu bytes, but a float32 array of that %d-d shape needs "
                          "%zu (%s)", label, have, n, want, have < want ? "truncated" : "trailing bytes");
    }
    out->data = xmalloc(want, "npy array");
    memcpy(out->data, buf + hstart + hlen, want);
    return 0;
}

int npy_read_f32(const char *path, NpyArray *out, Err *e) {
    size_t size;
    uint8_t *buf = read_file(path, &size, e);
    if (!buf) return -1;
    int rc = npy_parse_f32(buf, size, path, out, e);
    free(buf);
    return rc;
}

static int npy_write(const char *path, const void *data, size_t esize, const char *descr, int ndim,
                     const int64_t *shape, Err *e) {
    char dict[512];
    size_t n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        n += snprintf(dict + n, sizeof dict - n, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
        numel *= (size_t)shape[i];
    }
    n += snprintf(dict + n, sizeof dict - n, "), }");
    /* Pad with spaces and a newline so that data starts on a 64-byte boundary (numpy's rule). */
    size_t total = 10 + n + 1;
    size_t padded = (total + 63) / 64 * 64;
    uint8_t head[640];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    size_t hlen = padded - 10;
    head[8] = (uint8_t)(hlen & 0xff);
    head[9] = (uint8_t)(hlen >> 8);
    memcpy(head + 10, dict, n);
    memset(head + 10 + n, ' ', padded - 10 - n - 1);
    head[padded - 1] = '\n';
    AtomicFile af;
    int rc = atomic_open(&af, path, e);
    if (!rc) rc = atomic_write(&af, head, padded, e);
    if (!rc) rc = atomic_write(&af, data, numel * esize, e);
    if (!rc) rc = atomic_commit(&af, e);
    else atomic_abort(&af);
    return rc;
}

int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, Err *e) {
    return npy_write(path, data, sizeof(float), "<f4", ndim, shape, e);
}

int npy_write_i64(const char *path, const int64_t *data, int ndim, const int64_t *shape, Err *e) {
    return npy_write(path, data, sizeof(int64_t), "<i8", ndim, shape, e);
}
