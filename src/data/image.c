/* JPEG (libjpeg-turbo), PNG (libpng), BMP (stb_image) and TIFF (libtiff) decoding into 8-bit HWC
 * pixels, header probing, and PNG and JPEG writers. See image.h.
 *
 * Both libraries report errors through callbacks; ours format the message into an Err and
 * longjmp back to the caller, so a corrupt file becomes one line naming it. libjpeg warnings that
 * mean lost pixels are errors too (a truncated file gives "Premature end of JPEG file" and then
 * gray pixels; corrupt entropy data gives bad Huffman codes or missing restart markers), never
 * silently gray or garbled pixels. Its other warnings describe metadata it does not need or
 * works around with every pixel intact (an unknown JFIF revision, extraneous bytes before a
 * marker, an unknown Adobe transform code, a bad ICC or thumbnail segment, an inconsistent
 * progression), so they are ignored, as PIL does: such files open there and must here.
 * libpng warnings (e.g. "known incorrect sRGB profile") are ignored: its real problems (bad CRC
 * on a critical chunk, truncated or missing image data) are errors. */
#include "image.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <tiffio.h>
#define STBI_NO_STDIO
#include <stb/stb_image.h> /* BMP; the implementation is built in stb_bmp.c */

void image_free(Image *img) {
    if (!img) return;
    xfree(img->px);
    img->px = NULL;
    img->cap = 0;
    img->w = img->h = img->c = 0;
}

void image_reserve(Image *img, int w, int h, int c) {
    if (w < 0 || h < 0 || c < 0) die("image_reserve: negative size %dx%dx%d", w, h, c);
    size_t need = (size_t)w * (size_t)h * (size_t)c;
    if (need > img->cap || !img->px) {
        xfree(img->px);
        img->px = xmalloc(need ? need : 1, "decoded image pixels");
        img->cap = need ? need : 1;
    }
    img->w = w;
    img->h = h;
    img->c = c;
}

static const uint8_t PNG_SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

ImageFormat image_format_of(const uint8_t *buf, size_t n) {
    if (n >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) return IMAGE_FORMAT_JPEG;
    if (n >= 8 && memcmp(buf, PNG_SIG, 8) == 0) return IMAGE_FORMAT_PNG;
    if (n >= 2 && buf[0] == 'B' && buf[1] == 'M') return IMAGE_FORMAT_BMP;
    /* Classic TIFF (42) and BigTIFF (43), either byte order. */
    if (n >= 4 && ((buf[0] == 'I' && buf[1] == 'I' && (buf[2] == 42 || buf[2] == 43) && buf[3] == 0) ||
                   (buf[0] == 'M' && buf[1] == 'M' && buf[2] == 0 && (buf[3] == 42 || buf[3] == 43))))
        return IMAGE_FORMAT_TIFF;
    return IMAGE_FORMAT_UNKNOWN;
}

/* The size check every decoder runs before allocating. */
static int check_dims(const char *label, long w, long h, Err *e) {
    if (w <= 0 || h <= 0 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE)
        return err_set(e, "%s: header claims %ldx%ld pixels (corrupt or hostile; at most %d per side)",
                       label, w, h, (int)IMAGE_MAX_SIDE);
    if ((size_t)w * (size_t)h > IMAGE_MAX_PIXELS)
        return err_set(e, "%s: header claims %ldx%ld pixels (corrupt or hostile; at most %zu pixels)",
                       label, w, h, (size_t)IMAGE_MAX_PIXELS);
    return 0;
}

/* PIL's RGB -> L: L = (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16, in place (n pixels). */
static void rgb_to_gray_inplace(uint8_t *px, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = px + 3 * i;
        px[i] = (uint8_t)((s[0] * 19595u + s[1] * 38470u + s[2] * 7471u + 0x8000u) >> 16);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* JPEG */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    const char *label;
    const char *what; /* what failed, for the message */
    Err *e;
} JpegErr;

static void jpeg_fail(j_common_ptr cinfo) {
    JpegErr *je = (JpegErr *)cinfo->err;
    char buf[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, buf);
    err_set(je->e, "%s: %s: %s", je->label, je->what, buf);
    longjmp(je->jb, 1);
}

/* The warnings after which pixels are missing or wrong (libjpeg fills them with gray or
 * garbage and goes on). JWRN_TOO_MUCH_DATA (more scanlines read than the image has) would be a
 * bug in our read loop, so it fails loudly too. Every other warning is ignored. */
static int jpeg_warning_loses_data(int code) {
    switch (code) {
    case JWRN_JPEG_EOF:      /* premature end of file */
    case JWRN_HIT_MARKER:    /* premature end of a data segment */
    case JWRN_HUFF_BAD_CODE: /* corrupt entropy-coded data */
    case JWRN_MUST_RESYNC:   /* a marker where a restart marker should be: data skipped */
#if JPEG_LIB_VERSION >= 70 || defined(C_ARITH_CODING_SUPPORTED) || defined(D_ARITH_CODING_SUPPORTED)
    case JWRN_ARITH_BAD_CODE: /* corrupt arithmetic-coded data */
#endif
    case JWRN_TOO_MUCH_DATA:
        return 1;
    default:
        return 0;
    }
}

static void jpeg_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return; /* trace messages */
    if (jpeg_warning_loses_data(cinfo->err->msg_code)) jpeg_fail(cinfo);
}

static void jpeg_err_init(JpegErr *je, const char *label, Err *e) {
    jpeg_std_error(&je->pub);
    je->pub.error_exit = jpeg_fail;
    je->pub.emit_message = jpeg_message;
    je->label = label;
    je->what = "corrupt or truncated JPEG";
    je->e = e;
}

/* Channels a JPEG is stored with (1 or 3; CMYK/YCCK count as colour), or -1. */
static int jpeg_stored_channels(const struct jpeg_decompress_struct *c) {
    if (c->num_components == 1) return 1;
    if (c->num_components == 3) return 3;
    if (c->num_components == 4 && (c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK))
        return 3;
    return -1;
}

/* PIL's CMYK -> RGB for Adobe-style (inverted) CMYK JPEGs, in place from 4 to 3 channels:
 * PIL reads them as "CMYK;I" (c = 255 - stored) and converts r = (255 - k) - c (255 - k) / 255
 * with its MULDIV255 rounding. */
static void cmyk_to_rgb_inplace(uint8_t *px, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = px + 4 * i;
        unsigned nk = s[3]; /* 255 - k, k = 255 - stored */
        uint8_t out[3];
        for (int j = 0; j < 3; j++) {
            unsigned c = 255u - s[j];
            unsigned t = c * nk + 128;
            unsigned m = ((t >> 8) + t) >> 8;
            out[j] = (uint8_t)(nk > m ? nk - m : 0);
        }
        memcpy(px + 3 * i, out, 3);
    }
}

static int jpeg_decode(Image *img, const uint8_t *buf, size_t n, const char *label, int channels,
                       int min_side, Err *e) {
    struct jpeg_decompress_struct cinfo;
    JpegErr je;
    jpeg_err_init(&je, label, e);
    cinfo.err = &je.pub;
    jpeg_create_decompress(&cinfo);
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_mem_src(&cinfo, buf, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    if (check_dims(label, (long)cinfo.image_width, (long)cinfo.image_height, e) != 0) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    int stored = jpeg_stored_channels(&cinfo);
    if (stored < 0) {
        err_set(e, "%s: unsupported JPEG with %d components (colour space %d)", label,
                cinfo.num_components, (int)cinfo.jpeg_color_space);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    int cmyk = cinfo.num_components == 4;
    /* Colour -> gray goes through RGB and PIL's rounding, so results match PIL exactly (libjpeg's
     * own gray output is the Y plane, which differs from PIL's rule by +-1 in places). */
    int out_c = cmyk ? 4 : (channels == 1 && stored == 1) ? 1 : 3;
    cinfo.out_color_space = cmyk ? JCS_CMYK : out_c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    cinfo.scale_num = 8;
    cinfo.scale_denom = 8;
    if (min_side > 0) {
        static const int nums[3] = {1, 2, 4};
        for (int k = 0; k < 3; k++) {
            cinfo.scale_num = (unsigned)nums[k];
            jpeg_calc_output_dimensions(&cinfo);
            if ((int)MIN(cinfo.output_width, cinfo.output_height) >= min_side) break;
            cinfo.scale_num = 8;
        }
    }
    jpeg_calc_output_dimensions(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    if ((int)cinfo.output_components != out_c) {
        err_set(e, "%s: JPEG decoder gave %d channels, expected %d", label,
                (int)cinfo.output_components, out_c);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    image_reserve(img, w, h, out_c);
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)w * (size_t)out_c;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rows[16];
        unsigned k = 0;
        for (; k < 16 && cinfo.output_scanline + k < cinfo.output_height; k++)
            rows[k] = img->px + (size_t)(cinfo.output_scanline + k) * stride;
        jpeg_read_scanlines(&cinfo, rows, k);
    }
    /* No jpeg_finish_decompress: every pixel is in; a missing EOI after them is harmless. */
    jpeg_destroy_decompress(&cinfo);
    size_t np = (size_t)w * (size_t)h;
    if (cmyk) {
        cmyk_to_rgb_inplace(img->px, np);
        img->c = 3;
    }
    if (channels == 1 && img->c == 3) {
        rgb_to_gray_inplace(img->px, np);
        img->c = 1;
    }
    return 0;
}

static int jpeg_probe(FILE *f, const char *label, int *w, int *h, int *c, Err *e) {
    struct jpeg_decompress_struct cinfo;
    JpegErr je;
    jpeg_err_init(&je, label, e);
    cinfo.err = &je.pub;
    jpeg_create_decompress(&cinfo);
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    int rc = check_dims(label, (long)cinfo.image_width, (long)cinfo.image_height, e);
    int stored = jpeg_stored_channels(&cinfo);
    if (rc == 0 && stored < 0)
        rc = err_set(e, "%s: unsupported JPEG with %d components (colour space %d)", label,
                     cinfo.num_components, (int)cinfo.jpeg_color_space);
    if (rc == 0) {
        *w = (int)cinfo.image_width;
        *h = (int)cinfo.image_height;
        *c = stored;
    }
    jpeg_destroy_decompress(&cinfo);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* PNG */

typedef struct {
    jmp_buf jb;
    const char *label;
    Err *e;
    /* memory source */
    const uint8_t *buf;
    size_t n, pos;
} PngCtx;

static void png_fail(png_structp png, png_const_charp msg) {
    PngCtx *ctx = png_get_error_ptr(png);
    err_set(ctx->e, "%s: corrupt or truncated PNG: %s", ctx->label, msg);
    png_longjmp(png, 1);
}

static void png_warn(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void png_read_mem(png_structp png, png_bytep out, png_size_t len) {
    PngCtx *ctx = png_get_io_ptr(png);
    if (len > ctx->n - ctx->pos) png_error(png, "unexpected end of file");
    memcpy(out, ctx->buf + ctx->pos, len);
    ctx->pos += len;
}

static int png_stored_channels(int color_type) {
    return (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) ? 1 : 3;
}

static int png_decode(Image *img, const uint8_t *buf, size_t n, const char *label, int channels,
                      Err *e) {
    PngCtx ctx = {.label = label, .e = e, .buf = buf, .n = n, .pos = 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_fail, png_warn);
    if (!png) die("out of memory creating a PNG decoder");
    png_infop info = png_create_info_struct(png);
    if (!info) die("out of memory creating a PNG decoder");
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    png_set_read_fn(png, &ctx, png_read_mem);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (check_dims(label, (long)w, (long)h, e) != 0) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    int ct = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    int stored = png_stored_channels(ct);
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    /* 16 bits to 8: colour (RGB, RGBA) and gray+alpha keep the high byte, as PIL does (its
     * "RGB;16B", "RGBA;16B" and "LA;16B" unpackers), so the pixels match PIL exactly. Plain 16-bit
     * gray is scaled, round(v * 255 / 65535): PIL opens it as 32-bit mode "I" and converting that
     * to "L" or "RGB" clips at 255, which would turn nearly every pixel white; here we differ
     * from PIL on purpose. */
    if (depth == 16) {
        if (ct == PNG_COLOR_TYPE_GRAY) png_set_scale_16(png);
        else png_set_strip_16(png);
    }
    if (ct & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    /* tRNS (a transparent colour or palette alpha) is ignored: alpha is dropped anyway. */
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    if (channels == 3 && stored == 1) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int out_c = png_get_channels(png, info);
    if (png_get_bit_depth(png, info) != 8 || (out_c != 1 && out_c != 3) ||
        png_get_rowbytes(png, info) != (size_t)w * (size_t)out_c) {
        err_set(e, "%s: unsupported PNG layout (colour type %d, bit depth %d)", label, ct, depth);
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    image_reserve(img, (int)w, (int)h, out_c);
    rows = malloc((size_t)h * sizeof *rows);
    if (!rows) die("out of memory decoding %s", label);
    for (png_uint_32 y = 0; y < h; y++) rows[y] = img->px + (size_t)y * w * (size_t)out_c;
    png_read_image(png, rows);
    free(rows);
    rows = NULL;
    png_destroy_read_struct(&png, &info, NULL);
    if (channels == 1 && out_c == 3) {
        rgb_to_gray_inplace(img->px, (size_t)w * h);
        img->c = 1;
    }
    return 0;
}

static int png_probe(FILE *f, const char *label, int *w, int *h, int *c, Err *e) {
    PngCtx ctx = {.label = label, .e = e};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_fail, png_warn);
    if (!png) die("out of memory creating a PNG decoder");
    png_infop info = png_create_info_struct(png);
    if (!info) die("out of memory creating a PNG decoder");
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    png_init_io(png, f);
    png_read_info(png, info);
    png_uint_32 pw = png_get_image_width(png, info), ph = png_get_image_height(png, info);
    int rc = check_dims(label, (long)pw, (long)ph, e);
    if (rc == 0) {
        *w = (int)pw;
        *h = (int)ph;
        *c = png_stored_channels(png_get_color_type(png, info));
    }
    png_destroy_read_struct(&png, &info, NULL);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* BMP (stb_image) */

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static unsigned le16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }

/* The header's size and depth, from the first n bytes of a BMP of `total` bytes, and a check
 * that the pixel rows it promises lie inside the file: stb_image reads zeros past the end, so
 * without it a truncated BMP would decode to black rows instead of failing. */
static int bmp_header(const uint8_t *buf, size_t n, size_t total, const char *label, int *w, int *h,
                      int *c, Err *e) {
    if (n < 26) return err_set(e, "%s: truncated BMP: %zu bytes, shorter than its header", label, total);
    uint32_t off = le32(buf + 10), hsz = le32(buf + 14), comp = 0;
    long pw, ph;
    unsigned bpp;
    if (hsz == 12) { /* OS/2 BITMAPCOREHEADER: 16-bit sizes */
        pw = (long)le16(buf + 18);
        ph = (long)le16(buf + 20);
        bpp = le16(buf + 24);
    } else if (hsz >= 40 && n >= 34) {
        pw = (long)(int32_t)le32(buf + 18);
        ph = (long)(int32_t)le32(buf + 22);
        bpp = le16(buf + 28);
        comp = le32(buf + 30);
    } else {
        return err_set(e, "%s: corrupt BMP: header size %u (expected 12, or 40 and more)", label, (unsigned)hsz);
    }
    if (ph < 0) ph = -ph; /* negative height: rows stored top-down */
    if (check_dims(label, pw, ph, e) != 0) return -1;
    if (comp == 1 || comp == 2)
        return err_set(e, "%s: unsupported BMP: RLE-compressed (convert it to PNG)", label);
    if (comp != 0 && comp != 3 && comp != 6)
        return err_set(e, "%s: unsupported BMP compression %u (convert it to PNG)", label, (unsigned)comp);
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
        return err_set(e, "%s: corrupt BMP: %u bits per pixel", label, bpp);
    uint64_t stride = ((uint64_t)pw * bpp + 31) / 32 * 4;
    uint64_t need = (uint64_t)off + stride * (uint64_t)ph;
    if (need > total)
        return err_set(e, "%s: truncated BMP: its %ldx%ld pixels need %llu bytes, the file has %zu", label,
                       pw, ph, (unsigned long long)need, total);
    *w = (int)pw;
    *h = (int)ph;
    *c = 3; /* palettes count as colour, as for PNG */
    return 0;
}

static int bmp_decode(Image *img, const uint8_t *buf, size_t n, const char *label, int channels, Err *e) {
    int w, h, c;
    if (bmp_header(buf, n, n, label, &w, &h, &c, e) != 0) return -1;
    if (n > (size_t)INT32_MAX) return err_set(e, "%s: BMP of %zu bytes is too large (at most 2 GiB)", label, n);
    int sw = 0, sh = 0, sc = 0;
    uint8_t *px = stbi_load_from_memory(buf, (int)n, &sw, &sh, &sc, 3);
    if (!px) return err_set(e, "%s: corrupt or unsupported BMP: %s", label, stbi_failure_reason());
    if (sw != w || sh != h) {
        stbi_image_free(px);
        return err_set(e, "%s: BMP decoder gave %dx%d pixels, the header says %dx%d", label, sw, sh, w, h);
    }
    image_reserve(img, w, h, 3);
    memcpy(img->px, px, (size_t)w * h * 3);
    stbi_image_free(px);
    /* Gray through PIL's rule (stb's own weights differ); a gray palette stays exact. */
    if (channels == 1) {
        rgb_to_gray_inplace(img->px, (size_t)w * h);
        img->c = 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* TIFF (libtiff) */

/* One open TIFF's source, either memory (buf) or a file descriptor (fd, buf == NULL), and its
 * error state. libtiff >= 4.5 takes per-file handlers (TIFFOpenOptions), so decoding in many
 * threads at once reports each file's error to its own caller. */
typedef struct {
    const char *label;
    Err *e;
    int failed;
    const uint8_t *buf;
    int fd;
    uint64_t n, pos;
} TiffCtx;

static int tiff_on_error(TIFF *tif, void *ud, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    (void)module;
    TiffCtx *t = ud;
    if (!t->failed) {
        char msg[512];
        vsnprintf(msg, sizeof msg, fmt, ap);
        err_set(t->e, "%s: corrupt or unsupported TIFF: %s", t->label, msg);
        t->failed = 1;
    }
    return 1; /* handled: libtiff's global handler would print to stderr */
}

/* Warnings (unknown tags, odd but readable fields) leave the pixels intact: ignored, as PIL does.
 * Lost data (unreadable strips, bad compression data) comes as an error. */
static int tiff_on_warning(TIFF *tif, void *ud, const char *module, const char *fmt, va_list ap) {
    (void)tif, (void)ud, (void)module, (void)fmt, (void)ap;
    return 1;
}

static tmsize_t tiff_src_read(thandle_t h, void *p, tmsize_t len) {
    TiffCtx *t = (TiffCtx *)h;
    if (len < 0) return -1;
    uint64_t left = t->pos < t->n ? t->n - t->pos : 0;
    size_t k = (uint64_t)len < left ? (size_t)len : (size_t)left;
    if (k == 0) return 0;
    if (t->buf) {
        memcpy(p, t->buf + t->pos, k);
    } else {
        ssize_t got = pread(t->fd, p, k, (off_t)t->pos);
        if (got < 0) return -1;
        k = (size_t)got;
    }
    t->pos += k;
    return (tmsize_t)k;
}

static tmsize_t tiff_src_write(thandle_t h, void *p, tmsize_t len) {
    (void)h, (void)p, (void)len;
    return -1;
}

static toff_t tiff_src_seek(thandle_t h, toff_t off, int whence) {
    TiffCtx *t = (TiffCtx *)h;
    uint64_t np = whence == SEEK_SET ? off : whence == SEEK_CUR ? t->pos + off : t->n + off;
    if (np > (uint64_t)INT64_MAX) return (toff_t)-1;
    t->pos = np;
    return np;
}

static int tiff_src_close(thandle_t h) {
    (void)h;
    return 0;
}

static toff_t tiff_src_size(thandle_t h) { return ((TiffCtx *)h)->n; }

static int tiff_src_map(thandle_t h, void **base, toff_t *size) {
    (void)h, (void)base, (void)size;
    return 0;
}

static void tiff_src_unmap(thandle_t h, void *base, toff_t size) { (void)h, (void)base, (void)size; }

/* Opens t's source and checks the first image (page) the way the decoders need: size within
 * limits, a layout TIFFRGBAImage can convert. *c: 1 for gray (min-is-black or -white), else 3. */
static TIFF *tiff_open(TiffCtx *t, int *w, int *h, int *c) {
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts) die("out of memory opening a TIFF");
    TIFFOpenOptionsSetErrorHandlerExtR(opts, tiff_on_error, t);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, tiff_on_warning, t);
    /* A hostile strip or tile size is refused before libtiff allocates it. */
    TIFFOpenOptionsSetMaxSingleMemAlloc(opts, (tmsize_t)1 << 30);
    TIFF *tif = TIFFClientOpenExt(t->label, "rm", (thandle_t)t, tiff_src_read, tiff_src_write, tiff_src_seek,
                                  tiff_src_close, tiff_src_size, tiff_src_map, tiff_src_unmap, opts);
    TIFFOpenOptionsFree(opts);
    if (!tif) {
        if (!t->failed) err_set(t->e, "%s: corrupt or unsupported TIFF", t->label);
        return NULL;
    }
    uint32_t tw = 0, th = 0;
    uint16_t photo = 0;
    char emsg[1024] = "";
    int rc = 0;
    if (t->failed) {
        rc = -1;
    } else if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &tw) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &th)) {
        rc = err_set(t->e, "%s: corrupt TIFF: no image width or length", t->label);
    } else if (check_dims(t->label, (long)tw, (long)th, t->e) != 0) {
        rc = -1;
    } else if (!TIFFRGBAImageOK(tif, emsg)) {
        rc = err_set(t->e, "%s: unsupported TIFF: %s (convert it to PNG)", t->label, emsg);
    }
    if (rc != 0) {
        TIFFClose(tif);
        return NULL;
    }
    TIFFGetFieldDefaulted(tif, TIFFTAG_PHOTOMETRIC, &photo);
    *w = (int)tw;
    *h = (int)th;
    *c = (photo == PHOTOMETRIC_MINISBLACK || photo == PHOTOMETRIC_MINISWHITE) ? 1 : 3;
    return tif;
}

/* The first page, through TIFFRGBAImage (any photometric, bit depth, compression and orientation
 * libtiff supports), to 8-bit RGB; alpha is dropped (libtiff premultiplies it first, where PIL
 * keeps the colour as stored: images with partly transparent pixels differ there). */
static int tiff_decode(Image *img, const uint8_t *buf, size_t n, const char *label, int channels, Err *e) {
    TiffCtx t = {.label = label, .e = e, .buf = buf, .fd = -1, .n = n};
    int w, h, c;
    TIFF *tif = tiff_open(&t, &w, &h, &c);
    if (!tif) return -1;
    size_t np = (size_t)w * (size_t)h;
    uint32_t *raster = xmalloc(np * sizeof *raster, "TIFF pixels");
    int ok = TIFFReadRGBAImageOriented(tif, (uint32_t)w, (uint32_t)h, raster, ORIENTATION_TOPLEFT, 1);
    TIFFClose(tif);
    if (!ok || t.failed) {
        if (!t.failed) err_set(e, "%s: corrupt or truncated TIFF: its pixels cannot be read", label);
        xfree(raster);
        return -1;
    }
    image_reserve(img, w, h, 3);
    for (size_t i = 0; i < np; i++) {
        uint32_t p = raster[i];
        img->px[3 * i] = (uint8_t)TIFFGetR(p);
        img->px[3 * i + 1] = (uint8_t)TIFFGetG(p);
        img->px[3 * i + 2] = (uint8_t)TIFFGetB(p);
    }
    xfree(raster);
    if (channels == 1) {
        rgb_to_gray_inplace(img->px, np); /* gray stored as r = g = b: exact */
        img->c = 1;
    }
    return 0;
}

static int tiff_probe(int fd, size_t size, const char *label, int *w, int *h, int *c, Err *e) {
    TiffCtx t = {.label = label, .e = e, .fd = fd, .n = size};
    TIFF *tif = tiff_open(&t, w, h, c);
    if (!tif) return -1;
    TIFFClose(tif);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

int image_probe_file(const char *path, int *w, int *h, int *c, Err *e) {
    size_t file_size;
    int fd = open_regular_file(path, &file_size, e);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return err_set(e, "%s: cannot open: %s", path, strerror(errno));
    }
    uint8_t magic[8];
    size_t got = fread(magic, 1, sizeof magic, f);
    if (got < sizeof magic && ferror(f)) {
        int saved = errno;
        fclose(f);
        return err_set(e, "%s: cannot read: %s", path, strerror(saved));
    }
    ImageFormat fmt = image_format_of(magic, got);
    int rc;
    rewind(f);
    switch (fmt) {
    case IMAGE_FORMAT_JPEG: rc = jpeg_probe(f, path, w, h, c, e); break;
    case IMAGE_FORMAT_PNG: rc = png_probe(f, path, w, h, c, e); break;
    case IMAGE_FORMAT_BMP: {
        uint8_t hdr[64];
        size_t hn = fread(hdr, 1, sizeof hdr, f);
        rc = bmp_header(hdr, hn, file_size, path, w, h, c, e);
        break;
    }
    case IMAGE_FORMAT_TIFF: rc = tiff_probe(fileno(f), file_size, path, w, h, c, e); break;
    default: rc = err_set(e, "%s: not a JPEG, PNG, BMP or TIFF file", path); break;
    }
    fclose(f);
    return rc;
}

int image_decode_mem(Image *img, const uint8_t *buf, size_t n, const char *label, int channels,
                     int min_side, Err *e) {
    if (channels != 1 && channels != 3)
        return err_set(e, "%s: cannot decode to %d channels (1 or 3)", label, channels);
    switch (image_format_of(buf, n)) {
    case IMAGE_FORMAT_JPEG: return jpeg_decode(img, buf, n, label, channels, min_side, e);
    case IMAGE_FORMAT_PNG: return png_decode(img, buf, n, label, channels, e);
    case IMAGE_FORMAT_BMP: return bmp_decode(img, buf, n, label, channels, e);
    case IMAGE_FORMAT_TIFF: return tiff_decode(img, buf, n, label, channels, e);
    default: return err_set(e, "%s: not a JPEG, PNG, BMP or TIFF file", label);
    }
}

int image_decode_file(Image *img, const char *path, int channels, int min_side, Err *e) {
    size_t n = 0;
    uint8_t *buf = read_file(path, &n, e);
    if (!buf) return -1;
    int rc = image_decode_mem(img, buf, n, path, channels, min_side, e);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* PNG writer: encode into a growing memory buffer, then one atomic write. */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    const char *path;
    Err *e;
} PngOut;

static void png_out_fail(png_structp png, png_const_charp msg) {
    PngOut *o = png_get_error_ptr(png);
    err_set(o->e, "%s: cannot encode PNG: %s", o->path, msg);
    png_longjmp(png, 1);
}

static void png_out_write(png_structp png, png_bytep data, png_size_t len) {
    PngOut *o = png_get_io_ptr(png);
    if (len > o->cap - o->n) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap - o->n < len) cap *= 2;
        uint8_t *p = realloc(o->p, cap);
        if (!p) png_error(png, "out of memory");
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->n, data, len);
    o->n += len;
}

static void png_out_flush(png_structp png) { (void)png; }

int png_write(const char *path, const uint8_t *px, int w, int h, int c, Err *e) {
    if (c != 1 && c != 3) return err_set(e, "%s: PNG writer takes 1 or 3 channels, not %d", path, c);
    if (w <= 0 || h <= 0 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE)
        return err_set(e, "%s: cannot write a %dx%d PNG", path, w, h);
    PngOut o = {.path = path, .e = e};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &o, png_out_fail, png_warn);
    if (!png) die("out of memory creating a PNG encoder");
    png_infop info = png_create_info_struct(png);
    if (!info) die("out of memory creating a PNG encoder");
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        free(o.p);
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_set_write_fn(png, &o, png_out_write, png_out_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    rows = malloc((size_t)h * sizeof *rows);
    if (!rows) png_error(png, "out of memory");
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(px + (size_t)y * w * c);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    free(rows);
    rows = NULL;
    png_destroy_write_struct(&png, &info);

    int rc = atomic_write_file(path, o.p, o.n, e);
    free(o.p);
    return rc;
}

/* ---------------------------------------------------------------- evaluation resize */

/* Pillow's bicubic filter (a = -0.5), support 2. */
static double pil_bicubic(double x) {
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

enum { PIL_PRECISION_BITS = 32 - 8 - 2 };

/* Pillow's precompute_coeffs and normalize_coeffs_8bpc (Resample.c) for outputs first ..
 * first + count - 1 of a resize of `in` samples to `out`: the support widens with the downscale
 * factor (antialiasing), weights are normalized in double, then rounded to 22-bit fixed point
 * (half away from zero). Per output: first input start[i], taps[i] weights k[i * ksize ..].
 * Returns ksize. */
static int pil_coeffs(int in, int out, int first, int count, int *start, int *taps, int32_t **kk) {
    const double scale = (double)in / out, filterscale = scale < 1 ? 1 : scale, support = 2.0 * filterscale;
    int ksize = (int)support;
    if (ksize < support) ksize++; /* ceil */
    ksize = ksize * 2 + 1;
    int32_t *k = xmalloc((size_t)count * ksize * sizeof(int32_t), "resize coefficients");
    double *pre = xmalloc((size_t)ksize * sizeof(double), "resize coefficients");
    for (int i = 0; i < count; i++) {
        const double center = (first + i + 0.5) * scale, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in) xmax = in;
        xmax -= xmin;
        if (xmax > ksize) xmax = ksize;
        double ww = 0;
        for (int x = 0; x < xmax; x++) ww += pre[x] = pil_bicubic((x + xmin - center + 0.5) * ss);
        int32_t *ki = k + (size_t)i * ksize;
        for (int x = 0; x < ksize; x++) {
            const double w = x < xmax ? (ww != 0 ? pre[x] / ww : pre[x]) : 0;
            ki[x] = (int32_t)(w < 0 ? -0.5 + w * (1 << PIL_PRECISION_BITS) : 0.5 + w * (1 << PIL_PRECISION_BITS));
        }
        start[i] = xmin, taps[i] = xmax;
    }
    xfree(pre);
    *kk = k;
    return ksize;
}

/* Pillow's clip8: the fixed-point sum back to 8 bits (floor, clamped). */
static inline uint8_t pil_clip8(int64_t v) {
    if (v <= 0) return 0;
    v >>= PIL_PRECISION_BITS;
    return (uint8_t)(v > 255 ? 255 : v);
}

/* Python's round(n / 2) for n >= 0: halves go to the even neighbour. */
static int half_round_even(int n) {
    int q = n / 2;
    return (n % 2) && (q % 2) ? q + 1 : q;
}

void image_eval_resize_size(int w, int h, int resize, int *nw, int *nh) {
    /* torchvision's _compute_resized_output_size: int(size * long / short), a correctly rounded
     * division then truncation, as here. */
    if (w <= h)
        *nw = resize, *nh = (int)((double)((int64_t)resize * h) / w);
    else
        *nh = resize, *nw = (int)((double)((int64_t)resize * w) / h);
}

int image_resize_center_crop(float *out, const Image *img, int resize, int crop, Err *e) {
    if (resize < 1 || crop < 1 || crop > resize)
        return err_set(e, "eval resize: crop %d must be between 1 and the resized short side %d (raise --eval-resize)",
                       crop, resize);
    const int w = img->w, h = img->h, C = img->c;
    if (w < 1 || h < 1 || C < 1 || C > 4) return err_set(e, "eval resize: a %dx%dx%d image", w, h, C);
    int nw, nh;
    image_eval_resize_size(w, h, resize, &nw, &nh);
    const int top = half_round_even(nh - crop), left = half_round_even(nw - crop);
    /* Pillow resizes horizontally first, into 8 bits, then vertically, skipping a pass whose size
     * does not change; only the crop's columns and the rows its vertical taps read are made. */
    const int need_h = nw != w, need_v = nh != h;
    int *sx = xmalloc(4 * (size_t)crop * sizeof(int), "resize bounds"), *tx = sx + crop, *sy = tx + crop, *ty = sy + crop;
    int32_t *kx = NULL, *ky = NULL;
    int kxs = 0, kys = 0;
    if (need_h) kxs = pil_coeffs(w, nw, left, crop, sx, tx, &kx);
    if (need_v) {
        kys = pil_coeffs(h, nh, top, crop, sy, ty, &ky);
    } else {
        for (int i = 0; i < crop; i++) sy[i] = top + i, ty[i] = 1;
    }
    const int y_first = sy[0], y_rows = sy[crop - 1] + ty[crop - 1] - y_first;
    uint8_t *tmp = xmalloc((size_t)y_rows * crop * C, "resize rows");
    for (int r = 0; r < y_rows; r++) {
        const uint8_t *src = img->px + (size_t)(y_first + r) * w * C;
        uint8_t *dst = tmp + (size_t)r * crop * C;
        for (int ox = 0; ox < crop; ox++) {
            if (!need_h) {
                memcpy(dst + (size_t)ox * C, src + (size_t)(left + ox) * C, (size_t)C);
                continue;
            }
            const int32_t *k = kx + (size_t)ox * kxs;
            const uint8_t *p = src + (size_t)sx[ox] * C;
            for (int c = 0; c < C; c++) {
                int64_t ss = 1 << (PIL_PRECISION_BITS - 1);
                for (int j = 0; j < tx[ox]; j++) ss += (int64_t)p[(size_t)j * C + c] * k[j];
                dst[(size_t)ox * C + c] = pil_clip8(ss);
            }
        }
    }
    /* ToTensor: the 8-bit result / 255, CHW. */
    for (int oy = 0; oy < crop; oy++) {
        const uint8_t *rows = tmp + (size_t)(sy[oy] - y_first) * crop * C;
        const int32_t *k = need_v ? ky + (size_t)oy * kys : NULL;
        for (int ox = 0; ox < crop; ox++)
            for (int c = 0; c < C; c++) {
                uint8_t v = rows[(size_t)ox * C + c];
                if (need_v) {
                    int64_t ss = 1 << (PIL_PRECISION_BITS - 1);
                    for (int j = 0; j < ty[oy]; j++) ss += (int64_t)rows[((size_t)j * crop + ox) * C + c] * k[j];
                    v = pil_clip8(ss);
                }
                out[((size_t)c * crop + oy) * crop + ox] = (float)v / 255.0f;
            }
    }
    xfree(tmp), xfree(sx), xfree(kx), xfree(ky);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* JPEG writer: libjpeg into memory (its buffer grows as needed), then one atomic write. */

uint8_t *jpeg_encode_mem(const uint8_t *px, int w, int h, int c, int quality, size_t *n, const char *path, Err *e) {
    if (c != 1 && c != 3) return err_set(e, "%s: JPEG writer takes 1 or 3 channels, not %d", path, c), NULL;
    if (w <= 0 || h <= 0 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE)
        return err_set(e, "%s: cannot write a %dx%d JPEG", path, w, h), NULL;
    struct jpeg_compress_struct ci;
    JpegErr je;
    jpeg_err_init(&je, path, e);
    je.what = "cannot encode JPEG";
    ci.err = &je.pub;
    unsigned char *volatile mem = NULL;
    unsigned long size = 0;
    jpeg_create_compress(&ci);
    if (setjmp(je.jb)) {
        jpeg_destroy_compress(&ci);
        free(mem);
        return NULL;
    }
    jpeg_mem_dest(&ci, (unsigned char **)&mem, &size);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = c;
    ci.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)ci.next_scanline * w * c);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    *n = size;
    return mem;
}

int jpeg_write(const char *path, const uint8_t *px, int w, int h, int c, int quality, Err *e) {
    size_t size;
    uint8_t *mem = jpeg_encode_mem(px, w, h, c, quality, &size, path, e);
    if (!mem) return -1;
    int rc = atomic_write_file(path, mem, size, e);
    free(mem);
    return rc;
}
