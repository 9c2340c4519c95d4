/* Decoded images and the codecs behind them: JPEG through libjpeg-turbo (with its scaled
 * decoding when the image is much larger than needed), PNG through libpng (gray, RGB, RGBA,
 * palette, 16-bit), BMP through stb_image, TIFF through libtiff, and PNG and JPEG writers for
 * pictures byol.c makes (augmentation grids).
 *
 * Every decoder reads the header first and refuses absurd dimensions before allocating pixels,
 * and turns libjpeg/libpng errors and warnings (corrupt or truncated data) into an Err line that
 * names the file. */
#ifndef BYOL_IMAGE_H
#define BYOL_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"

/* Larger sides or pixel counts are refused as corrupt or hostile before any allocation. */
enum { IMAGE_MAX_SIDE = 32768 };
#define IMAGE_MAX_PIXELS ((size_t)1 << 28)

/* Interleaved 8-bit pixels, row-major, HWC: px[(y * w + x) * c + k]. `cap` is the allocated
 * size of px in bytes, so one Image can be reused for many decodes without reallocating. */
typedef struct {
    int w, h, c;
    uint8_t *px;
    size_t cap;
} Image;

void image_free(Image *img);
/* Makes img hold w x h x c pixels (contents undefined), growing px only when needed. */
void image_reserve(Image *img, int w, int h, int c);

typedef enum { IMAGE_FORMAT_UNKNOWN, IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG, IMAGE_FORMAT_BMP, IMAGE_FORMAT_TIFF } ImageFormat;
/* By magic bytes, not by file name. */
ImageFormat image_format_of(const uint8_t *buf, size_t n);

/* Header only: format, size and channel count as stored (1 gray, 3 colour; alpha and palettes
 * count as 3). Refuses absurd dimensions, truncated BMPs, and files that are not JPEG, PNG, BMP
 * (uncompressed or bitfields, 1 to 32 bits; not RLE) or TIFF (the first page of any layout
 * libtiff's RGBA reader handles). */
int image_probe_file(const char *path, int *w, int *h, int *c, Err *e);

/* Decodes into img with `channels` channels (1: gray by PIL's weights 299/587/114 per mille,
 * rounded as PIL does; 3: gray replicated, alpha dropped, palette expanded, 16-bit colour and gray+alpha keep the high byte as PIL does, 16-bit gray is scaled).
 * min_side > 0 lets a JPEG be decoded at a reduced scale (1/2, 1/4, 1/8, ... as libjpeg-turbo
 * offers) as long as the smaller side stays >= min_side; 0 decodes at full size. `label` names
 * the data in messages. Corrupt or truncated data is an error, never silently gray pixels. */
int image_decode_mem(Image *img, const uint8_t *buf, size_t n, const char *label, int channels,
                     int min_side, Err *e);
int image_decode_file(Image *img, const char *path, int channels, int min_side, Err *e);

/* Writes 8-bit gray (c = 1) or RGB (c = 3) pixels as a PNG, atomically (see AtomicFile). */
int png_write(const char *path, const uint8_t *px, int w, int h, int c, Err *e);
/* The same as a baseline JPEG at `quality` (1..100). */
int jpeg_write(const char *path, const uint8_t *px, int w, int h, int c, int quality, Err *e);
/* The JPEG in memory (malloc'ed, free() it; its size in *n), or NULL with e filled; `path` only
 * names it in messages. */
uint8_t *jpeg_encode_mem(const uint8_t *px, int w, int h, int c, int quality, size_t *n, const char *path, Err *e);

/* Evaluation preprocessing as torchvision's Resize(resize, BICUBIC) + CenterCrop(crop) on a PIL
 * image (the BYOL / ImageNet protocol: 256 then 224, 87.5%): the short side resized to `resize`,
 * the long side to int(resize * long / short), by Pillow's antialiased bicubic (a = -0.5, the
 * support widened by the downscale factor, 22-bit fixed-point weights, the horizontal pass first
 * and rounded to 8 bits, a pass skipped when its size is unchanged), then the centred crop x crop
 * window (offsets round((new - crop) / 2), halves to even as Python), as CHW floats v / 255
 * (ToTensor). Pixel for pixel what Pillow computes from the same decoded pixels (only the crop's
 * pixels are computed). What can still differ from a torchvision pipeline: the decoded pixels
 * themselves when PIL's libjpeg-turbo is another version (both use its defaults: ISLOW DCT,
 * fancy upsampling, full-size decoding); and torchvision's tensor path (decode_image + Resize
 * with antialias=True on float tensors) skips the 8-bit rounding between and after the passes,
 * which moves values by about one level (1/255). Needs 1 <= crop <= resize; -1 with e set
 * otherwise. */
int image_resize_center_crop(float *out, const Image *img, int resize, int crop, Err *e);
/* The size (nw x nh) the short-side resize above gives a w x h image. */
void image_eval_resize_size(int w, int h, int resize, int *nw, int *nh);

#endif
