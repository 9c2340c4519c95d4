/* BYOL augmentations: see augment.h. Images are CHW float planes; every transform works in place
 * on them except the crop-and-resize, which reads the decoded HWC uint8 image. */
#include "augment.h"

#include <math.h>
#include <string.h>

static int round_half_even(double v) { return (int)nearbyint(v); }

void aug_config_default(AugConfig *c, int image_size, int channels) {
    memset(c, 0, sizeof *c);
    c->image_size = image_size;
    c->channels = channels;
    c->crop_scale_min = 0.08f, c->crop_scale_max = 1.0f;
    c->crop_ratio_min = 3.0f / 4.0f, c->crop_ratio_max = 4.0f / 3.0f;
    c->interp = INTERP_BILINEAR;
    int k = (int)(0.1 * image_size);
    k = k % 2 ? k : k + 1;
    c->blur_kernel = k > AUG_MAX_BLUR_KERNEL ? AUG_MAX_BLUR_KERNEL : k;
    for (int v = 0; v < 2; v++) {
        ViewAug *a = &c->view[v];
        a->flip_p = 0.5f;
        a->jitter_p = 0.8f, a->brightness = 0.4f, a->contrast = 0.4f, a->saturation = 0.2f, a->hue = 0.1f;
        a->gray_p = channels == 3 ? 0.2f : 0.0f;
        a->blur_p = image_size <= 64 ? 0.0f : (v == 0 ? 1.0f : 0.1f);
        a->blur_sigma_min = 0.1f, a->blur_sigma_max = 2.0f;
        a->solarize_p = v == 0 ? 0.0f : 0.2f;
        a->solarize_threshold = 0.5f;
    }
    for (int k2 = 0; k2 < 3; k2++) c->mean[k2] = 0.0f, c->std[k2] = 1.0f;
}

static int prob_ok(float p) { return p >= 0 && p <= 1; }

int aug_config_check(const AugConfig *c, Err *e) {
    if (c->image_size < 1 || c->image_size > 4096)
        return err_set(e, "--image-size %d is out of range (1..4096)", c->image_size);
    if (c->channels != 1 && c->channels != 3)
        return err_set(e, "images must have 1 or 3 channels, not %d", c->channels);
    if (!(c->crop_scale_min > 0 && c->crop_scale_min <= c->crop_scale_max && c->crop_scale_max <= 1))
        return err_set(e, "--crop-scale %g..%g: need 0 < min <= max <= 1", c->crop_scale_min, c->crop_scale_max);
    if (!(c->crop_ratio_min > 0 && c->crop_ratio_min <= c->crop_ratio_max))
        return err_set(e, "--crop-ratio %g..%g: need 0 < min <= max", c->crop_ratio_min, c->crop_ratio_max);
    for (int v = 0; v < 2; v++) {
        const ViewAug *a = &c->view[v];
        if (!prob_ok(a->flip_p) || !prob_ok(a->jitter_p) || !prob_ok(a->gray_p) ||
            !prob_ok(a->blur_p) || !prob_ok(a->solarize_p))
            return err_set(e, "view %d: probabilities must lie in [0, 1]", v + 1);
        if (a->brightness < 0 || a->contrast < 0 || a->saturation < 0 || a->hue < 0 || a->hue > 0.5f)
            return err_set(e, "view %d: jitter strengths must be >= 0 (hue at most 0.5)", v + 1);
        if (a->blur_p > 0 && !(a->blur_sigma_min > 0 && a->blur_sigma_min <= a->blur_sigma_max))
            return err_set(e, "view %d: blur sigma range %g..%g is empty", v + 1, a->blur_sigma_min,
                           a->blur_sigma_max);
        if (a->blur_p > 0 && (c->blur_kernel < 1 || c->blur_kernel % 2 == 0 || c->blur_kernel > AUG_MAX_BLUR_KERNEL ||
                              c->blur_kernel / 2 >= c->image_size))
            return err_set(e, "blur kernel %d must be odd, at most %d, and smaller than twice the image size %d",
                           c->blur_kernel, AUG_MAX_BLUR_KERNEL, c->image_size);
    }
    for (int k = 0; k < c->channels; k++)
        if (!(c->std[k] > 0)) return err_set(e, "normalization std of channel %d is %g (must be > 0)", k, c->std[k]);
    return 0;
}

int aug_decode_min_side(const AugConfig *c) {
    /* The smallest crop side is at least short * sqrt(scale_min) * min(sqrt(ratio_min),
     * 1/sqrt(ratio_max)) (0.245 of the short side with the defaults). */
    double f = sqrt(c->crop_scale_min) * fmin(sqrt(c->crop_ratio_min), 1 / sqrt(c->crop_ratio_max));
    double side = ceil(c->image_size / fmax(f, 1e-3));
    return side > IMAGE_MAX_SIDE ? IMAGE_MAX_SIDE : (int)side;
}

/* ---------------------------------------------------------------- random parameters */

void aug_draw_crop(int *y, int *x, int *h, int *w, int H, int W, const AugConfig *c, Rng *r) {
    const double area = (double)H * W;
    const double lr0 = log(c->crop_ratio_min), lr1 = log(c->crop_ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * rng_between(r, c->crop_scale_min, c->crop_scale_max);
        double aspect = exp(rng_between(r, lr0, lr1));
        int cw = round_half_even(sqrt(target * aspect)), ch = round_half_even(sqrt(target / aspect));
        if (cw > 0 && cw <= W && ch > 0 && ch <= H) {
            *y = (int)rng_below(r, (uint64_t)(H - ch + 1));
            *x = (int)rng_below(r, (uint64_t)(W - cw + 1));
            *h = ch, *w = cw;
            return;
        }
    }
    /* Fallback: the whole image, cut to the nearest allowed ratio, centred. */
    double in_ratio = (double)W / H;
    int cw = W, ch = H;
    if (in_ratio < c->crop_ratio_min) ch = round_half_even(cw / (double)c->crop_ratio_min);
    else if (in_ratio > c->crop_ratio_max) cw = round_half_even(ch * (double)c->crop_ratio_max);
    if (ch < 1) ch = 1;
    if (cw < 1) cw = 1;
    *y = (H - ch) / 2, *x = (W - cw) / 2, *h = ch, *w = cw;
}

void aug_draw(ViewParams *p, const AugConfig *c, int view, int H, int W, Rng *r) {
    const ViewAug *a = &c->view[view];
    memset(p, 0, sizeof *p);
    aug_draw_crop(&p->crop_y, &p->crop_x, &p->crop_h, &p->crop_w, H, W, c, r);
    /* A fixed number of draws per view whatever the outcomes, so the stream's layout is stable. */
    p->flip = rng_u01(r) < a->flip_p;
    p->jitter = rng_u01(r) < a->jitter_p;
    for (int i = 0; i < 4; i++) p->order[i] = i;
    for (int i = 3; i > 0; i--) {
        int j = (int)rng_below(r, (uint64_t)i + 1), t = p->order[i];
        p->order[i] = p->order[j], p->order[j] = t;
    }
    p->brightness = (float)rng_between(r, fmax(0, 1 - a->brightness), 1 + a->brightness);
    p->contrast = (float)rng_between(r, fmax(0, 1 - a->contrast), 1 + a->contrast);
    p->saturation = (float)rng_between(r, fmax(0, 1 - a->saturation), 1 + a->saturation);
    p->hue = (float)rng_between(r, -a->hue, a->hue);
    p->gray = c->channels == 3 && rng_u01(r) < a->gray_p;
    p->blur = rng_u01(r) < a->blur_p;
    p->sigma = (float)rng_between(r, a->blur_sigma_min, a->blur_sigma_max);
    p->solarize = rng_u01(r) < a->solarize_p;
    p->solarize_threshold = a->solarize_threshold;
}

/* ---------------------------------------------------------------- resize */

static double filter_weight(double x, Interp interp) {
    x = fabs(x);
    if (interp == INTERP_BILINEAR) return x < 1 ? 1 - x : 0;
    const double a = -0.5; /* PIL's and torch's antialiased bicubic */
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0;
}

static int filter_taps(int in, int out, Interp interp) {
    double scale = (double)in / out, support = (interp == INTERP_BILINEAR ? 1.0 : 2.0) * (scale >= 1 ? scale : 1);
    return (int)ceil(support) * 2 + 2;
}

/* Per output index i: first input index start[i], count[i] taps, weights w[i * taps + j];
 * torch's _upsample_*_aa weights (the same as PIL's ImagingResample). */
static void filter_weights(int *start, int *count, float *w, int taps, int in, int out, Interp interp) {
    const double scale = (double)in / out;
    const double support = (interp == INTERP_BILINEAR ? 1.0 : 2.0) * (scale >= 1 ? scale : 1);
    const double invscale = scale >= 1 ? 1 / scale : 1;
    for (int i = 0; i < out; i++) {
        double center = scale * (i + 0.5);
        int64_t lo = (int64_t)(center - support + 0.5), hi = (int64_t)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        int n = (int)(hi - lo);
        if (n > taps) n = taps;
        double total = 0;
        float *wi = w + (size_t)i * taps;
        for (int j = 0; j < n; j++) total += filter_weight((j + lo - center + 0.5) * invscale, interp);
        for (int j = 0; j < n; j++)
            wi[j] = (float)(total != 0 ? filter_weight((j + lo - center + 0.5) * invscale, interp) / total : 0);
        start[i] = (int)lo, count[i] = n;
    }
}

static float *scratch_get(AugScratch *s, size_t floats) {
    if (floats > s->cap) {
        xfree(s->buf);
        s->cap = floats + floats / 4;
        s->buf = xmalloc(s->cap * sizeof(float), "augmentation scratch");
    }
    return s->buf;
}

void aug_scratch_free(AugScratch *s) {
    xfree(s->buf);
    s->buf = NULL, s->cap = 0;
}

void aug_resized_crop(float *out, const uint8_t *src, int H, int W, int C, int y0, int x0, int h,
                      int w, int S, Interp interp, AugScratch *s) {
    (void)H; /* the crop box lies inside the image (aug_draw_crop) */
    const int tx = filter_taps(w, S, interp), ty = filter_taps(h, S, interp);
    /* scratch: [x weights][y weights][x start/count][y start/count][vertical pass S*w*C] */
    size_t need = (size_t)S * tx + (size_t)S * ty + 4 * (size_t)S + (size_t)S * w * C;
    float *buf = scratch_get(s, need);
    float *wx = buf, *wy = wx + (size_t)S * tx;
    int *sx = (int *)(wy + (size_t)S * ty), *nx = sx + S, *sy = nx + S, *ny = sy + S;
    float *tmp = (float *)(ny + S);
    filter_weights(sx, nx, wx, tx, w, S, interp);
    filter_weights(sy, ny, wy, ty, h, S, interp);
    /* Vertical first, on whole rows of the crop (w*C contiguous values, vectorizable):
     * tmp[oy][x*C + c]. It also leaves fewer rows (S) for the strided horizontal pass when the
     * crop is taller than S. */
    const size_t rowlen = (size_t)w * C;
    for (int oy = 0; oy < S; oy++) {
        float *o = tmp + (size_t)oy * rowlen;
        const float *wt = wy + (size_t)oy * ty;
        for (size_t i = 0; i < rowlen; i++) o[i] = 0;
        for (int j = 0; j < ny[oy]; j++) {
            const uint8_t *line = src + ((size_t)(y0 + sy[oy] + j) * W + x0) * C;
            const float wj = wt[j];
            for (size_t i = 0; i < rowlen; i++) o[i] += wj * ((float)line[i] / 255.0f);
        }
    }
    /* Horizontal: out[c][oy][ox]. */
    for (int oy = 0; oy < S; oy++) {
        const float *row = tmp + (size_t)oy * rowlen;
        for (int ox = 0; ox < S; ox++) {
            const float *wt = wx + (size_t)ox * tx, *p = row + (size_t)sx[ox] * C;
            float acc[3] = {0, 0, 0};
            for (int j = 0; j < nx[ox]; j++)
                for (int c = 0; c < C; c++) acc[c] += wt[j] * p[(size_t)j * C + c];
            for (int c = 0; c < C; c++) out[((size_t)c * S + oy) * S + ox] = acc[c];
        }
    }
}

/* ---------------------------------------------------------------- colour */

void aug_hflip(float *img, int C, int H, int W) {
    for (size_t r = 0; r < (size_t)C * H; r++) {
        float *row = img + r * W;
        for (int i = 0, j = W - 1; i < j; i++, j--) {
            float t = row[i];
            row[i] = row[j], row[j] = t;
        }
    }
}

static inline float clamp01(float v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

/* torchvision's _blend: ratio * a + (1 - ratio) * b, clamped to [0, 1]. */
static inline float blend(float a, float b, float ratio) { return clamp01(ratio * a + (1.0f - ratio) * b); }

static inline float gray_of(float r, float g, float b) { return 0.299f * r + 0.587f * g + 0.114f * b; }

void aug_brightness(float *img, int C, int H, int W, float f) {
    const size_t n = (size_t)C * H * W;
    for (size_t i = 0; i < n; i++) img[i] = blend(img[i], 0.0f, f);
}

void aug_contrast(float *img, int C, int H, int W, float f) {
    const size_t hw = (size_t)H * W, n = (size_t)C * hw;
    double sum = 0;
    if (C == 3)
        for (size_t i = 0; i < hw; i++) sum += gray_of(img[i], img[hw + i], img[2 * hw + i]);
    else
        for (size_t i = 0; i < n; i++) sum += img[i];
    const float mean = (float)(sum / (C == 3 ? hw : n));
    for (size_t i = 0; i < n; i++) img[i] = blend(img[i], mean, f);
}

void aug_saturation(float *img, int C, int H, int W, float f) {
    if (C != 3) return; /* torchvision: no-op on one channel */
    const size_t hw = (size_t)H * W;
    for (size_t i = 0; i < hw; i++) {
        float g = gray_of(img[i], img[hw + i], img[2 * hw + i]);
        for (int c = 0; c < 3; c++) img[c * hw + i] = blend(img[c * hw + i], g, f);
    }
}

/* torchvision's _rgb2hsv / _hsv2rgb per pixel, hue shifted by f (mod 1), with torchvision's own
 * arithmetic: branches become 0/1 masks multiplied in (exact, since the values are finite), which
 * also lets the compiler vectorize the loop. */
void aug_hue(float *img, int C, int H, int W, float f) {
    if (C != 3) return;
    const size_t hw = (size_t)H * W;
    float *R = img, *G = img + hw, *B = img + 2 * hw;
    for (size_t i = 0; i < hw; i++) {
        const float r = R[i], g = G[i], b = B[i];
        /* plain compares, not fmaxf/fminf (whose NaN rules block vectorization; no NaN here) */
        const float mx_gb = g > b ? g : b, mn_gb = g < b ? g : b;
        const float maxc = r > mx_gb ? r : mx_gb, minc = r < mn_gb ? r : mn_gb;
        const float eqc = (float)(maxc == minc), cr = maxc - minc;
        const float s = cr / (eqc * 1.0f + (1.0f - eqc) * maxc);
        const float crd = eqc * 1.0f + (1.0f - eqc) * cr;
        const float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
        const float is_r = (float)(maxc == r), is_g = (float)(maxc == g);
        const float h0 = is_r * (bc - gc) + (is_g * (1.0f - is_r)) * (2.0f + rc - bc) +
                         ((1.0f - is_g) * (1.0f - is_r)) * (4.0f + gc - rc);
        float h = h0 / 6.0f + 1.0f;
        h = h - floorf(h); /* fmod(h, 1) for h >= 0, exactly */
        h = h + f;
        h = h - floorf(h); /* Python's % 1.0 */
        const float v = maxc, h6 = h * 6.0f, hi = floorf(h6), fr = h6 - hi;
        const float p = clamp01(v * (1.0f - s)), q = clamp01(v * (1.0f - s * fr)),
                    t = clamp01(v * (1.0f - s * (1.0f - fr)));
        /* sector (i % 6):  0  1  2  3  4  5
         *   R              v  q  p  p  t  v
         *   G              t  v  v  q  p  p
         *   B              p  p  t  v  v  q */
        const float m0 = (float)(hi == 0.0f) + (float)(hi == 6.0f), m1 = (float)(hi == 1.0f), m2 = (float)(hi == 2.0f),
                    m3 = (float)(hi == 3.0f), m4 = (float)(hi == 4.0f), m5 = (float)(hi == 5.0f);
        R[i] = (m0 + m5) * v + m1 * q + (m2 + m3) * p + m4 * t;
        G[i] = (m1 + m2) * v + m0 * t + m3 * q + (m4 + m5) * p;
        B[i] = (m3 + m4) * v + m2 * t + m5 * q + (m0 + m1) * p;
    }
}

void aug_grayscale(float *img, int C, int H, int W) {
    if (C != 3) return;
    const size_t hw = (size_t)H * W;
    for (size_t i = 0; i < hw; i++) img[i] = img[hw + i] = img[2 * hw + i] = gray_of(img[i], img[hw + i], img[2 * hw + i]);
}

static inline int reflect(int i, int n) {
    if (i < 0) return -i;
    if (i >= n) return 2 * n - 2 - i;
    return i;
}

size_t aug_blur_tmp_floats(int C, int H, int W, int k) { return (size_t)C * H * W + W + k; }

void aug_blur(float *img, float *tmp, int C, int H, int W, int k, float sigma) {
    float kern[AUG_MAX_BLUR_KERNEL];
    const int half = k / 2;
    double total = 0, kd[AUG_MAX_BLUR_KERNEL];
    for (int i = 0; i < k; i++) {
        double x = (i - half) / (double)sigma;
        total += kd[i] = exp(-0.5 * x * x);
    }
    for (int i = 0; i < k; i++) kern[i] = (float)(kd[i] / total);
    /* Horizontal pass: each row is copied with its reflected borders into a padded line, then
     * accumulated tap by tap over contiguous values (vectorizable). tmp holds the result. */
    float *line = tmp + (size_t)C * H * W; /* W + 2 * half floats past the planes */
    for (int c = 0; c < C; c++) {
        float *pl = img + (size_t)c * H * W, *tp = tmp + (size_t)c * H * W;
        for (int y = 0; y < H; y++) {
            const float *row = pl + (size_t)y * W;
            float *o = tp + (size_t)y * W;
            for (int x = -half; x < W + half; x++) line[x + half] = row[reflect(x, W)];
            for (int x = 0; x < W; x++) o[x] = 0;
            for (int j = 0; j < k; j++) {
                const float kj = kern[j], *pj = line + j;
                for (int x = 0; x < W; x++) o[x] += kj * pj[x];
            }
        }
        for (int y = 0; y < H; y++) { /* vertical, row by row for contiguous access */
            float *o = pl + (size_t)y * W;
            for (int x = 0; x < W; x++) o[x] = 0;
            for (int j = 0; j < k; j++) {
                const float *r = tp + (size_t)reflect(y + j - half, H) * W, kj = kern[j];
                for (int x = 0; x < W; x++) o[x] += kj * r[x];
            }
        }
    }
}

void aug_solarize(float *img, int C, int H, int W, float threshold) {
    const size_t n = (size_t)C * H * W;
    for (size_t i = 0; i < n; i++)
        if (img[i] >= threshold) img[i] = 1.0f - img[i];
}

void aug_normalize(float *img, int C, int H, int W, const float *mean, const float *std) {
    const size_t hw = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        const float m = mean[c], s = std[c];
        float *p = img + c * hw;
        for (size_t i = 0; i < hw; i++) p[i] = (p[i] - m) / s;
    }
}

/* ---------------------------------------------------------------- the pipeline */

/* Everything but normalization, into img (C x S x S). The scratch's tail past the resize's use
 * holds the blur's temporary plane. */
static void pipeline(float *img, const Image *src, const ViewParams *p, const AugConfig *c, AugScratch *s) {
    const int C = c->channels, S = c->image_size;
    aug_resized_crop(img, src->px, src->h, src->w, C, p->crop_y, p->crop_x, p->crop_h, p->crop_w, S,
                     c->interp, s);
    if (p->flip) aug_hflip(img, C, S, S);
    if (p->jitter)
        for (int i = 0; i < 4; i++) switch (p->order[i]) {
            case 0: aug_brightness(img, C, S, S, p->brightness); break;
            case 1: aug_contrast(img, C, S, S, p->contrast); break;
            case 2: aug_saturation(img, C, S, S, p->saturation); break;
            default: aug_hue(img, C, S, S, p->hue); break;
            }
    if (p->gray) aug_grayscale(img, C, S, S);
    if (p->blur) aug_blur(img, scratch_get(s, aug_blur_tmp_floats(C, S, S, c->blur_kernel)), C, S, S, c->blur_kernel, p->sigma);
    if (p->solarize) aug_solarize(img, C, S, S, p->solarize_threshold);
}

void aug_apply(float *out, const Image *src, const ViewParams *p, const AugConfig *c, AugScratch *s) {
    pipeline(out, src, p, c, s);
    aug_normalize(out, c->channels, c->image_size, c->image_size, c->mean, c->std);
}

void aug_apply_u8(uint8_t *out, const Image *src, const ViewParams *p, const AugConfig *c, AugScratch *s) {
    const int C = c->channels, S = c->image_size;
    float *img = xmalloc((size_t)C * S * S * sizeof(float), "augmented view");
    pipeline(img, src, p, c, s);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int k = 0; k < C; k++)
                out[((size_t)y * S + x) * C + k] = (uint8_t)lrintf(clamp01(img[((size_t)k * S + y) * S + x]) * 255.0f);
    xfree(img);
}
