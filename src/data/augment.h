/* BYOL's augmentations (the paper's Table 6), as torchvision defines them on float tensors.
 *
 * A view is made in two steps, so that every random choice is explicit and testable:
 *   aug_draw   draws a ViewParams (crop box, flip, jitter factors and order, grayscale, blur
 *              sigma, solarize) from a counter-based Rng;
 *   aug_apply  is a pure function of (image, params): crop + antialiased resize, flip, colour
 *              jitter, grayscale, blur, solarize, normalize, into CHW floats.
 * Each transform is also exposed on its own (CHW float images in [0, 1]) for the tests, which
 * compare them with torchvision for fixed parameters. */
#ifndef BYOL_AUGMENT_H
#define BYOL_AUGMENT_H

#include <stdint.h>

#include "../core/rng.h"
#include "image.h"

typedef enum { INTERP_BILINEAR, INTERP_BICUBIC } Interp;

/* Largest blur kernel side (10% of a 2550-px view); larger views keep this kernel. */
enum { AUG_MAX_BLUR_KERNEL = 255 };

/* Probabilities and ranges of one view's pipeline. */
typedef struct {
    float flip_p;
    float jitter_p, brightness, contrast, saturation, hue;
    float gray_p;
    float blur_p, blur_sigma_min, blur_sigma_max;
    float solarize_p, solarize_threshold;
} ViewAug;

typedef struct {
    int image_size;          /* output side S */
    int channels;            /* 1 or 3 */
    float crop_scale_min, crop_scale_max; /* area fraction, 0.08 .. 1 */
    float crop_ratio_min, crop_ratio_max; /* aspect ratio w/h, 3/4 .. 4/3 (log-uniform) */
    Interp interp;
    int blur_kernel;         /* odd kernel side, ~10% of S */
    ViewAug view[2];
    float mean[3], std[3];   /* normalization (the dataset's channel statistics) */
} AugConfig;

/* The paper's defaults for S x S outputs: view 1 blur p 1.0 / solarize 0, view 2 blur p 0.1 /
 * solarize 0.2; blur off for S <= 64 (as solo-learn and lightly do on CIFAR). mean 0, std 1 until
 * the caller sets the dataset's. */
void aug_config_default(AugConfig *c, int image_size, int channels);
/* One line per problem (probabilities outside [0, 1], empty ranges, even kernel, std <= 0). */
int aug_config_check(const AugConfig *c, Err *e);

/* The short side a JPEG may be decoded down to (libjpeg-turbo's reduced DCT scales) without any
 * crop the config can draw ending up smaller than the output: image_size over the smallest
 * crop's side fraction (about 4.1 x image_size with the defaults), so reduced decoding only
 * serves images far larger than the views and never changes what a small crop shows. */
int aug_decode_min_side(const AugConfig *c);

/* Everything random about one view of one image. */
typedef struct {
    int crop_y, crop_x, crop_h, crop_w;
    int flip;
    int jitter;
    int order[4];            /* 0 brightness, 1 contrast, 2 saturation, 3 hue (applied in order) */
    float brightness, contrast, saturation, hue;
    int gray;
    int blur;
    float sigma;
    int solarize;
    float solarize_threshold;
} ViewParams;

/* torchvision's RandomResizedCrop.get_params: 10 tries of (area scale, log-uniform ratio), then
 * the centre crop clamped to the ratio range. Rounding as Python's round (half to even). */
void aug_draw_crop(int *y, int *x, int *h, int *w, int H, int W, const AugConfig *c, Rng *r);
void aug_draw(ViewParams *p, const AugConfig *c, int view, int H, int W, Rng *r);

/* Scratch for aug_apply: grows on first use, then reused (one per worker thread). */
typedef struct {
    float *buf;
    size_t cap;
} AugScratch;
void aug_scratch_free(AugScratch *s);

/* out: channels x S x S floats, normalized. src: HWC uint8 with c->channels channels. */
void aug_apply(float *out, const Image *src, const ViewParams *p, const AugConfig *c, AugScratch *s);
/* The same pipeline without the final normalization, as 8-bit HWC (for pictures). */
void aug_apply_u8(uint8_t *out, const Image *src, const ViewParams *p, const AugConfig *c, AugScratch *s);

/* ---- single transforms on CHW float images (C channels, H x W) ---- */
/* Crop box (y, x, h, w) of an HWC uint8 image, scaled to [0, 1] and resized to S x S with
 * antialiasing (torchvision resize(antialias=True), i.e. PIL's filters: bilinear = triangle,
 * bicubic a = -0.5, support widened by the downscale factor). Float bicubic is not clamped. */
void aug_resized_crop(float *out, const uint8_t *src, int H, int W, int C, int y, int x, int h,
                      int w, int S, Interp interp, AugScratch *s);
void aug_hflip(float *img, int C, int H, int W);
void aug_brightness(float *img, int C, int H, int W, float f);
void aug_contrast(float *img, int C, int H, int W, float f);
void aug_saturation(float *img, int C, int H, int W, float f);
void aug_hue(float *img, int C, int H, int W, float f);
/* Gray by PIL's weights (0.299, 0.587, 0.114), replicated over C = 3 channels. */
void aug_grayscale(float *img, int C, int H, int W);
/* torchvision gaussian_blur: 1-D kernel exp(-x^2 / 2 sigma^2) normalized, on both axes,
 * reflect padding. k odd, k/2 < min(H, W). tmp holds aug_blur_tmp_floats(C, H, W, k) floats. */
size_t aug_blur_tmp_floats(int C, int H, int W, int k);
void aug_blur(float *img, float *tmp, int C, int H, int W, int k, float sigma);
void aug_solarize(float *img, int C, int H, int W, float threshold);
void aug_normalize(float *img, int C, int H, int W, const float *mean, const float *std);

#endif
