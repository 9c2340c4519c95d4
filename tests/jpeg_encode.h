/* One JPEG encoder for the tests and the fuzz corpus generator: the library's (libjpeg into
 * memory), stopping the program on a setup error. */
#ifndef BYOL_TESTS_JPEG_ENCODE_H
#define BYOL_TESTS_JPEG_ENCODE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "data/image.h"

/* Baseline JPEG at quality q of w x h pixels with c = 1 (gray) or 3 (RGB) interleaved channels.
 * Returns the malloc'ed bytes (free() them) and their count in *size. */
static inline unsigned char *jpeg_encode(const uint8_t *px, int w, int h, int c, int q,
                                         unsigned long *size) {
    size_t n = 0;
    Err e;
    uint8_t *mem = jpeg_encode_mem(px, w, h, c, q, &n, "test image", &e);
    if (!mem) {
        printf("FATAL %s\n", e.msg);
        exit(2);
    }
    *size = (unsigned long)n;
    return mem;
}

#endif
