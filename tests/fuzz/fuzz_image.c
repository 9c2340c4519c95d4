/* The image decode wrapper (src/data/image.c: libjpeg-turbo, libpng, stb_image's BMP decoder and
 * libtiff behind our header checks and size limits), as the image-folder dataset calls it. The
 * corpus holds one seed per format (rgb.bmp and rgb.tif are not made by make_corpus). Flags byte: bit 0 picks 3 channels
 * (else gray), bits 1-6 a min_side hint for JPEG's scaled decoding. */
#include <stdlib.h>

#include "data/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int channels = data[0] & 1 ? 3 : 1, min_side = (data[0] >> 1) & 63;
    Image img = {0};
    Err e;
    image_format_of(data + 1, size - 1);
    if (image_decode_mem(&img, data + 1, size - 1, "fuzz.img", channels, min_side, &e) == 0) {
        if (img.w < 1 || img.h < 1 || img.c != channels) abort();
        volatile uint8_t last = img.px[(size_t)img.w * img.h * img.c - 1];
        (void)last;
    } else if (!e.msg[0]) {
        abort();
    }
    image_free(&img);
    return 0;
}
