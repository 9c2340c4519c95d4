/* safetensors files (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length, a JSON header {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {string: string}}, then the raw little-endian data.
 *
 * The reader validates everything before anything is used: header within the file, JSON well
 * formed, dtypes known, shapes sane, every tensor's byte size equal to shape x dtype, offsets
 * inside the data and not overlapping, no duplicate names or metadata keys, and the file's
 * checksum (below) when it carries one; st_write always adds it.
 *
 * The checksum: __metadata__ ST_CHECKSUM_KEY holds 8 hex digits, the crc32 (zlib's) of the whole
 * file (length, header, data) as it would read with those 8 digits set to "00000000"; st_write
 * makes that entry the header's first, so the digits always sit at bytes ST_CHECKSUM_AT..+8 and
 * the reader finds them without a second JSON parser. So that a flipped bit in the checksum's
 * key cannot turn verification off, a file without the key is refused when it is byol.c's all
 * the same: it has other "byol." metadata (every checkpoint does), or its header starts one bit
 * away from ST_CHECKSUM_PREFIX.
 * Files of other writers (PyTorch's safetensors) carry neither and are read without a checksum;
 * the files stay plain safetensors, which PyTorch loads. Files of byol.c before the header was
 * covered carry ST_LEGACY_CHECKSUM_KEY, a crc32 of the data section alone, and are verified so. */
#ifndef BYOL_SAFETENSORS_H
#define BYOL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"

enum { ST_MAX_NDIM = 8 };
#define ST_CHECKSUM_KEY "byol.crc32"             /* 8 hex digits: crc32 of the whole file, see above */
#define ST_LEGACY_CHECKSUM_KEY "byol.data_crc32" /* older files: crc32 of the data section only */
/* The header's first bytes in every file st_write makes; the checksum's digits follow. */
#define ST_CHECKSUM_PREFIX "{\"__metadata__\":{\"" ST_CHECKSUM_KEY "\":\""
enum { ST_CHECKSUM_AT = 8 + sizeof ST_CHECKSUM_PREFIX - 1 };

typedef struct {
    char *name;
    char dtype[8];      /* "F32", "F64", "I64", ... */
    int ndim;
    int64_t shape[ST_MAX_NDIM];
    size_t begin, end;  /* byte offsets into the data section */
} StEntry;

typedef struct {
    char *key, *value;
} StMeta;

typedef struct {
    char path[1024];
    uint8_t *file;
    size_t size, data_start;
    StEntry *entries;
    int n_entries;
    StMeta *meta;
    int n_meta;
} Safetensors;

int st_open(Safetensors *st, const char *path, Err *e);
/* Same checks on a buffer already in memory (takes ownership of `file`, which must come from
 * malloc). `label` names it in messages. */
int st_parse(Safetensors *st, uint8_t *file, size_t size, const char *label, Err *e);
void st_close(Safetensors *st);
/* s for a one-line message: control characters as '?', cut to cap - 1 bytes with "..." when
 * longer; returns buf. */
const char *st_printable(char *buf, size_t cap, const char *s);
/* zlib's crc32 of n bytes, continuing from crc (0 to start). */
uint32_t st_crc32(const void *data, size_t n, uint32_t crc);

const StEntry *st_find(const Safetensors *st, const char *name);
const char *st_meta(const Safetensors *st, const char *key); /* NULL if absent */
size_t st_numel(const StEntry *t);
/* Copies an F32 tensor's data (the file's data may be unaligned). */
void st_read_f32(const Safetensors *st, const StEntry *t, float *dst);
/* Checks dtype F32 and the expected shape; fills e with "file: key: expected .. found ..". */
int st_expect_f32(const Safetensors *st, const StEntry *t, int ndim, const int64_t *shape, Err *e);

typedef struct {
    const char *name;
    int ndim;
    const int64_t *shape;
    const void *data; /* F32 values, or I64 when i64 is set (little-endian machines) */
    int i64;
} StTensorOut;

/* Writes tensors (F32, or I64) and string metadata atomically: an existing file at `path` is replaced
 * only once the new one is complete on disk. */
int st_write(const char *path, const StTensorOut *tensors, int n, const StMeta *meta, int n_meta,
             Err *e);

#endif
