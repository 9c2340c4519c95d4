/* Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/): small valid inputs of
 * every format, made with byol.c's own writers (and libjpeg/zlib for JPEG and gzip), so the
 * fuzzers start from files that reach deep into each parser. `make fuzz-corpus` runs it; the
 * files are committed, so CI and `make fuzz` do not need it. Usage: make_corpus OUTDIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cli/train_opts.h"
#include "data/image.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "io/state.h"
#include "../jpeg_encode.h"
#include "../image_encode.h"

static const char *out_root;

typedef struct {
    uint8_t *p;
    size_t n, cap;
} Buf;

static void put(Buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) die("out of memory");
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_u8(Buf *b, uint8_t v) { put(b, &v, 1); }

/* One file of a dataset target's input (tests/fuzz/fuzz_files.h): 4-byte length, bytes. */
static void put_file(Buf *b, const Buf *f) {
    uint8_t len[4];
    for (int k = 0; k < 4; k++) len[k] = (uint8_t)(f ? f->n >> (8 * k) : 0);
    put(b, len, 4);
    if (f) put(b, f->p, f->n);
}

static Buf slurp(const char *path) {
    Err e;
    size_t n;
    uint8_t *p = read_file(path, &n, &e);
    if (!p) die("%s", e.msg);
    return (Buf){p, n, n};
}

static void save(const char *target, const char *name, const Buf *b) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/%s", out_root, target);
    mkdir(out_root, 0755);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->p, 1, b->n, f) != b->n || fclose(f) != 0) die("cannot write %s", path);
}

static uint8_t pixel(int i) { return (uint8_t)(i * 37 + (i >> 3) * 11); }

static Buf jpeg_bytes(int w, int h, int c) {
    uint8_t *px = malloc((size_t)w * h * c);
    for (int i = 0; i < w * h * c; i++) px[i] = pixel(i);
    unsigned long size;
    unsigned char *mem = jpeg_encode(px, w, h, c, 75, &size);
    free(px);
    Buf b = {0};
    put(&b, mem, size);
    free(mem);
    return b;
}

static Buf png_bytes(int w, int h, int c) {
    uint8_t *px = malloc((size_t)w * h * c);
    for (int i = 0; i < w * h * c; i++) px[i] = pixel(i);
    char path[600];
    snprintf(path, sizeof path, "%s/.tmp.png", out_root);
    Err e;
    if (png_write(path, px, w, h, c, &e)) die("%s", e.msg);
    free(px);
    Buf b = slurp(path);
    unlink(path);
    return b;
}

static Buf gzip_bytes(const Buf *plain) {
    char path[600];
    snprintf(path, sizeof path, "%s/.tmp.gz", out_root);
    gzFile g = gzopen(path, "wb9");
    if (!g || gzwrite(g, plain->p, (unsigned)plain->n) != (int)plain->n || gzclose(g) != Z_OK)
        die("cannot gzip into %s", path);
    Buf b = slurp(path);
    unlink(path);
    return b;
}

static void be32(Buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

static void idx_seeds(void) {
    Buf img = {0}, lab = {0};
    be32(&img, 0x803), be32(&img, 2), be32(&img, 4), be32(&img, 4);
    for (int i = 0; i < 32; i++) put_u8(&img, pixel(i));
    be32(&lab, 0x801), be32(&lab, 2);
    put_u8(&lab, 3), put_u8(&lab, 9);
    Buf gimg = gzip_bytes(&img), glab = gzip_bytes(&lab);
    for (int v = 0; v < 3; v++) {
        Buf in = {0};
        put_u8(&in, v == 0 ? 0 : v == 1 ? 1 : 0x1f); /* plain MNIST; plain Fashion; all gzipped */
        const Buf *i1 = v == 2 ? &gimg : &img, *l1 = v == 2 ? &glab : &lab;
        put_file(&in, i1), put_file(&in, l1), put_file(&in, i1), put_file(&in, l1);
        char name[32];
        snprintf(name, sizeof name, "seed%d", v);
        save("idx", name, &in);
    }
}

static void cifar_seeds(void) {
    for (int c100 = 0; c100 < 2; c100++) {
        const size_t rec = c100 ? 3074 : 3073;
        Buf batch = {0};
        for (int r = 0; r < 2; r++) {
            if (c100) put_u8(&batch, (uint8_t)(r * 7));
            put_u8(&batch, (uint8_t)(r * 5 + 1));
            for (size_t i = 0; i < 3072; i++) put_u8(&batch, pixel((int)(i + r)));
        }
        if (batch.n != 2 * rec) die("cifar seed size");
        Buf names = {0};
        const char *text = "zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n";
        put(&names, text, strlen(text));
        Buf in = {0};
        put_u8(&in, (uint8_t)c100);
        if (c100) {
            put_file(&in, &batch), put_file(&in, &batch); /* train.bin, test.bin */
        } else {
            put_file(&in, &batch), put_file(&in, &batch); /* data_batch_1, 2 */
            put_file(&in, NULL), put_file(&in, NULL), put_file(&in, NULL);
            put_file(&in, &batch), put_file(&in, &names); /* test_batch, batches.meta.txt */
        }
        save("cifar", c100 ? "cifar100" : "cifar10", &in);
    }
}

static void stl10_seeds(void) {
    Buf x = {0}, y = {0};
    for (int i = 0; i < 2 * 3 * 96 * 96; i++) put_u8(&x, pixel(i));
    put_u8(&y, 1), put_u8(&y, 10);
    Buf in = {0};
    put_u8(&in, 0);
    put_file(&in, &x), put_file(&in, &y), put_file(&in, &x), put_file(&in, &y), put_file(&in, &x);
    save("stl10", "full", &in);
    Buf un = {0};
    put_u8(&un, 0);
    put_file(&un, NULL), put_file(&un, NULL), put_file(&un, NULL), put_file(&un, NULL), put_file(&un, &x);
    save("stl10", "unlabeled", &un);
}

/* An 8 x 6 RGB BMP (24 bits, bottom-up) and TIFF (LZW) of a gradient, as the decoders' seeds. */
static Buf bmp_and_tiff_bytes(int tiff) {
    uint8_t px[8 * 6 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(13 * i);
    Buf b = {0};
    if (!tiff) {
        size_t n;
        uint8_t *p = bmp_encode(px, 8, 6, 24, 0, &n);
        put(&b, p, n);
        free(p);
        return b;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/.tmp.tif", out_root);
    write_tiff(path, px, 8, 6, 3, COMPRESSION_LZW);
    size_t n;
    Err e;
    uint8_t *p = read_file(path, &n, &e);
    if (!p) die("%s", e.msg);
    unlink(path);
    put(&b, p, n);
    free(p);
    return b;
}

static void image_and_folder_seeds(void) {
    Buf imgs[6] = {jpeg_bytes(8, 8, 3), png_bytes(8, 8, 1), png_bytes(8, 6, 3), jpeg_bytes(16, 16, 1),
                   bmp_and_tiff_bytes(0), bmp_and_tiff_bytes(1)};
    const char *names[6] = {"rgb.jpg", "gray.png", "rgb.png", "gray.jpg", "rgb.bmp", "rgb.tif"};
    for (int i = 0; i < 6; i++) {
        Buf in = {0};
        put_u8(&in, i == 3 ? 0x10 : (uint8_t)(i & 1 ? 0 : 1)); /* channels; a min_side hint */
        put(&in, imgs[i].p, imgs[i].n);
        save("image", names[i], &in);
    }
    for (int with_test = 0; with_test < 2; with_test++) {
        Buf in = {0};
        put_u8(&in, (uint8_t)with_test);
        put_file(&in, &imgs[0]), put_file(&in, &imgs[2]), put_file(&in, &imgs[1]), put_file(&in, &imgs[3]);
        if (with_test) put_file(&in, &imgs[2]), put_file(&in, &imgs[0]);
        save("folder", with_test ? "train_test" : "train", &in);
    }
}

static void safetensors_seeds(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/.tmp.safetensors", out_root);
    Err e;
    float a[6] = {1, 2, 3, 4, 5, 6};
    int64_t sa[2] = {2, 3}, sb[1] = {1}, ib[1] = {7};
    StTensorOut t[2] = {{"a", 2, sa, a, 0}, {"b", 1, sb, ib, 1}};
    StMeta meta[1] = {{"note", "seed"}};
    if (st_write(path, t, 2, meta, 1, &e)) die("%s", e.msg);
    Buf small = slurp(path);
    save("safetensors", "small", &small);
    /* A train checkpoint's metadata (the tensors left out, to stay well under the fuzzer's
     * max_len): byol.* values for ckpt_meta_read, the checksum over all of it. */
    float w[4] = {0.5f, -1, 2, 0};
    int64_t sw[1] = {4};
    StTensorOut tw = {"online.encoder.conv1.weight", 1, sw, w, 0};
    StMeta ck[] = {{"byol.config", "arch = resnet18\nwidth = 1\nbatch = 16\nepochs = 3\n"},
                   {"byol.step", "20"}, {"byol.epoch", "2.0000"}, {"byol.mean", "0.491400003 0.482199997 0.446499985"},
                   {"byol.std", "0.247000003 0.243000001 0.261000007"}, {"byol.skipped", "1"},
                   {"byol.format", "1"}, {"byol.elapsed", "12.5"}};
    if (st_write(path, &tw, 1, ck, (int)ARRAY_LEN(ck), &e)) die("%s", e.msg);
    Buf checkpoint = slurp(path);
    save("safetensors", "checkpoint", &checkpoint);
    /* Another writer's file (no checksum), and an older byol.c checkpoint (data-only crc32). */
    Buf other = {0}, legacy = {0};
    const char *oh = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    char lh[256];
    snprintf(lh, sizeof lh, "{\"__metadata__\":{\"byol.config\":\"width = 1\\n\",\"byol.step\":\"7\",\"" ST_LEGACY_CHECKSUM_KEY
             "\":\"%08x\"},\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", (unsigned)st_crc32(w, sizeof w, 0));
    const char *heads[2] = {oh, lh};
    Buf *outs[2] = {&other, &legacy};
    for (int k = 0; k < 2; k++) {
        uint8_t len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)strlen(heads[k]) >> (8 * i));
        put(outs[k], len8, 8);
        put(outs[k], heads[k], strlen(heads[k]));
        put(outs[k], w, sizeof w);
    }
    save("safetensors", "other_writer", &other);
    save("safetensors", "legacy_checkpoint", &legacy);
    ModelConfig c; /* the fuzz target's model: a matching state file loads fully */
    model_config_default(&c);
    c.enc.width = 1;
    c.proj_hidden = 4;
    c.proj_dim = 2;
    c.pred_hidden = 4;
    Byol m;
    byol_init(&m, &c);
    byol_init_weights(&m, 1);
    if (state_save(&m, path, NULL, 0, &e)) die("%s", e.msg);
    Buf state = slurp(path);
    save("safetensors", "state", &state);
    unlink(path);
    byol_free(&m);
}

static void npy_seeds(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/.tmp.npy", out_root);
    Err e;
    float d[6] = {1, -2, 3.5f, 0, 5, 6};
    int64_t s2[2] = {2, 3}, s0[1] = {0};
    if (npy_write_f32(path, d, 2, s2, &e)) die("%s", e.msg);
    Buf a = slurp(path);
    save("npy", "2x3", &a);
    if (npy_write_f32(path, d, 1, s0, &e)) die("%s", e.msg);
    Buf b = slurp(path);
    save("npy", "empty", &b);
    unlink(path);
}

/* A text seed: the string's bytes as one input file. */
static void save_text(const char *target, const char *name, const char *text) {
    Buf b = {0};
    put(&b, text, strlen(text));
    save(target, name, &b);
    free(b.p);
}

static void config_and_cli_seeds(void) {
    TrainOptions o;
    Flag flags[TRAIN_FLAG_MAX];
    int n = train_flags(flags, &o);
    char *dump = flags_dump(flags, n);
    save_text("config", "defaults", dump);
    save_text("config", "small", "# a run\nwidth = 8\nbatch = 64 # per step\nbase-lr=0.5\ndata = /nonexistent\n");
    save_text("cli", "flags", "--width\n8\n--batch=64\n--epochs\n2\n--arch\nresnet34\n--stem\nimagenet\n--out\n/tmp/x\n");
    save_text("cli", "config_help", "--config\n/nonexistent.cfg\n--base-lr\n1e-3\n--help\n");
    free(dump);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus OUTDIR\n");
        return 2;
    }
    out_root = argv[1];
    mkdir(out_root, 0755);
    safetensors_seeds();
    npy_seeds();
    idx_seeds();
    cifar_seeds();
    stl10_seeds();
    image_and_folder_seeds();
    config_and_cli_seeds();
    printf("seed corpora written under %s\n", out_root);
    return 0;
}
