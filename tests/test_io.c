/* safetensors and npy: round trips, and every malformed input refused with a clear message. */
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "io/checkpoint.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "io/state.h"

/* A safetensors file from a literal header and `data_len` bytes of data. */
static void write_st_raw(const char *path, const char *header, size_t data_len) {
    size_t h = strlen(header);
    uint8_t *buf = calloc(1, 8 + h + data_len);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    write_bytes(path, buf, 8 + h + data_len);
    free(buf);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Expects st_open to fail with a message containing `needle`. */
static void expect_st_error(const char *path, const char *needle) {
    Safetensors st;
    Err e = {{0}};
    int rc = st_open(&st, path, &e);
    CHECK(rc != 0, "%s: accepted, expected an error mentioning '%s'", path, needle);
    CHECK(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    CHECK(strstr(e.msg, path) != NULL, "message '%s' does not name the file", e.msg);
    CHECK(strchr(e.msg, '\n') == NULL, "message is one line");
    if (rc == 0) st_close(&st);
}

static void test_safetensors_round_trip(void) {
    float a[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 7}, b[1] = {42};
    int64_t sa[2] = {2, 3}, sb[1] = {1};
    StTensorOut t[2] = {{"first.weight", 2, sa, a, 0}, {"second \"quoted\"", 1, sb, b, 0}};
    StMeta meta[2] = {{"config", "{\"width\": 8}"}, {"note", "line\nbreak"}};
    Err e;
    const char *p = tmp_path("rt.safetensors");
    CHECK(st_write(p, t, 2, meta, 2, &e) == 0, "%s", e.msg);
    Safetensors st;
    CHECK(st_open(&st, p, &e) == 0, "%s", e.msg);
    CHECK(st.n_entries == 2, "entries %d", st.n_entries);
    CHECK(st.data_start % 8 == 0, "data aligned to 8 bytes");
    const StEntry *x = st_find(&st, "first.weight"), *y = st_find(&st, "second \"quoted\"");
    CHECK(x && y, "both names found");
    if (x && y) {
        float ra[6], rb[1];
        st_read_f32(&st, x, ra);
        st_read_f32(&st, y, rb);
        CHECK(memcmp(ra, a, sizeof a) == 0 && rb[0] == 42, "data identical");
        CHECK(x->ndim == 2 && x->shape[0] == 2 && x->shape[1] == 3, "shape kept");
        CHECK(st_expect_f32(&st, x, 2, sa, &e) == 0, "expect ok");
        int64_t wrong[2] = {3, 2};
        CHECK(st_expect_f32(&st, x, 2, wrong, &e) != 0 && strstr(e.msg, "[2, 3]") && strstr(e.msg, "[3, 2]"),
              "wrong shape names found and expected: %s", e.msg);
    }
    CHECK(st_meta(&st, "config") && strcmp(st_meta(&st, "config"), "{\"width\": 8}") == 0, "metadata kept");
    CHECK(st_meta(&st, "note") && strcmp(st_meta(&st, "note"), "line\nbreak") == 0, "escapes kept");
    st_close(&st);
}

static void test_safetensors_rejects_malformed(void) {
    const char *p;
    p = tmp_path("missing.safetensors");
    unlink(p);
    expect_st_error(p, "cannot open");

    p = tmp_path("tiny.safetensors");
    write_bytes(p, "abc", 3);
    expect_st_error(p, "truncated");

    p = tmp_path("hlen.safetensors");
    uint8_t big[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(p, big, 10);
    expect_st_error(p, "exceeds the file");

    p = tmp_path("notjson.safetensors");
    write_st_raw(p, "{\"a\": [1, 2", 0);
    expect_st_error(p, "not a JSON object");

    p = tmp_path("dup.safetensors");
    write_st_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    expect_st_error(p, "duplicate");

    p = tmp_path("meta2.safetensors");
    write_st_raw(p, "{\"__metadata__\":{\"a\":\"1\"},\"__metadata__\":{\"b\":\"2\",\"c\":\"3\"}}", 0);
    expect_st_error(p, "__metadata__ appears twice");

    /* Many entries with a duplicate far apart (found by sorting, not by n^2 comparisons). */
    p = tmp_path("dupmany.safetensors");
    {
        enum { NT = 20000 };
        char *h = malloc(NT * 80), *q = h;
        q += sprintf(q, "{");
        for (int i = 0; i < NT; i++)
            q += sprintf(q, "%s\"t%d\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                         i ? "," : "", i == NT - 1 ? 3 : i, 4 * i, 4 * i + 4);
        sprintf(q, "}");
        write_st_raw(p, h, 4 * NT);
        free(h);
        double t0 = now_seconds();
        expect_st_error(p, "duplicate tensor name \"t3\"");
        CHECK(now_seconds() - t0 < 5, "20000 entries checked in %.1f s", now_seconds() - t0);
    }

    p = tmp_path("overlap.safetensors");
    write_st_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    expect_st_error(p, "overlap");

    p = tmp_path("size.safetensors");
    write_st_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
    expect_st_error(p, "shape x dtype");

    p = tmp_path("range.safetensors");
    write_st_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
    expect_st_error(p, "truncated");

    p = tmp_path("dtype.safetensors");
    write_st_raw(p, "{\"a\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_st_error(p, "unknown dtype");

    p = tmp_path("rank.safetensors");
    write_st_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4);
    expect_st_error(p, "rank");

    p = tmp_path("dim.safetensors");
    write_st_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    expect_st_error(p, "invalid shape");

    p = tmp_path("absurd.safetensors");
    write_st_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1000000000,1000000000,1000000000],\"data_offsets\":[0,4]}}", 4);
    expect_st_error(p, "absurd");

    p = tmp_path("fields.safetensors");
    write_st_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4);
    expect_st_error(p, "lacks");

    /* Every prefix of a valid file is refused (truncation anywhere). */
    float v[4] = {1, 2, 3, 4};
    int64_t s4[1] = {4};
    StTensorOut t = {"v", 1, s4, v, 0};
    Err e;
    const char *good = tmp_path("good.safetensors");
    CHECK(st_write(good, &t, 1, NULL, 0, &e) == 0, "%s", e.msg);
    size_t n;
    uint8_t *bytes = read_file(good, &n, &e);
    int refused = 0;
    for (size_t cut = 0; cut < n; cut++) {
        Safetensors st;
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, bytes, cut);
        if (st_parse(&st, copy, cut, "cut", &e) != 0)
            refused++;
        else
            st_close(&st);
    }
    CHECK(refused == (int)n, "%d of %zu truncations refused", refused, n);
    free(bytes);
}

/* Every file st_write makes carries a crc32 of the whole file (header included); a flipped bit
 * anywhere is refused, naming the file in one line; files without the key (PyTorch's) are read
 * as before. */
static void test_safetensors_checksum(void) {
    float v[6] = {1, 2, 3, 4, 5, 6};
    int64_t s6[1] = {6};
    StTensorOut t = {"v", 1, s6, v, 0};
    StMeta meta[3] = {{ST_CHECKSUM_KEY, "00000000"}, /* a caller's value is replaced by the real one */
                      {ST_LEGACY_CHECKSUM_KEY, "00000000"},
                      {"note", "seed"}};
    Err e;
    const char *p = tmp_path("crc.safetensors");
    CHECK(st_write(p, &t, 1, meta, 3, &e) == 0, "%s", e.msg);
    Safetensors st;
    CHECK(st_open(&st, p, &e) == 0, "a fresh file verifies: %s", e.msg);
    if (st.file) {
        const char *c = st_meta(&st, ST_CHECKSUM_KEY);
        CHECK(c && strlen(c) == 8 && strcmp(c, "00000000") != 0, "checksum stored: %s", c ? c : "(none)");
        CHECK(!st_meta(&st, ST_LEGACY_CHECKSUM_KEY), "no data-only checksum written");
        CHECK(memcmp(st.file + 8, ST_CHECKSUM_PREFIX, strlen(ST_CHECKSUM_PREFIX)) == 0,
              "the checksum is the header's first entry");
        st_close(&st);
    }
    size_t n;
    uint8_t *good = read_file(p, &n, &e);
    int refused = 0, named = 0;
    for (size_t i = 0; i < n; i++) /* the length, the header, the padding, the data */
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *copy = malloc(n);
            memcpy(copy, good, n);
            copy[i] ^= (uint8_t)(1u << bit);
            Err fe = {{0}};
            if (st_parse(&st, copy, n, "flipped.safetensors", &fe) != 0) {
                refused++;
                named += strstr(fe.msg, "flipped.safetensors") && !strchr(fe.msg, '\n');
            } else {
                st_close(&st);
            }
        }
    CHECK(refused == (int)(8 * n), "%d of %zu single-bit flips refused", refused, 8 * n);
    CHECK(named == refused, "%d of %d refusals name the file in one line", named, refused);
    /* A checksum that is not 8 hex digits. */
    const char *h = "{\"__metadata__\":{\"" ST_CHECKSUM_KEY "\":\"xyz\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                    "\"data_offsets\":[0,4]}}";
    const char *q = tmp_path("badcrc.safetensors");
    write_st_raw(q, h, 4);
    expect_st_error(q, "not 8 hex digits");
    /* No checksum at all (as PyTorch writes them): accepted. */
    const char *r = tmp_path("nocrc.safetensors");
    write_st_raw(r, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    CHECK(st_open(&st, r, &e) == 0, "a file without a checksum loads: %s", e.msg);
    if (st.file) st_close(&st);
    free(good);
}

/* A small file with a train checkpoint's metadata, as byol train writes it (the model left out). */
static const char *write_ckpt_like(const char *name, const StMeta *meta, int n_meta) {
    static float v[6] = {1, 2, 3, 4, 5, 6};
    static int64_t s6[1] = {6};
    StTensorOut t = {"online.encoder.conv1.weight", 1, s6, v, 0};
    Err e;
    const char *p = tmp_path(name);
    if (st_write(p, &t, 1, meta, n_meta, &e)) {
        printf("FATAL %s\n", e.msg);
        exit(2);
    }
    return p;
}

static const StMeta CKPT_META[] = {{"byol.config", "width = 4\nbatch = 16\n"}, {"byol.step", "20"},
                                   {"byol.epoch", "2.0000"}, {"byol.mean", "0.49 0.48 0.44"},
                                   {"byol.std", "0.24 0.24 0.26"}, {"byol.skipped", "0"}, {"byol.format", "1"}};

/* Where `needle` first occurs in n bytes (a test setup error when it does not). */
static size_t find_bytes(const uint8_t *b, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(b + i, needle, k) == 0) return i;
    printf("FATAL '%s' not in the file\n", needle);
    exit(2);
}

/* Flips one bit of byte i of the file at src into dst; expects it refused with `needle`. */
static void expect_flip_refused(const char *src, const char *dst, size_t i, uint8_t mask, const char *needle) {
    size_t n;
    uint8_t *b = slurp(src, &n);
    b[i] ^= mask;
    write_bytes(dst, b, n);
    free(b);
    expect_st_error(dst, needle);
}

/* Issue 16, item 15: the checksum covers the header, and a byol.c file cannot lose it unnoticed. */
static void test_checkpoint_header_is_covered(void) {
    const char *p = write_ckpt_like("ck20.safetensors", CKPT_META, (int)ARRAY_LEN(CKPT_META));
    size_t n;
    uint8_t *b = slurp(p, &n);
    /* byol.step "20" -> "30" (one bit: '2' is 0x32, '3' 0x33) once resumed silently at step 30. */
    size_t at = find_bytes(b, n, "\"byol.step\":\"20\"") + strlen("\"byol.step\":\"");
    expect_flip_refused(p, tmp_path("ck30.safetensors"), at, 0x01, "checksum mismatch");
    /* A bit of the config, and one of the padding before the data. */
    at = find_bytes(b, n, "width = 4");
    expect_flip_refused(p, tmp_path("ckcfg.safetensors"), at + 8, 0x02, "checksum mismatch");
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    if (b[8 + hlen - 1] == ' ') expect_flip_refused(p, tmp_path("ckpad.safetensors"), 8 + hlen - 1, 0x01, "checksum mismatch");
    /* The checksum's key name: verification is not turned off, with or without damaged data. */
    at = find_bytes(b, n, "\"" ST_CHECKSUM_KEY "\"") + strlen(ST_CHECKSUM_KEY); /* its last character */
    expect_flip_refused(p, tmp_path("ckkey.safetensors"), at, 0x01, "no " ST_CHECKSUM_KEY " checksum");
    expect_flip_refused(p, tmp_path("ckkey0.safetensors"), at - strlen(ST_CHECKSUM_KEY) + 1, 0x01,
                        "no " ST_CHECKSUM_KEY " checksum"); /* "byol." -> "cyol.": other byol.* keys remain */
    {
        uint8_t *c = malloc(n);
        memcpy(c, b, n);
        c[at] ^= 0x01, c[n - 1] ^= 0x80;
        const char *q = tmp_path("ckkeydata.safetensors");
        write_bytes(q, c, n);
        free(c);
        expect_st_error(q, "no " ST_CHECKSUM_KEY " checksum");
    }
    /* The checksum's digits: a changed digit, and a digit that is no longer hex. */
    expect_flip_refused(p, tmp_path("ckdigit.safetensors"), ST_CHECKSUM_AT + 3, 0x01, "ckdigit.safetensors");
    /* The entry moved (the header rewritten by hand, checksum copied along). */
    {
        char *moved = malloc(n + 64);
        const char *key = "\"" ST_CHECKSUM_KEY "\":\"";
        size_t k = find_bytes(b, n, key) + strlen(key);
        snprintf(moved, n + 64, "{\"__metadata__\":{\"byol.config\":\"x\",\"byol.step\":\"1\",\"" ST_CHECKSUM_KEY
                 "\":\"%.8s\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", (const char *)b + k);
        const char *q = tmp_path("ckmoved.safetensors");
        write_st_raw(q, moved, 4);
        free(moved);
        expect_st_error(q, "not the header's first entry");
    }
    /* Every single-bit flip anywhere in the file: refused, naming the file in one line. */
    int refused = 0, named = 0;
    for (size_t i = 0; i < n; i++)
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *c = malloc(n);
            memcpy(c, b, n);
            c[i] ^= (uint8_t)(1u << bit);
            Safetensors fs;
            Err fe = {{0}};
            if (st_parse(&fs, c, n, "ckflip.safetensors", &fe) != 0) {
                refused++;
                named += strncmp(fe.msg, "ckflip.safetensors: ", 20) == 0 && !strchr(fe.msg, '\n');
            } else {
                st_close(&fs);
            }
        }
    CHECK(refused == (int)(8 * n) && named == refused, "%d of %zu flips refused, %d naming the file", refused, 8 * n,
          named);
    free(b);
    /* A file that names itself a byol.c checkpoint but carries no checksum at all. */
    const char *q = tmp_path("cknocrc.safetensors");
    write_st_raw(q, "{\"__metadata__\":{\"byol.config\":\"width = 4\",\"byol.step\":\"20\",\"byol.format\":\"1\"},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_st_error(q, "no " ST_CHECKSUM_KEY " checksum");
    /* A metadata key given twice. */
    q = tmp_path("ckdupkey.safetensors");
    write_st_raw(q, "{\"__metadata__\":{\"byol.step\":\"20\",\"note\":\"a\",\"byol.step\":\"-5\"}}", 0);
    expect_st_error(q, "key \"byol.step\" appears twice");
    /* Another writer's files (the reference scripts' fixtures: no byol metadata) still load. */
    char fx[1200];
    snprintf(fx, sizeof fx, "%s/layers.safetensors", fixture_dir());
    Safetensors st;
    Err e;
    CHECK(st_open(&st, fx, &e) == 0, "a PyTorch-written fixture loads: %s", e.msg);
    if (st.file) st_close(&st);
}

/* Files of byol.c before the checksum covered the header (byol.data_crc32: the data's crc32)
 * load, their data still verified; losing that key to a flipped bit is refused too. */
static void test_legacy_data_checksum(void) {
    const uint8_t data[4] = {0, 0, 0x80, 0x3f}; /* 1.0f */
    char h[512];
    snprintf(h, sizeof h, "{\"__metadata__\":{\"byol.config\":\"width = 4\",\"byol.step\":\"20\",\"" ST_LEGACY_CHECKSUM_KEY
             "\":\"%08x\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
             (unsigned)st_crc32(data, 4, 0));
    size_t hl = strlen(h), n = 8 + hl + 4;
    uint8_t *b = calloc(1, n);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, h, hl);
    memcpy(b + 8 + hl, data, 4);
    const char *p = tmp_path("legacy.safetensors");
    write_bytes(p, b, n);
    Safetensors st;
    Err e;
    CHECK(st_open(&st, p, &e) == 0, "an older byol.c checkpoint loads: %s", e.msg);
    if (st.file) st_close(&st);
    expect_flip_refused(p, tmp_path("legacyd.safetensors"), n - 1, 0x01, "data checksum mismatch");
    size_t at = find_bytes(b, n, "data_crc32");
    expect_flip_refused(p, tmp_path("legacyk.safetensors"), at + 9, 0x01, "no " ST_CHECKSUM_KEY " checksum");
    free(b);
}

/* ckpt_meta_read on a checkpoint with CKPT_META where `key` is `value` (NULL: left out); the
 * file stays open (m->config points into it) until the next call. */
static Safetensors meta_st;
static int meta_with(const char *key, const char *value, CkptMeta *m, Err *e) {
    if (meta_st.file) st_close(&meta_st);
    StMeta meta[16];
    int n = 0, found = 0;
    for (size_t i = 0; i < ARRAY_LEN(CKPT_META); i++) {
        if (strcmp(CKPT_META[i].key, key) == 0) {
            found = 1;
            if (!value) continue;
            meta[n++] = (StMeta){CKPT_META[i].key, (char *)value};
        } else {
            meta[n++] = CKPT_META[i];
        }
    }
    if (!found && value) meta[n++] = (StMeta){(char *)key, (char *)value};
    const char *p = write_ckpt_like("ckmeta.safetensors", meta, n);
    if (st_open(&meta_st, p, e)) return -2;
    return ckpt_meta_read(&meta_st, "ckpt-20.safetensors", m, e);
}

static void expect_meta_error(const char *key, const char *value, const char *needle) {
    CkptMeta m;
    Err e = {{0}};
    int rc = meta_with(key, value, &m, &e);
    CHECK(rc == -1, "%s = '%s' accepted (rc %d: %s), expected '%s'", key, value ? value : "(absent)", rc, e.msg, needle);
    CHECK(strstr(e.msg, needle) != NULL, "%s = '%s': message '%s' lacks '%s'", key, value ? value : "(absent)", e.msg,
          needle);
    CHECK(strncmp(e.msg, "ckpt-20.safetensors: ", 21) == 0 && !strchr(e.msg, '\n'),
          "one line naming the file: '%s'", e.msg);
}

/* Issue 16, item 16: every byol.* value parsed strictly, with its range, one line each. */
static void test_checkpoint_metadata_validated(void) {
    CkptMeta m;
    Err e;
    CHECK(meta_with("byol.elapsed", "123.5", &m, &e) == 0, "a good checkpoint reads: %s", e.msg);
    CHECK(m.config && strcmp(m.config, "width = 4\nbatch = 16\n") == 0, "config");
    CHECK(m.step == 20 && m.skipped == 0 && m.elapsed_s == 123.5, "step %lld, skipped %ld, elapsed %g",
          (long long)m.step, m.skipped, m.elapsed_s);
    CHECK(m.has_norm && m.mean[0] == 0.49f && m.mean[2] == 0.44f && m.std[1] == 0.24f && m.std[2] == 0.26f,
          "normalization read");
    CHECK(meta_with("byol.skipped", "20", &m, &e) == 0 && m.skipped == 20, "skipped == step is fine: %s", e.msg);
    CHECK(meta_with("byol.mean", "0.5", &m, &e) == 0 && m.mean[0] == 0.5f && m.mean[1] == 0.5f && m.mean[2] == 0.5f,
          "a single mean fills all three: %s", e.msg);
    CHECK(meta_with("byol.step", "1000000000000000", &m, &e) == 0 && m.step == 1000000000000000LL, "1e15 is a step");
    CHECK(meta_with("byol.step", "0", &m, &e) == 0 && m.step == 0 && m.elapsed_s == 0, "0 is a step; no elapsed: 0");
    {
        StMeta bare[2] = {{"byol.config", "width = 4\n"}, {"byol.step", "7"}};
        const char *p = write_ckpt_like("ckbare.safetensors", bare, 2);
        Safetensors st;
        CHECK(st_open(&st, p, &e) == 0, "%s", e.msg);
        if (st.file) {
            CHECK(ckpt_meta_read(&st, p, &m, &e) == 0, "config and step suffice: %s", e.msg);
            CHECK(m.step == 7 && m.skipped == 0 && !m.has_norm && m.mean[1] == 0 && m.std[1] == 1,
                  "defaults without normalization");
            st_close(&st);
        }
    }
    expect_meta_error("byol.step", "-5", "byol.step '-5' is not a step (0 to 1e15)");
    expect_meta_error("byol.step", "1000000000000001", "is not a step (0 to 1e15)");
    expect_meta_error("byol.step", "99999999999999999999999", "is not a step");
    expect_meta_error("byol.step", "20x", "byol.step '20x' is not a step");
    expect_meta_error("byol.step", " 20", "is not a step");
    expect_meta_error("byol.step", "+20", "is not a step");
    expect_meta_error("byol.step", "", "is not a step");
    expect_meta_error("byol.step", "2\n0", "byol.step '2?0'"); /* shown on one line */
    expect_meta_error("byol.step", NULL, "no byol.step");
    expect_meta_error("byol.config", NULL, "no byol.config");
    expect_meta_error("byol.skipped", "21", "byol.skipped '21' is not a count of skipped steps (0 to byol.step, 20)");
    expect_meta_error("byol.skipped", "-1", "byol.skipped '-1'");
    expect_meta_error("byol.std", NULL, "byol.mean without byol.std");
    expect_meta_error("byol.mean", NULL, "byol.std without byol.mean");
    expect_meta_error("byol.mean", "nan 0 0", "byol.mean 'nan 0 0' is not 1 to 3 finite numbers");
    expect_meta_error("byol.mean", "0.5 inf 0.5", "byol.mean");
    expect_meta_error("byol.mean", "1e39 0 0", "byol.mean"); /* finite as a double, not as a float */
    expect_meta_error("byol.mean", "0.1 0.2 0.3 0.4", "byol.mean");
    expect_meta_error("byol.mean", "0.1  0.2", "byol.mean");
    expect_meta_error("byol.mean", "0.1 0.2 ", "byol.mean");
    expect_meta_error("byol.mean", "", "byol.mean");
    expect_meta_error("byol.mean", "0x1p-2", "byol.mean");
    expect_meta_error("byol.std", "0.2 0 0.2", "byol.std '0.2 0 0.2' is not 1 to 3 numbers > 0");
    expect_meta_error("byol.std", "-0.2", "byol.std");
    expect_meta_error("byol.std", "1e-50", "byol.std"); /* 0 as a float */
    expect_meta_error("byol.std", "nan", "byol.std");
    expect_meta_error("byol.elapsed", "-1", "byol.elapsed '-1' is not a number of seconds");
    expect_meta_error("byol.elapsed", "nan", "byol.elapsed");
    expect_meta_error("byol.elapsed", "1e400", "byol.elapsed");
    expect_meta_error("byol.elapsed", "12s", "byol.elapsed");
    expect_meta_error("byol.format", "2", "byol.format '2' is not a checkpoint format");
    /* the convolution plan a resume runs: its form checked on reading */
    CHECK(meta_with("byol.plan", "16,32,32,3,8,3,1,1:d-d 16,32,32,8,8,3,1,1:ddw", &m, &e) == 0 && m.plan &&
              strcmp(m.plan, "16,32,32,3,8,3,1,1:d-d 16,32,32,8,8,3,1,1:ddw") == 0,
          "a plan reads: %s", e.msg);
    CHECK(meta_with("byol.plan", NULL, &m, &e) == 0 && m.plan == NULL, "no plan (older checkpoints)");
    expect_meta_error("byol.plan", "16,32,32,3,8,3,1,1:dqd", "byol.plan: plan entry 1 ('16,32,32,3,8,3,1,1:dqd')");
    expect_meta_error("byol.plan", "16,32,32,3,8,3,1,1:ddd 16,32,32", "byol.plan: plan entry 2");
    if (meta_st.file) st_close(&meta_st);
}

/* A FIFO given as a file (a config, a checkpoint) is refused at once instead of waiting forever
 * for a writer; alarm() turns a hang into a failed run. */
static void test_fifo_refused_without_hanging(void) {
    const char *p = tmp_path("fifo.safetensors");
    unlink(p);
    CHECK(mkfifo(p, 0600) == 0, "made a FIFO");
    alarm(20);
    Safetensors st;
    Err e;
    CHECK(st_open(&st, p, &e) != 0 && strstr(e.msg, "not a regular file"), "refused: %s", e.msg);
    alarm(0);
    unlink(p);
}

static void test_safetensors_write_failure_leaves_nothing(void) {
    float v[1] = {1};
    int64_t s1[1] = {1};
    StTensorOut t = {"v", 1, s1, v, 0};
    Err e = {{0}};
    const char *p = tmp_path("no/such/dir/x.safetensors");
    CHECK(st_write(p, &t, 1, NULL, 0, &e) != 0, "write into a missing folder fails");
    CHECK(strstr(e.msg, "cannot write") != NULL, "message: %s", e.msg);
    CHECK(!exists(p), "no file left behind");
    /* An existing file is replaced only by a complete new one. */
    const char *q = tmp_path("keep.safetensors");
    CHECK(st_write(q, &t, 1, NULL, 0, &e) == 0, "%s", e.msg);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", q, (long)getpid());
    CHECK(!exists(tmp), "temporary file removed after commit");
    size_t n0, n1;
    uint8_t *before = read_file(q, &n0, &e);

    /* The temporary file cannot be created (a folder stands in its way): the old file stays. */
    CHECK(mkdir(tmp, 0700) == 0, "made an obstacle");
    float big[4096] = {0};
    int64_t sb[1] = {4096};
    StTensorOut tb = {"big", 1, sb, big, 0};
    CHECK(st_write(q, &tb, 1, NULL, 0, &e) != 0, "write with the temporary path blocked fails");
    rmdir(tmp);
    uint8_t *after = read_file(q, &n1, &e);
    CHECK(after && n1 == n0 && memcmp(before, after, n0) == 0, "old file intact after a failed open");
    free(after);

    /* The disk fills up halfway through the data (a file size limit makes write() fail with
     * EFBIG): the old file stays, and no temporary file is left. */
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {8192, old.rlim_max};
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0, "set a file size limit");
    int rc = st_write(q, &tb, 1, NULL, 0, &e);
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK(rc != 0 && strstr(e.msg, "write failed"), "write past the size limit fails: %s", e.msg);
    after = read_file(q, &n1, &e);
    CHECK(after && n1 == n0 && memcmp(before, after, n0) == 0, "old file intact after a failed write");
    CHECK(!exists(tmp), "no temporary file left after a failed write");
    free(after);
    free(before);
}

static void test_npy_round_trip(void) {
    float d[24];
    for (int i = 0; i < 24; i++) d[i] = i * 0.5f - 3;
    int64_t shape[6] = {1, 2, 2, 3, 2, 1};
    Err e;
    const char *p = tmp_path("a.npy");
    CHECK(npy_write_f32(p, d, 6, shape, &e) == 0, "%s", e.msg);
    NpyArray a;
    CHECK(npy_read_f32(p, &a, &e) == 0, "%s", e.msg);
    CHECK(a.ndim == 6 && a.numel == 24, "shape kept (%d-d, %zu)", a.ndim, a.numel);
    for (int i = 0; i < 6; i++) CHECK(a.shape[i] == shape[i], "dim %d", i);
    CHECK(a.data && memcmp(a.data, d, sizeof d) == 0, "data identical");
    npy_free(&a);
    size_t n;
    uint8_t *bytes = read_file(p, &n, &e);
    CHECK((n - 24 * 4) % 64 == 0, "data 64-byte aligned as numpy writes it");
    /* A version-2.0 header (4-byte length) reads the same. */
    size_t hlen = bytes[8] | bytes[9] << 8;
    uint8_t *v2 = malloc(n + 2);
    memcpy(v2, "\x93NUMPY\x02\x00", 8);
    v2[8] = (uint8_t)hlen, v2[9] = (uint8_t)(hlen >> 8), v2[10] = v2[11] = 0;
    memcpy(v2 + 12, bytes + 10, n - 10);
    CHECK(npy_parse_f32(v2, n + 2, "v2", &a, &e) == 0, "%s", e.msg);
    CHECK(a.numel == 24 && memcmp(a.data, d, sizeof d) == 0, "v2 data identical");
    npy_free(&a);
    free(v2);
    free(bytes);
}

static void expect_npy_error(const char *header_dict, size_t data_bytes, const char *needle) {
    uint8_t buf[512] = "\x93NUMPY\x01\x00";
    size_t h = strlen(header_dict);
    buf[8] = (uint8_t)h, buf[9] = 0;
    memcpy(buf + 10, header_dict, h);
    memset(buf + 10 + h, 0, data_bytes);
    NpyArray a;
    Err e = {{0}};
    int rc = npy_parse_f32(buf, 10 + h + data_bytes, "x.npy", &a, &e);
    CHECK(rc != 0, "accepted %s", header_dict);
    CHECK(strstr(e.msg, needle) && strstr(e.msg, "x.npy"), "message '%s' lacks '%s'", e.msg, needle);
    if (rc == 0) npy_free(&a);
}

static void test_npy_rejects_malformed(void) {
    expect_npy_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16, "float32");
    expect_npy_error("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8, "Fortran");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 8, "truncated");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 8, "trailing");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, }", 8, "lacks descr, fortran_order or shape");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999,), }", 8, "absurd");
    /* Strict dict: keys once each, nothing else, values of the right form. */
    expect_npy_error("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8, "repeated key 'descr'");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8, "unexpected");
    expect_npy_error("{'note': 'shape': (2,)', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8, "unexpected");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }", 8, "malformed shape");
    expect_npy_error("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", 8, "fortran_order");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } junk", 8, "trailing characters");
    NpyArray a;
    Err e = {{0}};
    CHECK(npy_parse_f32((const uint8_t *)"PK\x03\x04 not numpy", 16, "z.npy", &a, &e) != 0 &&
              strstr(e.msg, "bad magic"), "%s", e.msg);
    uint8_t cut[12] = "\x93NUMPY\x01\x00\x40\x00";
    CHECK(npy_parse_f32(cut, 12, "c.npy", &a, &e) != 0 && strstr(e.msg, "truncated"), "%s", e.msg);
}

/* State files: PyTorch layout on disk, ours in memory, every tensor accounted for. */
static void test_state_round_trip_and_layout(void) {
    ModelConfig c;
    model_config_default(&c);
    c.enc.width = 2, c.proj_hidden = 8, c.proj_dim = 4, c.pred_hidden = 8;
    Byol m, m2;
    byol_init(&m, &c);
    byol_init(&m2, &c);
    TestRng r = {99};
    fill_normal(&r, m.online.params, m.online.n_params, 1);
    fill_normal(&r, m.online.momentum, m.online.n_params, 1);
    fill_normal(&r, m.online.buffers, m.online.n_buffers, 1);
    fill_normal(&r, m.target.params, m.target.n_params, 1);
    fill_normal(&r, m.target.buffers, m.target.n_buffers, 1);
    Err e;
    const char *p = tmp_path("state.safetensors");
    CHECK(state_save(&m, p, NULL, 0, &e) == 0, "%s", e.msg);
    CHECK(state_load(&m2, p, &e) == 0, "%s", e.msg);
    CHECK(memcmp(m.online.mem, m2.online.mem, (m.online.n_params * 3 + m.online.n_buffers) * 4) == 0 ||
              (memcmp(m.online.params, m2.online.params, m.online.n_params * 4) == 0 &&
               memcmp(m.online.momentum, m2.online.momentum, m.online.n_params * 4) == 0 &&
               memcmp(m.online.buffers, m2.online.buffers, m.online.n_buffers * 4) == 0),
          "online state identical after a round trip");
    CHECK(memcmp(m.target.params, m2.target.params, m.target.n_params * 4) == 0, "target params identical");
    CHECK(memcmp(m.target.buffers, m2.target.buffers, m.target.n_buffers * 4) == 0, "target buffers identical");
    /* On disk the stem conv is OIHW: element [o=1, i=2, h=0, w=1] is at ((1*3+2)*3+0)*3+1. */
    Safetensors st;
    CHECK(st_open(&st, p, &e) == 0, "%s", e.msg);
    const StEntry *w = st_find(&st, "online.encoder.conv1.weight");
    CHECK(w && w->ndim == 4 && w->shape[0] == 2 && w->shape[1] == 3 && w->shape[2] == 3, "conv1 shape [2, 3, 3, 3]");
    if (w) {
        float disk[54];
        st_read_f32(&st, w, disk);
        int idx = store_find(&m.online, "online.encoder.conv1.weight");
        const float *mem = m.online.params + m.online.specs[idx].offset;
        CHECK(disk[((1 * 3 + 2) * 3 + 0) * 3 + 1] == mem[((1 * 3 + 0) * 3 + 1) * 3 + 2], "OIHW on disk, OHWI in memory");
    }
    int n_params = 0;
    for (int i = 0; i < m.online.n_specs; i++) n_params += m.online.specs[i].role == ROLE_PARAM;
    CHECK(st.n_entries == m.online.n_specs + m.target.n_specs + n_params, "every tensor and momentum written once (%d)", st.n_entries);
    CHECK(st_find(&st, "online.encoder.layer2.0.downsample.1.running_var") && st_find(&st, "predictor.3.bias") &&
              st_find(&st, "target.projector.1.running_mean") && st_find(&st, "momentum.predictor.1.weight") &&
              !st_find(&st, "momentum.target.encoder.conv1.weight") && !st_find(&st, "online.encoder.bn1.num_batches_tracked"),
          "torchvision names");
    st_close(&st);
    byol_free(&m);
    byol_free(&m2);
}

static void test_state_load_errors_name_the_key(void) {
    ModelConfig c;
    model_config_default(&c);
    c.enc.width = 2, c.proj_hidden = 8, c.proj_dim = 4, c.pred_hidden = 8;
    Byol m;
    byol_init(&m, &c);
    Err e;
    const char *p = tmp_path("state2.safetensors");
    CHECK(state_save(&m, p, NULL, 0, &e) == 0, "%s", e.msg);
    /* The same file read by a model of another width: a shape error naming key and shapes. */
    ModelConfig c4 = c;
    c4.enc.width = 4;
    Byol m4;
    byol_init(&m4, &c4);
    CHECK(state_load(&m4, p, &e) != 0, "width mismatch refused");
    CHECK(strstr(e.msg, "online.encoder.conv1.weight") && strstr(e.msg, "[2, 3, 3, 3]") && strstr(e.msg, "[4, 3, 3, 3]"),
          "message names key, found and expected: %s", e.msg);
    byol_free(&m4);
    /* A resnet34 reading a resnet18 file: the first missing key is named. */
    ModelConfig c34 = c;
    c34.enc.arch = ARCH_RESNET34;
    Byol m34;
    byol_init(&m34, &c34);
    CHECK(state_load(&m34, p, &e) != 0 && strstr(e.msg, "missing tensor online.encoder.layer1.2.conv1.weight"),
          "missing key named: %s", e.msg);
    byol_free(&m34);
    /* F64 where F32 is required. */
    const char *q = tmp_path("f64.safetensors");
    write_st_raw(q, "{\"online.encoder.conv1.weight\":{\"dtype\":\"F64\",\"shape\":[2,3,3,3],\"data_offsets\":[0,432]}}", 432);
    CHECK(state_load(&m, q, &e) != 0 && strstr(e.msg, "dtype F64") && strstr(e.msg, "online.encoder.conv1.weight"),
          "dtype error: %s", e.msg);
    byol_free(&m);
}

int main(void) {
    test_tmpdir("test_io");
    RUN(test_safetensors_round_trip);
    RUN(test_safetensors_rejects_malformed);
    RUN(test_safetensors_checksum);
    RUN(test_checkpoint_header_is_covered);
    RUN(test_legacy_data_checksum);
    RUN(test_checkpoint_metadata_validated);
    RUN(test_fifo_refused_without_hanging);
    RUN(test_safetensors_write_failure_leaves_nothing);
    RUN(test_npy_round_trip);
    RUN(test_npy_rejects_malformed);
    RUN(test_state_round_trip_and_layout);
    RUN(test_state_load_errors_name_the_key);
    return test_finish();
}
