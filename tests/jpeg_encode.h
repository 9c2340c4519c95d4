/* One JPEG encoder for the tests and the fuzz corpus generator: libjpeg into memory. */
#ifndef BYOL_TESTS_JPEG_ENCODE_H
#define BYOL_TESTS_JPEG_ENCODE_H

#include <stdint.h>
#include <stdio.h> /* before jpeglib.h, which needs size_t and FILE */
#include <jpeglib.h>

/* Baseline JPEG at quality q of w x h pixels with c = 1 (gray) or 3 (RGB) interleaved channels.
 * Returns the malloc'ed bytes (free() them) and their count in *size. */
static inline unsigned char *jpeg_encode(const uint8_t *px, int w, int h, int c, int q,
                                         unsigned long *size) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    unsigned char *mem = NULL;
    *size = 0;
    jpeg_mem_dest(&ci, &mem, size);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = c;
    ci.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, q, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)ci.next_scanline * w * c);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    return mem;
}

#endif
