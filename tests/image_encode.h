/* BMP and TIFF writers for the tests and the fuzz corpus generator (the decoders' inputs). */
#ifndef BYOL_TESTS_IMAGE_ENCODE_H
#define BYOL_TESTS_IMAGE_ENCODE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <tiffio.h>

static inline void put_le(uint8_t *p, uint32_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A BMP (BITMAPINFOHEADER, uncompressed) of w x h pixels: bpp 8 takes gray pixels (c = 1) and
 * writes a gray palette; 24 and 32 take RGB (c = 3; 32 adds an opaque alpha byte). Rows
 * bottom-up, or top-down (negative height) when top_down. Returns the malloc'ed bytes (free()
 * them), their count in *n. */
static inline uint8_t *bmp_encode(const uint8_t *px, int w, int h, int bpp, int top_down, size_t *n) {
    size_t stride = ((size_t)w * bpp + 31) / 32 * 4, pal = bpp == 8 ? 256 * 4 : 0;
    size_t off = 14 + 40 + pal, size = off + stride * h;
    uint8_t *b = calloc(size, 1);
    if (!b) {
        printf("FATAL out of memory encoding a BMP\n");
        exit(2);
    }
    b[0] = 'B', b[1] = 'M';
    put_le(b + 2, (uint32_t)size, 4);
    put_le(b + 10, (uint32_t)off, 4);
    put_le(b + 14, 40, 4);
    put_le(b + 18, (uint32_t)w, 4);
    put_le(b + 22, (uint32_t)(top_down ? -h : h), 4);
    put_le(b + 26, 1, 2);
    put_le(b + 28, (uint32_t)bpp, 2);
    put_le(b + 38, 2835, 4);
    put_le(b + 42, 2835, 4);
    if (bpp == 8) {
        put_le(b + 46, 256, 4);
        for (int i = 0; i < 256; i++) b[54 + 4 * i] = b[55 + 4 * i] = b[56 + 4 * i] = (uint8_t)i;
    }
    for (int y = 0; y < h; y++) {
        uint8_t *row = b + off + stride * (size_t)(top_down ? y : h - 1 - y);
        for (int x = 0; x < w; x++) {
            if (bpp == 8) {
                row[x] = px[(size_t)y * w + x];
            } else {
                const uint8_t *s = px + ((size_t)y * w + x) * 3;
                uint8_t *d = row + (size_t)x * (bpp / 8);
                d[0] = s[2], d[1] = s[1], d[2] = s[0];
                if (bpp == 32) d[3] = 255;
            }
        }
    }
    *n = size;
    return b;
}

/* A TIFF through libtiff: c = 1 (min-is-black) or 3 (RGB), 8 bits, strips of 3 rows. */
static inline void write_tiff(const char *path, const uint8_t *px, int w, int h, int c, int compression) {
    TIFF *t = TIFFOpen(path, "w");
    if (!t) {
        printf("FATAL cannot write %s\n", path);
        exit(2);
    }
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)c);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)8);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, c == 1 ? PHOTOMETRIC_MINISBLACK : PHOTOMETRIC_RGB);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_COMPRESSION, (uint16_t)compression);
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, (uint32_t)3);
    for (int y = 0; y < h; y++)
        if (TIFFWriteScanline(t, (void *)(px + (size_t)y * w * c), (uint32_t)y, 0) < 0) {
            printf("FATAL cannot write %s\n", path);
            exit(2);
        }
    TIFFClose(t);
}

#endif
