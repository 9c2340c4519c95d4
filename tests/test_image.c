/* Image codecs (JPEG, PNG, BMP, TIFF) and image folders: exact PNG, BMP and TIFF decoding, JPEG
 * decoding (scaled too) against PIL, corrupt/truncated/hostile files refused with the file named,
 * and ImageFolder-style listing with skipped files reported. Every input is made in TEST_TMP,
 * except the CIFAR-10 JPEG archive (../shared/data) and small PIL fixtures (tests/fixtures). */
#include "harness.h"

#include "jpeg_encode.h"
#include "image_encode.h"
#include <png.h>
#include <zlib.h>

#include "data/dataset.h"
#include "data/image.h"

static const char *CIFAR_JPEG_TGZ = "../shared/data/cifar10-jpeg.tar.gz";

static void mkdirs(const char *path) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    if (system(cmd) != 0) {
        printf("FATAL cannot create %s\n", path);
        exit(2);
    }
}

static uint8_t pil_gray(const uint8_t *p) {
    return (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
}

/* ---- writers for test inputs ---- */

typedef struct {
    int bit_depth, color_type, interlace;
    const png_color *palette;
    int n_palette;
    const uint8_t *trns; /* palette alpha */
    int n_trns;
} PngSpec;

/* A PNG written with libpng directly. rows: packed rows as libpng expects them (16-bit big
 * endian, sub-byte depths packed MSB first). */
static void write_png_raw(const char *path, int w, int h, const PngSpec *sp, const uint8_t *data,
                          size_t row_bytes) {
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (!f || !png || !info || setjmp(png_jmpbuf(png))) {
        printf("FATAL cannot write %s\n", path);
        exit(2);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, sp->bit_depth, sp->color_type,
                 sp->interlace, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (sp->palette) png_set_PLTE(png, info, sp->palette, sp->n_palette);
    if (sp->trns) png_set_tRNS(png, info, sp->trns, sp->n_trns, NULL);
    png_write_info(png, info);
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(data + (size_t)y * row_bytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    free(rows);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

/* A JPEG (baseline, quality q) of c = 1 or 3 channel pixels, written to path; returns its bytes
 * (malloc'ed) in *out / *n when out is non-NULL. */
static void write_jpeg(const char *path, const uint8_t *px, int w, int h, int c, int q,
                       uint8_t **out, size_t *n) {
    unsigned long size;
    unsigned char *mem = jpeg_encode(px, w, h, c, q, &size);
    write_bytes(path, mem, size);
    if (out) {
        *out = malloc(size);
        memcpy(*out, mem, size);
        *n = size;
    }
    free(mem);
}

/* A smooth colour picture (JPEG-friendly), w x h x c. */
static uint8_t *smooth_image(int w, int h, int c) {
    uint8_t *p = malloc((size_t)w * h * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) {
                double v = 128 + 90 * sin(0.07 * x * (k + 1) + 0.05 * y) * cos(0.04 * y * (2 - k % 2));
                p[((size_t)y * w + x) * c + k] = (uint8_t)lround(v);
            }
    return p;
}

static uint8_t *random_bytes(size_t n, uint64_t seed) {
    TestRng r = {seed};
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(rng_uniform(&r) * 256);
    return p;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A PNG that is only a signature, an IHDR claiming w x h RGB (correct CRC) and an empty IDAT. */
static void write_png_header_only(const char *path, uint32_t w, uint32_t h) {
    uint8_t b[8 + 25 + 12 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t *c = b + 8;
    put_be32(c, 13);
    memcpy(c + 4, "IHDR", 4);
    put_be32(c + 8, w);
    put_be32(c + 12, h);
    c[16] = 8; /* depth */
    c[17] = 2; /* RGB */
    c[18] = c[19] = c[20] = 0;
    put_be32(c + 21, (uint32_t)crc32(0, c + 4, 17));
    uint8_t *d = c + 25;
    put_be32(d, 0);
    memcpy(d + 4, "IDAT", 4);
    put_be32(d + 8, (uint32_t)crc32(0, d + 4, 4));
    uint8_t *end = d + 12;
    put_be32(end, 0);
    memcpy(end + 4, "IEND", 4);
    put_be32(end + 8, (uint32_t)crc32(0, end + 4, 4));
    write_bytes(path, b, sizeof b);
}

/* ---- expectations ---- */

static void expect_decode(const char *path, int channels, int w, int h, const uint8_t *want,
                          const char *what) {
    Image img = {0};
    Err e = {{0}};
    int rc = image_decode_file(&img, path, channels, 0, &e);
    CHECK(rc == 0, "%s: %s", what, e.msg);
    if (rc == 0) {
        CHECK(img.w == w && img.h == h && img.c == channels, "%s: got %dx%dx%d, want %dx%dx%d", what,
              img.w, img.h, img.c, w, h, channels);
        if (img.w == w && img.h == h && img.c == channels) {
            size_t n = (size_t)w * h * channels, bad = 0, first = 0;
            for (size_t i = 0; i < n; i++)
                if (img.px[i] != want[i] && !bad++) first = i;
            CHECK(bad == 0, "%s: %zu of %zu values differ, first at %zu: %d vs %d", what, bad, n,
                  first, img.px[first], want[first]);
        }
    }
    image_free(&img);
}

static void expect_probe(const char *path, int w, int h, int c, const char *what) {
    int pw = -1, ph = -1, pc = -1;
    Err e = {{0}};
    int rc = image_probe_file(path, &pw, &ph, &pc, &e);
    CHECK(rc == 0, "%s: %s", what, e.msg);
    CHECK(pw == w && ph == h && pc == c, "%s: probe %dx%dx%d, want %dx%dx%d", what, pw, ph, pc, w, h, c);
}

/* Both probe and decode fail naming the file and mentioning `needle`. */
static void expect_refused(const char *path, const char *needle, int check_probe) {
    Err e = {{0}};
    Image img = {0};
    int rc = image_decode_file(&img, path, 3, 0, &e);
    CHECK(rc != 0, "%s: decoded, expected an error mentioning '%s'", path, needle);
    CHECK(strstr(e.msg, path) != NULL, "decode message '%s' does not name the file", e.msg);
    CHECK(strstr(e.msg, needle) != NULL, "decode message '%s' lacks '%s'", e.msg, needle);
    CHECK(strchr(e.msg, '\n') == NULL, "one line: %s", e.msg);
    image_free(&img);
    if (!check_probe) return;
    int w, h, c;
    Err e2 = {{0}};
    rc = image_probe_file(path, &w, &h, &c, &e2);
    CHECK(rc != 0, "%s: probe accepted, expected an error mentioning '%s'", path, needle);
    CHECK(strstr(e2.msg, path) != NULL, "probe message '%s' does not name the file", e2.msg);
    CHECK(strstr(e2.msg, needle) != NULL, "probe message '%s' lacks '%s'", e2.msg, needle);
}

/* ---- PNG ---- */

static void test_png_round_trip(void) {
    const int w = 13, h = 7;
    uint8_t *rgb = random_bytes((size_t)w * h * 3, 1), *gray = random_bytes((size_t)w * h, 2);
    uint8_t *as_gray = malloc((size_t)w * h), *as_rgb = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) {
        as_gray[i] = pil_gray(rgb + 3 * i);
        memset(as_rgb + 3 * i, gray[i], 3);
    }
    Err e;
    const char *pr = tmp_path("rt_rgb.png"), *pg = tmp_path("rt_gray.png");
    CHECK(png_write(pr, rgb, w, h, 3, &e) == 0, "%s", e.msg);
    CHECK(png_write(pg, gray, w, h, 1, &e) == 0, "%s", e.msg);
    expect_probe(pr, w, h, 3, "rgb png");
    expect_probe(pg, w, h, 1, "gray png");
    expect_decode(pr, 3, w, h, rgb, "rgb png as rgb");
    expect_decode(pg, 1, w, h, gray, "gray png as gray");
    expect_decode(pr, 1, w, h, as_gray, "rgb png as gray (PIL's rule)");
    expect_decode(pg, 3, w, h, as_rgb, "gray png as rgb");

    /* One Image reused: a smaller decode after a larger one keeps the buffer. */
    Image img = {0};
    CHECK(image_decode_file(&img, pr, 3, 0, &e) == 0, "%s", e.msg);
    uint8_t *before = img.px;
    size_t cap = img.cap;
    CHECK(image_decode_file(&img, pg, 1, 0, &e) == 0, "%s", e.msg);
    CHECK(img.px == before && img.cap == cap && img.c == 1, "buffer reused");
    image_free(&img);
    CHECK(img.px == NULL && img.cap == 0, "image_free clears");

    /* An unwritable path fails and leaves nothing behind. */
    const char *bad = tmp_path("no_such_dir/x.png");
    CHECK(png_write(bad, rgb, w, h, 3, &e) != 0 && strstr(e.msg, bad), "unwritable: %s", e.msg);
    CHECK(png_write(tmp_path("c2.png"), rgb, w, h, 2, &e) != 0, "2 channels refused");
    struct stat st;
    CHECK(stat(tmp_path("c2.png"), &st) != 0, "nothing written on error");
    free(rgb);
    free(gray);
    free(as_gray);
    free(as_rgb);
}

static void test_png_color_types(void) {
    enum { W = 9, H = 5 };
    TestRng r = {7};
    /* RGBA 8-bit: alpha dropped. */
    {
        uint8_t d[W * H * 4], want[W * H * 3];
        for (int i = 0; i < W * H; i++) {
            for (int k = 0; k < 4; k++) d[4 * i + k] = (uint8_t)(rng_uniform(&r) * 256);
            memcpy(want + 3 * i, d + 4 * i, 3);
        }
        PngSpec sp = {8, PNG_COLOR_TYPE_RGBA, PNG_INTERLACE_NONE, NULL, 0, NULL, 0};
        const char *p = tmp_path("rgba.png");
        write_png_raw(p, W, H, &sp, d, W * 4);
        expect_probe(p, W, H, 3, "rgba");
        expect_decode(p, 3, W, H, want, "rgba as rgb");
        uint8_t g[W * H];
        for (int i = 0; i < W * H; i++) g[i] = pil_gray(want + 3 * i);
        expect_decode(p, 1, W, H, g, "rgba as gray");
    }
    /* Gray + alpha 8-bit. */
    {
        uint8_t d[W * H * 2], want[W * H];
        for (int i = 0; i < W * H; i++) {
            d[2 * i] = want[i] = (uint8_t)(rng_uniform(&r) * 256);
            d[2 * i + 1] = (uint8_t)i;
        }
        PngSpec sp = {8, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_INTERLACE_NONE, NULL, 0, NULL, 0};
        const char *p = tmp_path("ga.png");
        write_png_raw(p, W, H, &sp, d, W * 2);
        expect_probe(p, W, H, 1, "gray+alpha");
        expect_decode(p, 1, W, H, want, "gray+alpha as gray");
    }
    /* Palette, 4-bit, with tRNS (ignored). */
    {
        png_color pal[16];
        uint8_t trns[16];
        for (int i = 0; i < 16; i++) {
            pal[i] = (png_color){(uint8_t)(i * 16), (uint8_t)(255 - i * 7), (uint8_t)(i * i)};
            trns[i] = (uint8_t)(i * 10);
        }
        const int rb = (W + 1) / 2;
        uint8_t d[H * ((W + 1) / 2)], want[W * H * 3];
        memset(d, 0, sizeof d);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int idx = (x * 3 + y * 5) % 16;
                d[y * rb + x / 2] |= (uint8_t)(idx << (x % 2 ? 0 : 4));
                uint8_t *o = want + (y * W + x) * 3;
                o[0] = pal[idx].red;
                o[1] = pal[idx].green;
                o[2] = pal[idx].blue;
            }
        PngSpec sp = {4, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, pal, 16, trns, 16};
        const char *p = tmp_path("pal4.png");
        write_png_raw(p, W, H, &sp, d, rb);
        expect_probe(p, W, H, 3, "palette");
        expect_decode(p, 3, W, H, want, "palette 4-bit + tRNS as rgb");
        uint8_t g[W * H];
        for (int i = 0; i < W * H; i++) g[i] = pil_gray(want + 3 * i);
        expect_decode(p, 1, W, H, g, "palette as gray");
    }
    /* 16-bit colour keeps the high byte (v >> 8), as PIL does ("RGB;16B", "RGBA;16B" and
     * "LA;16B" unpackers), so RGB16, RGBA16 and gray+alpha 16 match PIL exactly. 16-bit gray
     * without alpha is scaled, round(v * 255 / 65535) (PIL opens it as mode "I" and clips it to
     * 255 when converting to L or RGB; we differ on purpose). 129 (0 vs 1) and 0xFF00 (255 vs
     * 254) tell the two rules apart. */
    {
        uint8_t d[W * H * 8], hi[W * H * 4], scaled[W * H * 4];
        uint16_t special[6] = {0, 65535, 128, 129, 32767, 0xFF00};
        for (int i = 0; i < W * H * 4; i++) {
            uint16_t v = i < 6 ? special[i] : (uint16_t)(rng_uniform(&r) * 65536);
            d[2 * i] = (uint8_t)(v >> 8);
            d[2 * i + 1] = (uint8_t)v;
            hi[i] = (uint8_t)(v >> 8);
            scaled[i] = (uint8_t)((v * 255u + 32767u) / 65535u);
        }
        CHECK(hi[3] != scaled[3] && hi[5] != scaled[5], "the special values separate the rules");
        PngSpec sp = {16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, NULL, 0, NULL, 0};
        const char *p = tmp_path("rgb16.png");
        write_png_raw(p, W, H, &sp, d, W * 6);
        expect_probe(p, W, H, 3, "rgb16");
        expect_decode(p, 3, W, H, hi, "rgb 16-bit: high byte, as PIL");
        uint8_t g[W * H];
        for (int i = 0; i < W * H; i++) g[i] = pil_gray(hi + 3 * i);
        expect_decode(p, 1, W, H, g, "rgb 16-bit as gray: PIL's L of the high bytes");

        /* RGBA 16: the same high bytes, alpha dropped. */
        uint8_t rgba[W * H * 8], want[W * H * 3];
        for (int i = 0; i < W * H; i++) {
            memcpy(rgba + 8 * i, d + 6 * i, 6);
            rgba[8 * i + 6] = (uint8_t)(i * 5);
            rgba[8 * i + 7] = (uint8_t)(255 - i);
            memcpy(want + 3 * i, hi + 3 * i, 3);
        }
        PngSpec sa = {16, PNG_COLOR_TYPE_RGBA, PNG_INTERLACE_NONE, NULL, 0, NULL, 0};
        p = tmp_path("rgba16.png");
        write_png_raw(p, W, H, &sa, rgba, W * 8);
        expect_probe(p, W, H, 3, "rgba16");
        expect_decode(p, 3, W, H, want, "rgba 16-bit: high byte, as PIL");

        /* Gray + alpha 16: high byte (PIL's "LA;16B"). */
        uint8_t la[W * H * 4], lwant[W * H];
        for (int i = 0; i < W * H; i++) {
            memcpy(la + 4 * i, d + 2 * i, 2);
            la[4 * i + 2] = 0x12;
            la[4 * i + 3] = 0x34;
            lwant[i] = hi[i];
        }
        PngSpec sl = {16, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_INTERLACE_NONE, NULL, 0, NULL, 0};
        p = tmp_path("la16.png");
        write_png_raw(p, W, H, &sl, la, W * 4);
        expect_probe(p, W, H, 1, "gray+alpha 16");
        expect_decode(p, 1, W, H, lwant, "gray+alpha 16-bit: high byte, as PIL");

        /* Gray 16: scaled, as gray and replicated as RGB. */
        PngSpec sg = {16, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, NULL, 0, NULL, 0};
        const char *q = tmp_path("gray16.png");
        write_png_raw(q, W, H, &sg, d, W * 2);
        expect_probe(q, W, H, 1, "gray16");
        expect_decode(q, 1, W, H, scaled, "gray 16-bit: scaled");
        uint8_t rep[W * H * 3];
        for (int i = 0; i < W * H; i++) rep[3 * i] = rep[3 * i + 1] = rep[3 * i + 2] = scaled[i];
        expect_decode(q, 3, W, H, rep, "gray 16-bit as rgb: scaled, replicated");
    }
    /* Gray 1, 2, 4 bits: scaled to 0..255 (x255, x85, x17). */
    for (int depth = 1; depth <= 4; depth *= 2) {
        const int per = 8 / depth, rb = (W + per - 1) / per, maxv = (1 << depth) - 1;
        uint8_t d[H * 8], want[W * H];
        memset(d, 0, sizeof d);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int v = (x + 2 * y) % (maxv + 1);
                d[y * rb + x / per] |= (uint8_t)(v << (8 - depth * (x % per + 1)));
                want[y * W + x] = (uint8_t)(v * 255 / maxv);
            }
        PngSpec sp = {depth, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, NULL, 0, NULL, 0};
        char name[32];
        snprintf(name, sizeof name, "gray%d.png", depth);
        const char *p = tmp_path(name);
        write_png_raw(p, W, H, &sp, d, rb);
        expect_probe(p, W, H, 1, name);
        expect_decode(p, 1, W, H, want, name);
    }
    /* Interlaced (Adam7) RGB, big enough for all seven passes. */
    {
        enum { IW = 23, IH = 19 };
        uint8_t *d = random_bytes(IW * IH * 3, 99);
        PngSpec sp = {8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7, NULL, 0, NULL, 0};
        const char *p = tmp_path("adam7.png");
        write_png_raw(p, IW, IH, &sp, d, IW * 3);
        expect_decode(p, 3, IW, IH, d, "interlaced rgb");
        free(d);
    }
}

/* ---- JPEG ---- */

static void max_mean_diff(const uint8_t *a, const uint8_t *b, size_t n, int *maxd, double *mean) {
    long sum = 0;
    *maxd = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        sum += d;
        if (d > *maxd) *maxd = d;
    }
    *mean = (double)sum / (double)n;
}

static void test_jpeg_decode(void) {
    const int w = 48, h = 40;
    uint8_t *rgb = smooth_image(w, h, 3), *gray = smooth_image(w, h, 1);
    const char *pr = tmp_path("c.jpg"), *pg = tmp_path("g.jpg");
    write_jpeg(pr, rgb, w, h, 3, 95, NULL, NULL);
    write_jpeg(pg, gray, w, h, 1, 95, NULL, NULL);
    expect_probe(pr, w, h, 3, "rgb jpeg");
    expect_probe(pg, w, h, 1, "gray jpeg");
    Image a = {0}, b = {0};
    Err e;
    int maxd;
    double mean;
    CHECK(image_decode_file(&a, pr, 3, 0, &e) == 0, "%s", e.msg);
    CHECK(a.w == w && a.h == h && a.c == 3, "rgb size");
    if (a.w == w && a.h == h && a.c == 3) {
        max_mean_diff(a.px, rgb, (size_t)w * h * 3, &maxd, &mean);
        CHECK(maxd <= 12 && mean < 1.5, "rgb jpeg q95: max diff %d, mean %.2f", maxd, mean);
    }
    /* RGB JPEG as gray: PIL's rule on the RGB decode, exactly. */
    CHECK(image_decode_file(&b, pr, 1, 0, &e) == 0, "%s", e.msg);
    CHECK(b.w == w && b.h == h && b.c == 1, "gray size");
    if (b.c == 1 && a.c == 3) {
        int bad = 0;
        for (int i = 0; i < w * h; i++) bad += b.px[i] != pil_gray(a.px + 3 * i);
        CHECK(bad == 0, "%d pixels differ from PIL's rule", bad);
    }
    /* Gray JPEG: as gray close to the input, as RGB three equal channels. */
    CHECK(image_decode_file(&a, pg, 1, 0, &e) == 0, "%s", e.msg);
    CHECK(a.c == 1 && a.w == w && a.h == h, "gray jpeg size");
    if (a.c == 1) {
        max_mean_diff(a.px, gray, (size_t)w * h, &maxd, &mean);
        CHECK(maxd <= 8 && mean < 1.0, "gray jpeg q95: max diff %d, mean %.2f", maxd, mean);
    }
    CHECK(image_decode_file(&b, pg, 3, 0, &e) == 0, "%s", e.msg);
    CHECK(b.c == 3 && b.w == w && b.h == h, "gray jpeg as rgb size");
    if (b.c == 3 && a.c == 1) {
        int bad = 0;
        for (int i = 0; i < w * h; i++)
            bad += b.px[3 * i] != a.px[i] || b.px[3 * i + 1] != a.px[i] || b.px[3 * i + 2] != a.px[i];
        CHECK(bad == 0, "%d gray pixels not replicated", bad);
    }
    image_free(&a);
    image_free(&b);
    free(rgb);
    free(gray);
}

static void test_jpeg_scaled(void) {
    const int w = 400, h = 300;
    uint8_t *rgb = smooth_image(w, h, 3);
    const char *p = tmp_path("big.jpg");
    write_jpeg(p, rgb, w, h, 3, 90, NULL, NULL);
    struct {
        int min_side, w, h;
    } cases[] = {{0, 400, 300},  {1000, 400, 300}, {301, 400, 300}, {300, 400, 300}, {150, 200, 150},
                 {151, 400, 300}, {64, 100, 75},   {75, 100, 75},   {76, 200, 150},  {1, 50, 38}};
    Image img = {0};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        Err e = {{0}};
        int rc = image_decode_file(&img, p, 3, cases[i].min_side, &e);
        CHECK(rc == 0, "%s", e.msg);
        CHECK(img.w == cases[i].w && img.h == cases[i].h && img.c == 3,
              "min_side %d: got %dx%d, want %dx%d", cases[i].min_side, img.w, img.h, cases[i].w, cases[i].h);
    }
    /* The 1/4 decode looks like the picture: compare to a 4x4 box average of the original. */
    Err e;
    CHECK(image_decode_file(&img, p, 3, 64, &e) == 0, "%s", e.msg);
    if (img.w == 100 && img.h == 75) {
        double sum = 0;
        for (int y = 0; y < 75; y++)
            for (int x = 0; x < 100; x++)
                for (int k = 0; k < 3; k++) {
                    int acc = 0;
                    for (int dy = 0; dy < 4; dy++)
                        for (int dx = 0; dx < 4; dx++) acc += rgb[((y * 4 + dy) * w + x * 4 + dx) * 3 + k];
                    sum += fabs(acc / 16.0 - img.px[(y * 100 + x) * 3 + k]);
                }
        double mean = sum / (75 * 100 * 3);
        CHECK(mean < 3.0, "1/4 scaled decode vs box average: mean diff %.2f", mean);
    }
    /* Gray output from a scaled decode too. */
    CHECK(image_decode_file(&img, p, 1, 64, &e) == 0 && img.w == 100 && img.h == 75 && img.c == 1,
          "scaled gray: %s", e.msg);
    /* min_side has no effect on PNG. */
    const char *q = tmp_path("big.png");
    CHECK(png_write(q, rgb, w, h, 3, &e) == 0, "%s", e.msg);
    CHECK(image_decode_file(&img, q, 3, 64, &e) == 0 && img.w == w && img.h == h, "png full size");
    image_free(&img);
    free(rgb);
}

/* A CMYK JPEG (Adobe-style inverted, as Photoshop and PIL write them) converted as PIL does. */
static void test_jpeg_cmyk(void) {
    char jpg[512], ref[512];
    snprintf(jpg, sizeof jpg, "%s/image_cmyk.jpg", fixture_dir());
    snprintf(ref, sizeof ref, "%s/image_cmyk.rgb", fixture_dir());
    size_t n;
    uint8_t *want = slurp(ref, &n);
    CHECK(n == 16 * 12 * 3, "fixture size %zu", n);
    expect_probe(jpg, 16, 12, 3, "cmyk");
    expect_decode(jpg, 3, 16, 12, want, "cmyk jpeg vs PIL convert('RGB')");
    uint8_t g[16 * 12];
    for (int i = 0; i < 16 * 12; i++) g[i] = pil_gray(want + 3 * i);
    expect_decode(jpg, 1, 16, 12, g, "cmyk jpeg as gray");
    free(want);
}

/* ---- corrupt, truncated, hostile ---- */

static void test_corrupt_files(void) {
    const int w = 160, h = 120; /* big enough that half the JPEG holds its whole header */
    uint8_t *rgb = smooth_image(w, h, 3), *jbytes = NULL;
    size_t jn = 0;
    write_jpeg(tmp_path("ok.jpg"), rgb, w, h, 3, 90, &jbytes, &jn);

    /* JPEG cut in half: header intact (probe passes), decode fails. */
    const char *p = tmp_path("half.jpg");
    write_bytes(p, jbytes, jn / 2);
    expect_probe(p, w, h, 3, "truncated jpeg header");
    expect_refused(p, "JPEG", 0);
    /* JPEG cut inside its header: both fail. */
    p = tmp_path("head.jpg");
    write_bytes(p, jbytes, 40);
    expect_refused(p, "JPEG", 1);
    /* Entropy data garbled in the middle. */
    {
        uint8_t *g = malloc(jn);
        memcpy(g, jbytes, jn);
        for (size_t i = jn / 2; i < jn / 2 + 64 && i < jn - 2; i++) g[i] = 0xFF;
        p = tmp_path("garbled.jpg");
        write_bytes(p, g, jn);
        expect_refused(p, "JPEG", 0);
        free(g);
    }

    /* libjpeg warnings that lose no pixels do not make a file corrupt (PIL opens such files):
     * a JFIF APP0 claiming version 2.01 ("unknown JFIF revision number")... */
    {
        Image ref = {0}, img = {0};
        Err e = {{0}};
        CHECK(image_decode_mem(&ref, jbytes, jn, "ok", 3, 0, &e) == 0, "%s", e.msg);
        uint8_t *j = malloc(jn + 16);
        memcpy(j, jbytes, jn);
        CHECK(memcmp(j + 6, "JFIF", 5) == 0 && j[11] == 1, "JFIF APP0 version at byte 11");
        j[11] = 2;
        j[12] = 1;
        p = tmp_path("jfif201.jpg");
        write_bytes(p, j, jn);
        expect_probe(p, w, h, 3, "JFIF 2.01");
        expect_decode(p, 3, w, h, ref.px, "JFIF 2.01 decodes like the original");
        /* ... but cut in half it is still refused. */
        p = tmp_path("jfif201_half.jpg");
        write_bytes(p, j, jn / 2);
        expect_refused(p, "Premature end of JPEG file", 0);
        /* An Adobe APP14 with an unknown transform code (7) in place of the JFIF APP0: libjpeg
         * warns and decodes as YCbCr, the same pixels. */
        static const uint8_t app14[16] = {0xFF, 0xEE, 0x00, 0x0E, 'A', 'd', 'o', 'b',
                                          'e',  0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x07};
        CHECK(j[2] == 0xFF && j[3] == 0xE0 && j[4] == 0 && j[5] == 16, "APP0 of 16 bytes");
        memcpy(j + 2, app14, sizeof app14);
        memcpy(j + 18, jbytes + 20, jn - 20);
        p = tmp_path("adobe_xform.jpg");
        write_bytes(p, j, jn - 2);
        CHECK(image_decode_mem(&img, j, jn - 2, "adobe", 3, 0, &e) == 0,
              "unknown Adobe transform: %s", e.msg);
        expect_decode(p, 3, w, h, ref.px, "unknown Adobe transform decodes like the original");
        image_free(&ref);
        image_free(&img);
        free(j);
    }

    /* PNG cut in half, and cut inside its header. */
    const char *pp = tmp_path("ok.png");
    Err e = {{0}};
    uint8_t *noise = random_bytes((size_t)w * h * 3, 5);
    CHECK(png_write(pp, noise, w, h, 3, &e) == 0, "%s", e.msg);
    size_t pn;
    uint8_t *pbytes = slurp(pp, &pn);
    p = tmp_path("half.png");
    write_bytes(p, pbytes, pn / 2);
    expect_probe(p, w, h, 3, "truncated png header");
    expect_refused(p, "PNG", 0);
    p = tmp_path("head.png");
    write_bytes(p, pbytes, 20);
    expect_refused(p, "PNG", 1);
    /* A flipped byte in the IHDR: CRC error. */
    pbytes[18] ^= 1;
    p = tmp_path("crc.png");
    write_bytes(p, pbytes, pn);
    expect_refused(p, "PNG", 1);

    /* Not an image at all, and an empty file. */
    p = tmp_path("noise.jpg");
    write_bytes(p, noise, 1000);
    expect_refused(p, "not a JPEG, PNG, BMP or TIFF", 1);
    p = tmp_path("empty.png");
    write_bytes(p, "", 0);
    expect_refused(p, "not a JPEG, PNG, BMP or TIFF", 1);
    p = tmp_path("missing.png");
    expect_refused(p, "cannot open", 1);
    {
        Image img = {0};
        CHECK(image_decode_mem(&img, noise, 100, "buffer#3", 3, 0, &e) != 0 && strstr(e.msg, "buffer#3") &&
                  strstr(e.msg, "not a JPEG, PNG, BMP or TIFF"),
              "decode_mem names its label: %s", e.msg);
        CHECK(image_decode_mem(&img, jbytes, jn, "ok", 2, 0, &e) != 0, "2 channels refused");
        image_free(&img);
    }

    /* PNG header claiming 100000 x 100000 (valid CRC): refused before allocating 30 GB. */
    p = tmp_path("huge.png");
    write_png_header_only(p, 100000, 100000);
    expect_refused(p, "100000x100000", 1);
    expect_refused(p, "at most 32768 per side", 1);
    /* 20000 x 20000 is within the side limit but over IMAGE_MAX_PIXELS (2^28). */
    p = tmp_path("many.png");
    write_png_header_only(p, 20000, 20000);
    expect_refused(p, "20000x20000", 1);
    /* A zero width. */
    p = tmp_path("zero.png");
    write_png_header_only(p, 0, 10);
    expect_refused(p, "PNG", 1);

    /* JPEG whose SOF0 claims 65000 x 65000. */
    {
        uint8_t *j = malloc(jn);
        memcpy(j, jbytes, jn);
        size_t sof = 0;
        for (size_t i = 2; i + 9 < jn; i++)
            if (j[i] == 0xFF && j[i + 1] == 0xC0) {
                sof = i;
                break;
            }
        CHECK(sof > 0, "SOF0 found");
        if (sof) {
            j[sof + 5] = 65000 >> 8;
            j[sof + 6] = 65000 & 0xFF;
            j[sof + 7] = 65000 >> 8;
            j[sof + 8] = 65000 & 0xFF;
            p = tmp_path("huge.jpg");
            write_bytes(p, j, jn);
            expect_refused(p, "65000x65000", 1);
            j[sof + 5] = 20000 >> 8;
            j[sof + 6] = 20000 & 0xFF;
            j[sof + 7] = 20000 >> 8;
            j[sof + 8] = 20000 & 0xFF;
            p = tmp_path("many.jpg");
            write_bytes(p, j, jn);
            expect_refused(p, "20000x20000", 1);
        }
        free(j);
    }
    free(rgb);
    free(jbytes);
    free(noise);
    free(pbytes);
}

/* ---- BMP and TIFF ---- */

static size_t write_bmp(const char *path, const uint8_t *px, int w, int h, int bpp, int top_down) {
    size_t n;
    uint8_t *b = bmp_encode(px, w, h, bpp, top_down, &n);
    write_bytes(path, b, n);
    free(b);
    return n;
}

static void gray_of(uint8_t *gray, const uint8_t *rgb, size_t n) {
    for (size_t i = 0; i < n; i++) gray[i] = pil_gray(rgb + 3 * i);
}

static void test_bmp_decode(void) {
    const int W = 13, H = 7; /* odd width: padded rows */
    uint8_t *rgb = random_bytes((size_t)W * H * 3, 11), *gray = random_bytes((size_t)W * H, 12);
    uint8_t *g3 = malloc((size_t)W * H * 3), *gg = malloc((size_t)W * H);
    for (int i = 0; i < W * H; i++) g3[3 * i] = g3[3 * i + 1] = g3[3 * i + 2] = gray[i];
    gray_of(gg, rgb, (size_t)W * H);
    char p[600];
    for (int bpp = 24; bpp <= 32; bpp += 8)
        for (int td = 0; td < 2; td++) {
            char what[64];
            snprintf(p, sizeof p, "%s/c%d_%d.bmp", TEST_TMP, bpp, td);
            write_bmp(p, rgb, W, H, bpp, td);
            snprintf(what, sizeof what, "%d-bit BMP%s", bpp, td ? " top-down" : "");
            expect_probe(p, W, H, 3, what);
            expect_decode(p, 3, W, H, rgb, what);
            expect_decode(p, 1, W, H, gg, what); /* PIL's gray rule, not stb's */
        }
    snprintf(p, sizeof p, "%s/gray8.bmp", TEST_TMP);
    size_t size = write_bmp(p, gray, W, H, 8, 0);
    expect_probe(p, W, H, 3, "8-bit palette BMP");
    expect_decode(p, 3, W, H, g3, "8-bit gray-palette BMP as RGB");
    expect_decode(p, 1, W, H, gray, "8-bit gray-palette BMP as gray");
    /* Cut short: refused (stb_image alone would give black rows), by the probe too. */
    uint8_t *bytes = slurp(p, &size);
    snprintf(p, sizeof p, "%s/cut.bmp", TEST_TMP);
    write_bytes(p, bytes, size - 10);
    expect_refused(p, "truncated BMP", 1);
    write_bytes(p, bytes, 20);
    expect_refused(p, "truncated BMP", 1);
    /* RLE and absurd sizes are refused before decoding. */
    put_le(bytes + 30, 1, 4);
    write_bytes(p, bytes, size);
    expect_refused(p, "RLE", 1);
    put_le(bytes + 30, 0, 4);
    put_le(bytes + 18, 100000, 4);
    write_bytes(p, bytes, size);
    expect_refused(p, "100000x7", 1);
    free(bytes);
    free(rgb), free(gray), free(g3), free(gg);
}

static void test_tiff_decode(void) {
    const int W = 11, H = 9;
    uint8_t *rgb = random_bytes((size_t)W * H * 3, 21), *gray = random_bytes((size_t)W * H, 22);
    uint8_t *g3 = malloc((size_t)W * H * 3), *gg = malloc((size_t)W * H);
    for (int i = 0; i < W * H; i++) g3[3 * i] = g3[3 * i + 1] = g3[3 * i + 2] = gray[i];
    gray_of(gg, rgb, (size_t)W * H);
    char p[600];
    snprintf(p, sizeof p, "%s/rgb.tif", TEST_TMP);
    write_tiff(p, rgb, W, H, 3, COMPRESSION_NONE);
    expect_probe(p, W, H, 3, "RGB TIFF");
    expect_decode(p, 3, W, H, rgb, "RGB TIFF");
    expect_decode(p, 1, W, H, gg, "RGB TIFF as gray");
    snprintf(p, sizeof p, "%s/rgb_lzw.tiff", TEST_TMP);
    write_tiff(p, rgb, W, H, 3, COMPRESSION_LZW);
    expect_decode(p, 3, W, H, rgb, "LZW RGB TIFF");
    snprintf(p, sizeof p, "%s/gray.tif", TEST_TMP);
    write_tiff(p, gray, W, H, 1, COMPRESSION_ADOBE_DEFLATE);
    expect_probe(p, W, H, 1, "gray TIFF");
    expect_decode(p, 1, W, H, gray, "gray TIFF");
    expect_decode(p, 3, W, H, g3, "gray TIFF as RGB");
    /* In memory too, with the label in messages. */
    size_t n;
    uint8_t *bytes = slurp(p, &n);
    Image img = {0};
    Err e = {{0}};
    CHECK(image_decode_mem(&img, bytes, n, "mem.tif", 1, 0, &e) == 0 && img.w == W && img.h == H &&
              memcmp(img.px, gray, (size_t)W * H) == 0,
          "decode_mem: %s", e.msg);
    /* Corrupt: cut short (libtiff writes the directory last, so the open fails), and garbage
     * after a valid signature. Errors come back as one line; libtiff prints nothing itself. */
    snprintf(p, sizeof p, "%s/cut.tif", TEST_TMP);
    write_bytes(p, bytes, n / 2);
    expect_refused(p, "TIFF", 1);
    uint8_t junk[64];
    memcpy(junk, "II*\0\x08\0\0\0", 8);
    for (int i = 8; i < 64; i++) junk[i] = (uint8_t)(i * 37);
    write_bytes(p, junk, sizeof junk);
    expect_refused(p, "TIFF", 1);
    CHECK(image_decode_mem(&img, junk, sizeof junk, "junk#1", 3, 0, &e) != 0 && strstr(e.msg, "junk#1"),
          "junk: %s", e.msg);
    image_free(&img);
    free(bytes);
    free(rgb), free(gray), free(g3), free(gg);
}

/* ---- folders ---- */

static void make_png(const char *path, int w, int h, int c, uint64_t seed) {
    uint8_t *px = random_bytes((size_t)w * h * c, seed);
    Err e;
    if (png_write(path, px, w, h, c, &e) != 0) {
        printf("FATAL %s\n", e.msg);
        exit(2);
    }
    free(px);
}

static void make_jpg(const char *path, int w, int h, int c) {
    uint8_t *px = smooth_image(w, h, c);
    write_jpeg(path, px, w, h, c, 90, NULL, NULL);
    free(px);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void test_folder_splits(void) {
    char root[512], d[600], f[700];
    snprintf(root, sizeof root, "%s/folder", TEST_TMP);
    const char *dirs[] = {"train/cat/b/deep", "train/cat/b-c", "train/dog", "train/.hidden_class",
                          "test/cat", "test/dog"};
    for (size_t i = 0; i < ARRAY_LEN(dirs); i++) {
        snprintf(d, sizeof d, "%s/%s", root, dirs[i]);
        mkdirs(d);
    }
#define P(rel) (snprintf(f, sizeof f, "%s/%s", root, rel), f)
    make_png(P("train/cat/z.png"), 8, 6, 1, 1);
    make_jpg(P("train/cat/a.jpg"), 8, 6, 1);
    make_png(P("train/cat/b/x.PNG"), 8, 6, 1, 2);
    make_png(P("train/cat/b-c/y.png"), 8, 6, 1, 3);
    make_png(P("train/cat/b/deep/w.png"), 8, 6, 1, 3);
    make_jpg(P("train/dog/d1.jpeg"), 10, 6, 3);
    make_png(P("train/dog/d0.png"), 8, 6, 3, 4);
    make_png(P("train/dog/.hidden.png"), 8, 6, 3, 5);
    make_png(P("train/.hidden_class/h.png"), 8, 6, 3, 5);
    make_png(P("train/loose.png"), 8, 6, 3, 5); /* beside class folders: the unlabeled split */
    write_bytes(P("train/dog/README.txt"), "hello", 5);
    write_bytes(P("train/dog/bad.jpg"), "this is not a jpeg at all", 25);
    write_png_header_only(P("train/dog/huge.png"), 100000, 100000);
    /* Links are followed (a link to an image counts, a broken one is skipped); a FIFO is not
     * opened (that would block). */
    CHECK(symlink("d0.png", P("train/dog/link.png")) == 0, "symlink");
    CHECK(symlink("nowhere.png", P("train/dog/broken.png")) == 0, "symlink");
    CHECK(mkfifo(P("train/dog/pipe.png"), 0600) == 0, "mkfifo");
    make_png(P("test/cat/t1.png"), 8, 6, 1, 6);
    make_jpg(P("test/dog/t2.JPG"), 8, 6, 3);

    Dataset ds;
    memset(&ds, 0, sizeof ds);
    Err e = {{0}};
    FILE *warn = tmpfile();
    int rc = folder_open(&ds, root, warn, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc == 0) {
        CHECK(strcmp(ds.kind, "folder") == 0 && strcmp(ds.root, root) == 0, "kind/root");
        CHECK(ds.n_classes == 2 && strcmp(ds.class_names[0], "cat") == 0 &&
                  strcmp(ds.class_names[1], "dog") == 0,
              "classes cat, dog (n %d)", ds.n_classes);
        const char *want_train[] = {"train/cat/a.jpg", "train/cat/z.png", "train/cat/b/x.PNG",
                                    "train/cat/b-c/y.png", "train/cat/b/deep/w.png", "train/dog/d0.png",
                                    "train/dog/d1.jpeg", "train/dog/link.png"};
        const int want_label[] = {0, 0, 0, 0, 0, 1, 1, 1};
        const DatasetSplit *tr = &ds.split[SPLIT_TRAIN], *te = &ds.split[SPLIT_TEST];
        CHECK(tr->n == 8, "train n %d", tr->n);
        /* ImageFolder's order: sorted(os.walk()), i.e. by folder path as a string, then by file
         * name: "cat" < "cat/b" < "cat/b-c" < "cat/b/deep" ('-' is 0x2d, '/' 0x2f). */
        for (int i = 0; i < tr->n && i < 8; i++) {
            char want[700];
            snprintf(want, sizeof want, "%s/%s", root, want_train[i]);
            CHECK(strcmp(tr->paths[i], want) == 0, "train[%d] = %s, want %s", i, tr->paths[i], want);
            CHECK(tr->labels[i] == want_label[i], "train label %d", i);
        }
        CHECK(te->n == 2 && te->labels[0] == 0 && te->labels[1] == 1, "test n %d", te->n);
        if (te->n == 2) CHECK(ends_with(te->paths[1], "test/dog/t2.JPG"), "test[1] %s", te->paths[1]);
        CHECK(ds.channels == 3, "channels %d (some colour images)", ds.channels);
        CHECK(ds.height == 6 && ds.width == 8 && ds.sizes_vary == 1, "size %dx%d vary %d", ds.width,
              ds.height, ds.sizes_vary);
        CHECK(ds.n_skipped == 3, "skipped %d", ds.n_skipped);
        if (ds.n_skipped == 3) {
            CHECK(ends_with(ds.skipped[0], "train/dog/bad.jpg: not a JPEG, PNG, BMP or TIFF file"), "%s", ds.skipped[0]);
            CHECK(strstr(ds.skipped[1], "train/dog/broken.png: cannot open"), "%s", ds.skipped[1]);
            CHECK(strstr(ds.skipped[2], "train/dog/huge.png: ") && strstr(ds.skipped[2], "100000x100000"),
                  "%s", ds.skipped[2]);
        }
        /* Warnings: one line each. */
        char text[4096] = {0};
        rewind(warn);
        size_t got = fread(text, 1, sizeof text - 1, warn);
        text[got] = 0;
        char want[800];
        snprintf(want, sizeof want, "byol: warning: %s/train/dog/bad.jpg: skipped: not a JPEG, PNG, BMP or TIFF file\n", root);
        CHECK(strstr(text, want) != NULL, "warning text:\n%s", text);
        int lines = 0;
        for (char *q = text; (q = strstr(q, "byol: warning: ")) != NULL; q++) lines++;
        CHECK(lines == 3, "%d warning lines", lines);
        CHECK(ds.split[SPLIT_UNLABELED].n == 1 && ds.split[SPLIT_UNLABELED].labels[0] == -1 &&
                  ends_with(ds.split[SPLIT_UNLABELED].paths[0], "train/loose.png"),
              "loose image beside class folders: unlabeled (n %d)", ds.split[SPLIT_UNLABELED].n);
        /* Images come back through dataset_image with the dataset's channels. */
        Image img = {0};
        CHECK(dataset_image(&ds, SPLIT_TRAIN, 6, 0, &img, &e) == 0 && img.w == 10 && img.c == 3,
              "dataset_image: %s", e.msg);
        CHECK(dataset_image(&ds, SPLIT_TEST, 0, 0, &img, &e) == 0 && img.w == 8 && img.c == 3,
              "dataset_image gray png as rgb: %s", e.msg);
        image_free(&img);
    }
    fclose(warn);
    dataset_close(&ds);

    /* Through dataset_open with kind "folder", silent. */
    memset(&ds, 0, sizeof ds);
    rc = dataset_open(&ds, root, "folder", NULL, &e);
    CHECK(rc == 0 && ds.split[SPLIT_TRAIN].n == 8 && ds.n_skipped == 3, "dataset_open: %s", e.msg);
    dataset_close(&ds);

    /* A test class that train lacks. */
    snprintf(d, sizeof d, "%s/test/cow", root);
    mkdirs(d);
    make_png(P("test/cow/c.png"), 8, 6, 1, 7);
    memset(&ds, 0, sizeof ds);
    rc = folder_open(&ds, root, NULL, &e);
    CHECK(rc != 0 && strstr(e.msg, "test/cow") && strstr(e.msg, "class"), "unknown test class: %s", e.msg);
    if (rc == 0) dataset_close(&ds);
#undef P
}

static void test_folder_layouts(void) {
    char root[512], f[700];
    Dataset ds;
    Err e = {{0}};
    int rc;
    /* Images directly in ROOT: unlabeled, gray. Trailing slash accepted. */
    snprintf(root, sizeof root, "%s/unlabeled", TEST_TMP);
    mkdirs(root);
    snprintf(f, sizeof f, "%s/2.png", root);
    make_png(f, 5, 4, 1, 1);
    snprintf(f, sizeof f, "%s/1.png", root);
    make_png(f, 5, 4, 1, 2);
    snprintf(f, sizeof f, "%s/notes.txt", root);
    write_bytes(f, "x", 1);
    char slash[600];
    snprintf(slash, sizeof slash, "%s/", root);
    memset(&ds, 0, sizeof ds);
    rc = folder_open(&ds, slash, NULL, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc == 0) {
        const DatasetSplit *tr = &ds.split[SPLIT_TRAIN];
        CHECK(ds.n_classes == 0 && tr->n == 2 && ds.split[SPLIT_TEST].n == 0, "unlabeled n %d", tr->n);
        CHECK(tr->n == 2 && tr->labels[0] == -1 && tr->labels[1] == -1, "labels -1");
        CHECK(tr->n == 2 && ends_with(tr->paths[0], "unlabeled/1.png"), "sorted: %s", tr->paths[0]);
        CHECK(ds.channels == 1 && ds.width == 5 && ds.height == 4 && !ds.sizes_vary, "gray 5x4");
        CHECK(ds.n_skipped == 0, "nothing skipped");
    }
    dataset_close(&ds);

    /* ROOT/<class> without train/: ROOT is the train split; no test. */
    snprintf(root, sizeof root, "%s/classes/b", TEST_TMP);
    mkdirs(root);
    snprintf(f, sizeof f, "%s/classes/a", TEST_TMP);
    mkdirs(f);
    snprintf(f, sizeof f, "%s/classes/b/i.png", TEST_TMP);
    make_png(f, 5, 4, 3, 1);
    snprintf(root, sizeof root, "%s/classes", TEST_TMP);
    memset(&ds, 0, sizeof ds);
    /* An empty class folder (or one of only non-images) is an error naming it, as ImageFolder's. */
    snprintf(f, sizeof f, "%s/classes/a/notes.txt", TEST_TMP);
    write_bytes(f, "x", 1);
    rc = folder_open(&ds, root, NULL, &e);
    char want_dir[600];
    snprintf(want_dir, sizeof want_dir, "%s/a: empty class folder", root);
    CHECK(rc != 0 && strstr(e.msg, want_dir) && strstr(e.msg, ".bmp") && !strchr(e.msg, '\n'),
          "empty class: %s", e.msg);
    if (rc == 0) dataset_close(&ds);
    snprintf(f, sizeof f, "%s/classes/a/deep", TEST_TMP);
    mkdirs(f);
    snprintf(f, sizeof f, "%s/classes/a/deep/j.png", TEST_TMP);
    make_png(f, 5, 4, 3, 2);
    memset(&ds, 0, sizeof ds);
    rc = folder_open(&ds, root, NULL, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc == 0) {
        CHECK(ds.n_classes == 2 && ds.split[SPLIT_TRAIN].n == 2 && ds.split[SPLIT_TRAIN].labels[0] == 0 &&
                  ds.split[SPLIT_TRAIN].labels[1] == 1 && ds.split[SPLIT_TEST].n == 0 &&
                  ds.split[SPLIT_UNLABELED].n == 0,
              "a (nested image) = 0, b = 1");
    }
    dataset_close(&ds);

    /* Empty folder, folder of only non-images / bad images, missing path, a file as root. */
    snprintf(root, sizeof root, "%s/empty", TEST_TMP);
    mkdirs(root);
    memset(&ds, 0, sizeof ds);
    rc = folder_open(&ds, root, NULL, &e);
    CHECK(rc != 0 && strstr(e.msg, "no images") && strstr(e.msg, root) && !strchr(e.msg, '\n'),
          "empty: %s", e.msg);
    snprintf(f, sizeof f, "%s/bad.png", root);
    write_bytes(f, "nope", 4);
    rc = folder_open(&ds, root, NULL, &e);
    CHECK(rc != 0 && strstr(e.msg, "no images") && strstr(e.msg, "1 files skipped"), "all bad: %s", e.msg);
    snprintf(root, sizeof root, "%s/no_such_folder", TEST_TMP);
    rc = folder_open(&ds, root, NULL, &e);
    CHECK(rc != 0 && strstr(e.msg, root) && strstr(e.msg, "cannot open folder") && strstr(e.msg, "--data"),
          "missing: %s", e.msg);
    rc = folder_open(&ds, f, NULL, &e); /* an image file as root: that image, which is broken */
    CHECK(rc != 0 && strstr(e.msg, "bad.png") && strstr(e.msg, "an image file given as --data") &&
              !strstr(e.msg, "<class>"),
          "a broken image file as root: %s", e.msg);
    snprintf(f, sizeof f, "%s/notes.txt", TEST_TMP);
    write_bytes(f, "nope", 4);
    rc = folder_open(&ds, f, NULL, &e);
    CHECK(rc != 0 && strstr(e.msg, "cannot open folder"), "another file as root: %s", e.msg);
    Dataset zero;
    memset(&zero, 0, sizeof zero);
    CHECK(memcmp(&ds, &zero, sizeof ds) == 0, "failed opens leave ds untouched");
}

/* Every extension ImageFolder reads is either read (.bmp, .tif, .tiff beside .jpg/.png) or
 * skipped by name (.webp, .ppm, .pgm), never silently left out. */
static void test_folder_formats(void) {
    char root[512], f[700];
    snprintf(root, sizeof root, "%s/formats", TEST_TMP);
#define P(rel) (snprintf(f, sizeof f, "%s/%s", root, rel), f)
    mkdirs(P("a"));
    mkdirs(P("b"));
    uint8_t *rgb = random_bytes(6 * 5 * 3, 31);
    write_bmp(P("a/1.bmp"), rgb, 6, 5, 24, 0);
    write_tiff(P("a/2.TIF"), rgb, 6, 5, 3, COMPRESSION_LZW);
    write_tiff(P("b/3.tiff"), rgb, 6, 5, 3, COMPRESSION_NONE);
    make_png(P("b/4.png"), 6, 5, 3, 1);
    write_bytes(P("b/5.webp"), "RIFF....WEBP", 12);
    write_bytes(P("b/6.ppm"), "P6 6 5 255\n", 11);
    Dataset ds;
    memset(&ds, 0, sizeof ds);
    Err e = {{0}};
    FILE *warn = tmpfile();
    int rc = folder_open(&ds, root, warn, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc == 0) {
        const DatasetSplit *tr = &ds.split[SPLIT_TRAIN];
        CHECK(tr->n == 4, "bmp, tif and tiff read: n %d", tr->n);
        CHECK(tr->n == 4 && ends_with(tr->paths[0], "a/1.bmp") && ends_with(tr->paths[1], "a/2.TIF") &&
                  ends_with(tr->paths[2], "b/3.tiff") && tr->labels[2] == 1,
              "order and labels");
        Image img = {0};
        for (int i = 0; i < tr->n && i < 3; i++) {
            rc = dataset_image(&ds, SPLIT_TRAIN, i, 0, &img, &e);
            CHECK(rc == 0 && img.w == 6 && img.h == 5 && img.c == 3 && memcmp(img.px, rgb, 6 * 5 * 3) == 0,
                  "image %d decodes exactly: %s", i, rc ? e.msg : "");
        }
        image_free(&img);
        CHECK(ds.n_skipped == 2, "webp and ppm skipped: %d", ds.n_skipped);
        if (ds.n_skipped == 2) {
            CHECK(strstr(ds.skipped[0], "b/5.webp: .webp images are not read by byol.c"), "%s", ds.skipped[0]);
            CHECK(strstr(ds.skipped[1], "b/6.ppm: .ppm images are not read"), "%s", ds.skipped[1]);
        }
        char text[4096] = {0};
        rewind(warn);
        text[fread(text, 1, sizeof text - 1, warn)] = 0;
        CHECK(strstr(text, "byol: warning: ") && strstr(text, "5.webp: skipped: .webp images"), "warnings: %s", text);
    }
    fclose(warn);
    dataset_close(&ds);
    free(rgb);
#undef P
}

/* Unlabeled images: loose in ROOT or ROOT/train beside class folders, and under ROOT/unlabeled/,
 * form the unlabeled split (train's --unlabeled 1); loose in ROOT/test they are skipped. */
static void test_folder_unlabeled_split(void) {
    char root[512], f[700];
    snprintf(root, sizeof root, "%s/with_unlabeled", TEST_TMP);
#define P(rel) (snprintf(f, sizeof f, "%s/%s", root, rel), f)
    mkdirs(P("train/cat"));
    mkdirs(P("test/cat"));
    mkdirs(P("unlabeled/batch2"));
    make_png(P("train/cat/c.png"), 6, 5, 3, 1);
    make_png(P("test/cat/t.png"), 6, 5, 3, 2);
    make_png(P("test/stray.png"), 6, 5, 3, 3);
    make_png(P("loose_root.png"), 6, 5, 3, 4);
    make_png(P("train/loose_train.png"), 6, 5, 3, 5);
    make_png(P("unlabeled/u1.png"), 6, 5, 3, 6);
    make_png(P("unlabeled/batch2/u2.png"), 6, 5, 3, 7);
    Dataset ds;
    memset(&ds, 0, sizeof ds);
    Err e = {{0}};
    int rc = dataset_open(&ds, root, NULL, NULL, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc == 0) {
        const DatasetSplit *u = &ds.split[SPLIT_UNLABELED];
        CHECK(ds.split[SPLIT_TRAIN].n == 1 && ds.split[SPLIT_TEST].n == 1, "train %d test %d",
              ds.split[SPLIT_TRAIN].n, ds.split[SPLIT_TEST].n);
        const char *want[] = {"train/loose_train.png", "loose_root.png", "unlabeled/u1.png", "unlabeled/batch2/u2.png"};
        CHECK(u->n == 4, "unlabeled n %d", u->n);
        for (int i = 0; i < u->n && i < 4; i++) {
            CHECK(ends_with(u->paths[i], want[i]), "unlabeled[%d] = %s, want %s", i, u->paths[i], want[i]);
            CHECK(u->labels[i] == -1, "label -1");
        }
        CHECK(ds.n_skipped == 1 && strstr(ds.skipped[0], "test/stray.png: not in a class folder"), "skipped %d: %s",
              ds.n_skipped, ds.n_skipped ? ds.skipped[0] : "");
        Image img = {0};
        CHECK(dataset_image(&ds, SPLIT_UNLABELED, 3, 0, &img, &e) == 0 && img.w == 6, "decode: %s", e.msg);
        image_free(&img);
    }
    dataset_close(&ds);

    /* ROOT as the train split: loose images beside its class folders are unlabeled too. */
    snprintf(root, sizeof root, "%s/flat_unlabeled", TEST_TMP);
    mkdirs(P("dog"));
    make_png(P("dog/d.png"), 6, 5, 3, 1);
    make_png(P("extra.png"), 6, 5, 3, 2);
    memset(&ds, 0, sizeof ds);
    rc = dataset_open(&ds, root, NULL, NULL, &e);
    CHECK(rc == 0 && ds.split[SPLIT_TRAIN].n == 1 && ds.split[SPLIT_UNLABELED].n == 1 &&
              ends_with(ds.split[SPLIT_UNLABELED].paths[0], "flat_unlabeled/extra.png"),
          "flat: %s", rc ? e.msg : "");
    dataset_close(&ds);
#undef P
}

/* Mixed sizes: the typical (median) size is the dataset's, not the first or the largest one, and
 * both are logged in one line: one photo among small images does not make every view 224 px. */
static void test_folder_typical_size(void) {
    char root[512], f[700];
    snprintf(root, sizeof root, "%s/mixed_sizes", TEST_TMP);
#define P(rel) (snprintf(f, sizeof f, "%s/%s", root, rel), f)
    mkdirs(P("a"));
    make_jpg(P("a/0000_photo.jpg"), 400, 300, 3); /* first in order */
    for (int i = 1; i < 10; i++) {
        char name[64];
        snprintf(name, sizeof name, "a/%04d.png", i);
        make_png(P(name), 32, 32, 3, (uint64_t)i);
    }
    make_png(P("a/0010_wide.png"), 48, 32, 3, 99);
    Dataset ds;
    memset(&ds, 0, sizeof ds);
    Err e = {{0}};
    FILE *warn = tmpfile();
    int rc = dataset_open(&ds, root, NULL, warn, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc == 0) {
        CHECK(ds.width == 32 && ds.height == 32 && ds.sizes_vary, "typical %dx%d vary %d", ds.width, ds.height,
              ds.sizes_vary);
        CHECK(ds.max_width == 400 && ds.max_height == 300, "largest %dx%d", ds.max_width, ds.max_height);
        CHECK(dataset_default_image_size(&ds) == 32, "default views %d px", dataset_default_image_size(&ds));
        char text[4096] = {0};
        rewind(warn);
        text[fread(text, 1, sizeof text - 1, warn)] = 0;
        CHECK(strstr(text, "image sizes vary: typical 32x32") && strstr(text, "largest 400x300") &&
                  strstr(text, "views default to 32 px"),
              "log: %s", text);
    }
    fclose(warn);
    dataset_close(&ds);
    /* Photos of various sizes still default to 224 px views; one size: its shorter side. */
    snprintf(root, sizeof root, "%s/photos", TEST_TMP);
    mkdirs(P("p"));
    make_jpg(P("p/1.jpg"), 500, 375, 3);
    make_jpg(P("p/2.jpg"), 375, 500, 3);
    make_jpg(P("p/3.jpg"), 640, 480, 3);
    memset(&ds, 0, sizeof ds);
    rc = dataset_open(&ds, root, NULL, NULL, &e);
    CHECK(rc == 0 && ds.width * ds.height == 500 * 375 && ds.max_width == 640 && ds.max_height == 500 &&
              dataset_default_image_size(&ds) == 224,
          "photos: %dx%d, max %dx%d, default %d %s", ds.width, ds.height, ds.max_width, ds.max_height,
          dataset_default_image_size(&ds), rc ? e.msg : "");
    dataset_close(&ds);
    snprintf(root, sizeof root, "%s/one_size", TEST_TMP);
    mkdirs(P("p"));
    make_png(P("p/1.png"), 40, 30, 3, 1);
    memset(&ds, 0, sizeof ds);
    rc = dataset_open(&ds, root, NULL, NULL, &e);
    CHECK(rc == 0 && !ds.sizes_vary && ds.max_width == 40 && dataset_default_image_size(&ds) == 30, "one size");
    dataset_close(&ds);
#undef P
}

/* A real folder: 100 images per class of the CIFAR-10 JPEG archive's test split (enough files
 * for the parallel header probe), plus one corrupt file; all decoded, one compared with PIL. */
static void test_cifar10_jpeg_folder(void) {
    if (access(CIFAR_JPEG_TGZ, R_OK) != 0) {
        CHECK(0, "%s missing: the CIFAR-10 JPEG archive is needed for this test (CI has it)", CIFAR_JPEG_TGZ);
        return;
    }
    char cmd[1024], root[600], bad[700];
    snprintf(cmd, sizeof cmd, "tar xzf %s -C %s --wildcards 'cifar10-jpeg/test/*/00??.jpg'", CIFAR_JPEG_TGZ,
             TEST_TMP);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    snprintf(root, sizeof root, "%s/cifar10-jpeg/test", TEST_TMP);
    snprintf(bad, sizeof bad, "%s/deer/0050x.jpg", root);
    write_bytes(bad, "\xff\xd8\xff\xe0 truncated", 15);
    Dataset ds;
    memset(&ds, 0, sizeof ds);
    Err e = {{0}};
    double t0 = now_seconds();
    int rc = folder_open(&ds, root, NULL, &e);
    double t_open = now_seconds() - t0;
    CHECK(rc == 0, "%s", e.msg);
    if (rc != 0) return;
    const char *names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                             "dog", "frog", "horse", "ship", "truck"};
    CHECK(ds.n_classes == 10, "classes %d", ds.n_classes);
    for (int i = 0; i < ds.n_classes && i < 10; i++)
        CHECK(strcmp(ds.class_names[i], names[i]) == 0, "class %d = %s", i, ds.class_names[i]);
    const DatasetSplit *tr = &ds.split[SPLIT_TRAIN];
    CHECK(tr->n == 1000, "n %d", tr->n);
    CHECK(ds.n_skipped == 1 && strncmp(ds.skipped[0], bad, strlen(bad)) == 0, "skipped %d: %s", ds.n_skipped,
          ds.n_skipped ? ds.skipped[0] : "");
    CHECK(ds.width == 32 && ds.height == 32 && !ds.sizes_vary && ds.channels == 3, "32x32x3");
    Image img = {0};
    int ok = 0, order = 0;
    t0 = now_seconds();
    for (int i = 0; i < tr->n; i++) {
        char want[32];
        snprintf(want, sizeof want, "/%s/%04d.jpg", names[i / 100], i % 100);
        order += tr->labels[i] == i / 100 && ends_with(tr->paths[i], want);
        if (dataset_image(&ds, SPLIT_TRAIN, i, 0, &img, &e) == 0 && img.w == 32 && img.h == 32 && img.c == 3)
            ok++;
        else
            CHECK(0, "image %d: %s", i, e.msg);
    }
    double t_dec = now_seconds() - t0;
    CHECK(order == 1000, "%d of 1000 paths and labels in order", order);
    CHECK(ok == 1000, "decoded %d of 1000", ok);
    printf("     (1000 files: open %.1f ms, decode %.1f us/image)\n", 1e3 * t_open, 1e6 * t_dec / 1000);
    /* Exact agreement with PIL 9.4 (libjpeg-turbo, default ISLOW DCT and fancy upsampling). */
    char ref[512];
    size_t n;
    CHECK(ends_with(tr->paths[0], "airplane/0000.jpg"), "%s", tr->paths[0]);
    snprintf(ref, sizeof ref, "%s/image_cifar10_airplane_0000.rgb", fixture_dir());
    uint8_t *want = slurp(ref, &n);
    CHECK(n == 32 * 32 * 3, "fixture size");
    expect_decode(tr->paths[0], 3, 32, 32, want, "cifar airplane/0000 vs PIL RGB");
    free(want);
    snprintf(ref, sizeof ref, "%s/image_cifar10_airplane_0000.gray", fixture_dir());
    want = slurp(ref, &n);
    CHECK(n == 32 * 32, "fixture size");
    expect_decode(tr->paths[0], 1, 32, 32, want, "cifar airplane/0000 vs PIL convert('L')");
    free(want);
    image_free(&img);
    dataset_close(&ds);
}

int main(void) {
    test_tmpdir("image");
    RUN(test_png_round_trip);
    RUN(test_png_color_types);
    RUN(test_jpeg_decode);
    RUN(test_jpeg_scaled);
    RUN(test_jpeg_cmyk);
    RUN(test_corrupt_files);
    RUN(test_bmp_decode);
    RUN(test_tiff_decode);
    RUN(test_folder_splits);
    RUN(test_folder_layouts);
    RUN(test_folder_formats);
    RUN(test_folder_unlabeled_split);
    RUN(test_folder_typical_size);
    RUN(test_cifar10_jpeg_folder);
    return test_finish();
}
