#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Limits that keep a hostile header from making us allocate or loop absurdly. */
enum { ST_MAX_HEADER = 100 << 20, ST_MAX_TENSORS = 1 << 20 };
static const int64_t ST_MAX_DIM = (int64_t)1 << 40;

static int dtype_size(const char *d) {
    static const struct { const char *name; int size; } T[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},  {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1},
        {"F8_E5M2", 1}};
    for (size_t i = 0; i < ARRAY_LEN(T); i++)
        if (strcmp(d, T[i].name) == 0) return T[i].size;
    return 0;
}

size_t st_numel(const StEntry *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

void st_close(Safetensors *st) {
    for (int i = 0; i < st->n_entries; i++) free(st->entries[i].name);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta[i].key);
        free(st->meta[i].value);
    }
    free(st->entries);
    free(st->meta);
    free(st->file);
    memset(st, 0, sizeof *st);
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (!d) die("out of memory");
    memcpy(d, s, n);
    return d;
}

static int parse_entry(StEntry *t, const cJSON *item, const char *label, Err *e) {
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    char name[80]; /* for messages: a hostile name may hold newlines */
    st_printable(name, sizeof name, item->string);
    if (!cJSON_IsObject(item) || !cJSON_IsString(dtype) || !cJSON_IsArray(shape) ||
        !cJSON_IsArray(offs))
        return err_set(e, "%s: tensor \"%s\" lacks dtype, shape or data_offsets", label, name);
    if (strlen(dtype->valuestring) >= sizeof t->dtype || !dtype_size(dtype->valuestring))
    {
        char dt[24];
        return err_set(e, "%s: tensor \"%s\" has unknown dtype \"%s\"", label, name,
                       st_printable(dt, sizeof dt, dtype->valuestring));
    }
    strcpy(t->dtype, dtype->valuestring);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_NDIM)
        return err_set(e, "%s: tensor \"%s\" has rank %d (at most %d supported)", label,
                       name, ndim, ST_MAX_NDIM);
    t->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > (double)ST_MAX_DIM ||
            d->valuedouble != (double)(int64_t)d->valuedouble)
            return err_set(e, "%s: tensor \"%s\" has an invalid shape", label, name);
        t->shape[i] = (int64_t)d->valuedouble;
        if (t->shape[i] && numel > SIZE_MAX / 16 / (size_t)t->shape[i])
            return err_set(e, "%s: tensor \"%s\" is absurdly large", label, name);
        numel *= (size_t)t->shape[i];
    }
    if (cJSON_GetArraySize(offs) != 2)
        return err_set(e, "%s: tensor \"%s\": data_offsets must be [begin, end]", label, name);
    double b = cJSON_GetArrayItem(offs, 0)->valuedouble, en = cJSON_GetArrayItem(offs, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(offs, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(offs, 1)) ||
        b < 0 || en < b || en > 9e15 || b != (double)(size_t)b || en != (double)(size_t)en)
        return err_set(e, "%s: tensor \"%s\" has invalid data_offsets", label, name);
    t->begin = (size_t)b;
    t->end = (size_t)en;
    size_t want = numel * (size_t)dtype_size(t->dtype);
    if (t->end - t->begin != want)
        return err_set(e, "%s: tensor \"%s\" has %zu bytes but shape x dtype needs %zu", label,
                       name, t->end - t->begin, want);
    return 0;
}

static int cmp_begin(const void *a, const void *b) {
    const StEntry *x = *(const StEntry *const *)a, *y = *(const StEntry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const StEntry *const *)a)->name, (*(const StEntry *const *)b)->name);
}

static int cmp_meta_key(const void *a, const void *b) {
    return strcmp((*(const StMeta *const *)a)->key, (*(const StMeta *const *)b)->key);
}

const char *st_printable(char *buf, size_t cap, const char *s) {
    size_t n = 0, len = strlen(s);
    const size_t keep = len < cap ? len : cap > 4 ? cap - 4 : 0;
    for (; n < keep; n++) {
        unsigned char c = (unsigned char)s[n];
        buf[n] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (keep < len && cap >= 4) memcpy(buf + n, "...", 3), n += 3;
    if (cap) buf[n < cap ? n : cap - 1] = 0;
    return buf;
}

static int is_hex8(const char *s) {
    if (strlen(s) != 8) return 0;
    for (int i = 0; i < 8; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* The checksum of a parsed file (safetensors.h says what it covers). */
static int verify_checksum(const Safetensors *st, const char *label, Err *e) {
    const char *stored = st_meta(st, ST_CHECKSUM_KEY);
    char shown[40];
    if (stored) {
        if (!is_hex8(stored))
            return err_set(e, "%s: __metadata__ %s is \"%s\", not 8 hex digits: corrupt header", label,
                           ST_CHECKSUM_KEY, st_printable(shown, 20, stored));
        /* The digits must be the ones at the fixed place, or the crc would skip other bytes. */
        const size_t pre = sizeof ST_CHECKSUM_PREFIX - 1;
        if (st->data_start < ST_CHECKSUM_AT + 9 || memcmp(st->file + 8, ST_CHECKSUM_PREFIX, pre) != 0 ||
            memcmp(st->file + ST_CHECKSUM_AT, stored, 8) != 0 || st->file[ST_CHECKSUM_AT + 8] != '"')
            return err_set(e, "%s: __metadata__ %s is not the header's first entry, where byol.c writes it: "
                              "the header was altered; use an earlier checkpoint", label, ST_CHECKSUM_KEY);
        uint32_t got = st_crc32(st->file, ST_CHECKSUM_AT, 0);
        got = st_crc32("00000000", 8, got);
        got = st_crc32(st->file + ST_CHECKSUM_AT + 8, st->size - ST_CHECKSUM_AT - 8, got);
        char got_s[16];
        snprintf(got_s, sizeof got_s, "%08x", (unsigned)got);
        if (strcmp(got_s, stored) != 0)
            return err_set(e, "%s: checksum mismatch (crc32 %s stored, %s computed over header and data): the "
                              "file is corrupt (damaged disk or incomplete copy); use an earlier checkpoint",
                           label, stored, got_s);
        return 0;
    }
    const char *legacy = st_meta(st, ST_LEGACY_CHECKSUM_KEY);
    if (legacy) { /* written before the checksum covered the header */
        if (!is_hex8(legacy))
            return err_set(e, "%s: __metadata__ %s is \"%s\", not 8 hex digits: corrupt header", label,
                           ST_LEGACY_CHECKSUM_KEY, st_printable(shown, 20, legacy));
        char got_s[16];
        snprintf(got_s, sizeof got_s, "%08x",
                 (unsigned)st_crc32(st->file + st->data_start, st->size - st->data_start, 0));
        if (strcmp(got_s, legacy) != 0)
            return err_set(e, "%s: data checksum mismatch (crc32 %s stored, %s computed): the file is corrupt "
                              "(damaged disk or incomplete copy); use an earlier checkpoint", label, legacy, got_s);
        return 0;
    }
    /* No checksum: refused when the file is byol.c's all the same, so that no flipped bit can
     * turn verification off. A checkpoint has other byol.* keys; any file of st_write starts
     * with ST_CHECKSUM_PREFIX, here with one bit flipped (most likely in the key). */
    const size_t pre = sizeof ST_CHECKSUM_PREFIX - 1;
    if (st->data_start >= 8 + pre) {
        int bits = 0;
        for (size_t i = 0; i < pre; i++) {
            unsigned x = st->file[8 + i] ^ (unsigned char)ST_CHECKSUM_PREFIX[i];
            for (; x; x &= x - 1) bits++;
        }
        if (bits <= 1)
            return err_set(e, "%s: no %s checksum, but the header starts as byol.c writes it, one bit off: the "
                              "file is damaged; use an earlier checkpoint", label, ST_CHECKSUM_KEY);
    }
    for (int i = 0; i < st->n_meta; i++)
        if (strncmp(st->meta[i].key, "byol.", 5) == 0)
            return err_set(e, "%s: has byol.c metadata (\"%s\") but no %s checksum: a damaged header "
                              "(the checksum's key itself?) or an edited file; use an earlier checkpoint",
                           label, st_printable(shown, sizeof shown, st->meta[i].key), ST_CHECKSUM_KEY);
    return 0; /* another writer's file: nothing to verify */
}

int st_parse(Safetensors *st, uint8_t *file, size_t size, const char *label, Err *e) {
    memset(st, 0, sizeof *st);
    snprintf(st->path, sizeof st->path, "%s", label);
    st->file = file;
    st->size = size;
    if (size < 8) {
        st_close(st);
        return err_set(e, "%s: not a safetensors file (%zu bytes, truncated?)", label, size);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | file[i];
    if (hlen > size - 8 || hlen > ST_MAX_HEADER) {
        st_close(st);
        return err_set(e, "%s: header length %llu exceeds the file (%zu bytes): truncated or not "
                          "a safetensors file", label, (unsigned long long)hlen, size);
    }
    st->data_start = 8 + (size_t)hlen;
    cJSON *root = cJSON_ParseWithLength((const char *)file + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        st_close(st);
        return err_set(e, "%s: header is not a JSON object: corrupt or not a safetensors file", label);
    }
    int n = cJSON_GetArraySize(root);
    if (n > ST_MAX_TENSORS) {
        cJSON_Delete(root);
        st_close(st);
        return err_set(e, "%s: header lists %d entries (too many)", label, n);
    }
    st->entries = calloc(n ? n : 1, sizeof *st->entries);
    st->meta = calloc(1, sizeof *st->meta);
    if (!st->entries || !st->meta) die("out of memory reading %s", label);
    int rc = 0, seen_meta = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(item)) {
                rc = err_set(e, "%s: __metadata__ is not an object", label);
                break;
            }
            if (seen_meta++) {
                rc = err_set(e, "%s: __metadata__ appears twice: corrupt header", label);
                break;
            }
            int nm = cJSON_GetArraySize(item);
            free(st->meta);
            st->meta = calloc(nm ? nm : 1, sizeof *st->meta);
            if (!st->meta) die("out of memory reading %s", label);
            const cJSON *kv;
            cJSON_ArrayForEach(kv, item) {
                if (!cJSON_IsString(kv)) {
                    char key[80];
                    rc = err_set(e, "%s: __metadata__ value \"%s\" is not a string", label,
                                 st_printable(key, sizeof key, kv->string));
                    break;
                }
                st->meta[st->n_meta].key = xstrdup(kv->string);
                st->meta[st->n_meta].value = xstrdup(kv->valuestring);
                st->n_meta++;
            }
            if (rc) break;
            continue;
        }
        StEntry *t = &st->entries[st->n_entries];
        if ((rc = parse_entry(t, item, label, e))) break;
        t->name = xstrdup(item->string);
        st->n_entries++;
    }
    cJSON_Delete(root);
    if (rc) {
        st_close(st);
        return rc;
    }
    /* Every tensor inside the data section, no two overlapping. */
    size_t data_size = size - st->data_start;
    const StEntry **order = malloc(sizeof *order * (st->n_entries ? st->n_entries : 1));
    if (!order) die("out of memory reading %s", label);
    for (int i = 0; i < st->n_entries; i++) order[i] = &st->entries[i];
    qsort(order, st->n_entries, sizeof *order, cmp_begin);
    char n1[80], n2[80]; /* names for messages, control characters replaced */
    for (int i = 0; i < st->n_entries && !rc; i++) {
        if (order[i]->end > data_size)
            rc = err_set(e, "%s: tensor \"%s\" ends at byte %zu of a %zu-byte data section: "
                            "truncated file", label, st_printable(n1, sizeof n1, order[i]->name), order[i]->end,
                         data_size);
        else if (i > 0 && order[i]->begin < order[i - 1]->end)
            rc = err_set(e, "%s: tensors \"%s\" and \"%s\" overlap", label,
                         st_printable(n1, sizeof n1, order[i - 1]->name), st_printable(n2, sizeof n2, order[i]->name));
    }
    /* Duplicate names, found by sorting (a hostile header may list a million entries). */
    for (int i = 0; i < st->n_entries; i++) order[i] = &st->entries[i];
    qsort(order, st->n_entries, sizeof *order, cmp_name);
    for (int i = 1; i < st->n_entries && !rc; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0)
            rc = err_set(e, "%s: duplicate tensor name \"%s\"", label, st_printable(n1, sizeof n1, order[i]->name));
    free(order);
    /* Duplicate metadata keys, the same way: readers disagree on which one counts (we take the
     * first, PyTorch's the last), so a byol.step given twice would mean two things. */
    if (!rc && st->n_meta > 1) {
        char shown[40];
        const StMeta **keys = malloc(sizeof *keys * st->n_meta);
        if (!keys) die("out of memory reading %s", label);
        for (int i = 0; i < st->n_meta; i++) keys[i] = &st->meta[i];
        qsort(keys, st->n_meta, sizeof *keys, cmp_meta_key);
        for (int i = 1; i < st->n_meta && !rc; i++)
            if (strcmp(keys[i - 1]->key, keys[i]->key) == 0)
                rc = err_set(e, "%s: __metadata__ key \"%s\" appears twice: corrupt header", label,
                             st_printable(shown, sizeof shown, keys[i]->key));
        free(keys);
    }
    if (!rc) rc = verify_checksum(st, label, e);
    if (rc) st_close(st);
    return rc;
}

uint32_t st_crc32(const void *data, size_t n, uint32_t crc) {
    const uint8_t *p = data;
    uLong c = crc;
    while (n) { /* zlib takes an unsigned int length */
        unsigned chunk = n > (1u << 30) ? 1u << 30 : (unsigned)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

int st_open(Safetensors *st, const char *path, Err *e) {
    size_t size;
    uint8_t *buf = read_file(path, &size, e);
    if (!buf) {
        memset(st, 0, sizeof *st);
        return -1;
    }
    return st_parse(st, buf, size, path, e);
}

const StEntry *st_find(const Safetensors *st, const char *name) {
    for (int i = 0; i < st->n_entries; i++)
        if (strcmp(st->entries[i].name, name) == 0) return &st->entries[i];
    return NULL;
}

const char *st_meta(const Safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
    return NULL;
}

void st_read_f32(const Safetensors *st, const StEntry *t, float *dst) {
    memcpy(dst, st->file + st->data_start + t->begin, t->end - t->begin);
}

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

int st_expect_f32(const Safetensors *st, const StEntry *t, int ndim, const int64_t *shape, Err *e) {
    if (strcmp(t->dtype, "F32") != 0)
        return err_set(e, "%s: %s has dtype %s, expected F32 (save with tensor.float())", st->path,
                       t->name, t->dtype);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char want[128], found[128];
        format_shape(want, sizeof want, ndim, shape);
        format_shape(found, sizeof found, t->ndim, t->shape);
        return err_set(e, "%s: %s has shape %s, expected %s (do the model flags match the file?)",
                       st->path, t->name, found, want);
    }
    return 0;
}

/* ---- writer ---- */

typedef struct {
    char *s;
    size_t len, cap;
} StrBuf;

static void sb_put(StrBuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *g = realloc(b->s, cap);
        if (!g) die("out of memory writing a safetensors header");
        b->s = g;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_str(StrBuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json_string(StrBuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static size_t st_tensor_bytes(const StTensorOut *t) {
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
    return numel * (t->i64 ? 8 : 4);
}

int st_write(const char *path, const StTensorOut *ts, int n, const StMeta *meta, int n_meta,
             Err *e) {
    StrBuf h = {0};
    char num[64];
    /* The checksum entry first, its digits zeros for now (safetensors.h: what the crc covers). */
    sb_str(&h, ST_CHECKSUM_PREFIX "00000000\"");
    for (int i = 0; i < n_meta; i++) {
        if (strcmp(meta[i].key, ST_CHECKSUM_KEY) == 0 || strcmp(meta[i].key, ST_LEGACY_CHECKSUM_KEY) == 0)
            continue; /* ours is the one that counts */
        sb_str(&h, ",");
        sb_json_string(&h, meta[i].key);
        sb_str(&h, ":");
        sb_json_string(&h, meta[i].value);
    }
    sb_str(&h, "}");
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        sb_str(&h, ",");
        sb_json_string(&h, ts[i].name);
        sb_str(&h, ts[i].i64 ? ":{\"dtype\":\"I64\",\"shape\":[" : ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < ts[i].ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)ts[i].shape[d]);
            sb_str(&h, num);
        }
        const size_t bytes = st_tensor_bytes(&ts[i]);
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", offset, offset + bytes);
        sb_str(&h, num);
        offset += bytes;
    }
    sb_str(&h, "}");
    while ((8 + h.len) % 8) sb_str(&h, " "); /* data starts 8-byte aligned, as the spec advises */

    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    uint32_t crc = st_crc32(len8, 8, 0);
    crc = st_crc32(h.s, h.len, crc);
    for (int i = 0; i < n; i++) crc = st_crc32(ts[i].data, st_tensor_bytes(&ts[i]), crc);
    char crc_s[16];
    snprintf(crc_s, sizeof crc_s, "%08x", (unsigned)crc);
    memcpy(h.s + (ST_CHECKSUM_AT - 8), crc_s, 8);
    AtomicFile af;
    int rc = atomic_open(&af, path, e);
    if (!rc) rc = atomic_write(&af, len8, 8, e);
    if (!rc) rc = atomic_write(&af, h.s, h.len, e);
    for (int i = 0; i < n && !rc; i++) rc = atomic_write(&af, ts[i].data, st_tensor_bytes(&ts[i]), e);
    if (!rc) rc = atomic_commit(&af, e);
    else atomic_abort(&af);
    free(h.s);
    return rc;
}
