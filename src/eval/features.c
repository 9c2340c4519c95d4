#include "features.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../backend/backend.h"
#include "../core/threads.h"

int preprocess_eval(float *out, const Dataset *ds, Split s, int idx, const FeatureConfig *fc,
                    Image *img, AugScratch *scratch, Err *e) {
    const int S = fc->image_size, C = ds->channels;
    if (fc->resize > 0) {
        /* Decoded at full size, as PIL decodes (no reduced-scale JPEG decoding, which would feed
         * the resize other pixels than torchvision's). */
        if (dataset_image(ds, s, idx, 0, img, e) || image_resize_center_crop(out, img, fc->resize, S, e)) return -1;
        aug_normalize(out, C, S, S, fc->mean, fc->std);
        return 0;
    }
    if (dataset_image(ds, s, idx, S, img, e)) return -1;
    int side = img->w < img->h ? img->w : img->h;
    aug_resized_crop(out, img->px, img->h, img->w, C, (img->h - side) / 2, (img->w - side) / 2,
                     side, side, S, INTERP_BILINEAR, scratch);
    aug_normalize(out, C, S, S, fc->mean, fc->std);
    return 0;
}

void feature_preprocess_name(const FeatureConfig *fc, char *buf, size_t cap) {
    if (fc->resize > 0)
        snprintf(buf, cap, "center %d of short side %d (bicubic; %.1f%%)", fc->image_size, fc->resize,
                 100.0 * fc->image_size / fc->resize);
    else
        snprintf(buf, cap, "largest centred square to %d (bilinear)", fc->image_size);
    if (fc->flip_avg) {
        const size_t len = strlen(buf);
        snprintf(buf + len, cap > len ? cap - len : 0, ", averaged with its mirror");
    }
}

int extract_features(const ResNet *net, const float *params, const float *buffers,
                     const Dataset *ds, Split s, const FeatureConfig *fc, float **features,
                     int32_t **labels, int *dim, Err *e) {
    const DatasetSplit *sp = &ds->split[s];
    const int S = fc->image_size, C = ds->channels;
    int n = sp->n;
    if (fc->max_images > 0 && n > fc->max_images) n = fc->max_images;
    const int B = MIN(fc->batch > 0 ? fc->batch : 256, n > 0 ? n : 1);
    if (n < 1) return err_set(e, "%s: the %s split is empty", ds->root, SPLIT_NAMES[s]);
    const size_t per = (size_t)C * S * S;
    const int d = net ? net->out_dim : (int)per;
    float *feat = xmalloc((size_t)n * d * sizeof(float), "features (lower --eval-images)");
    int32_t *lab = malloc((size_t)n * sizeof(int32_t));
    if (!lab) die("out of memory for %d labels", n);

    /* The encoder's activations for one batch, planned once (the last batch is padded). */
    ResNetActs acts;
    const Backend *be = fc->be ? fc->be : &backend_cpu;
    void *mem = NULL, *scratch = NULL;
    float *x = NULL, *x_dev = NULL, *state = NULL;
    const float *run_params = params, *run_buffers = buffers;
    if (net) {
        Arena a = {NULL, 0, 0};
        resnet_plan(&acts, net, B, S, S, 0, &a, be);
        size_t act_bytes = a.used;
        mem = be->alloc(act_bytes + acts.max_scratch + 64, "evaluation activations (lower the batch)");
        Arena real = {(char *)mem, 0, act_bytes + acts.max_scratch + 64};
        resnet_plan(&acts, net, B, S, S, 0, &real, be);
        scratch = arena_take(&real, acts.max_scratch);
        x = xcalloc((size_t)B * per, sizeof(float), "evaluation batch");
        x_dev = x;
        if (!be->host_memory) { /* the encoder's state and the batch on the device */
            const size_t np = net->param_floats, nb = net->buffer_floats;
            state = be->alloc((np + nb) * sizeof(float), "the encoder on the device");
            be->upload(state, params, np * sizeof(float));
            be->upload(state + np, buffers, nb * sizeof(float));
            run_params = state;
            run_buffers = state + np;
            x_dev = be->alloc((size_t)B * per * sizeof(float), "evaluation batch");
        }
    }
    /* Decoding and resizing run on all threads, one image each; each thread keeps its own image
     * and resize buffers. The first failure (lowest index) is the one reported. */
    const int nt = threads_get() > 0 ? threads_get() : 1;
    Image *imgs = xcalloc((size_t)nt, sizeof(Image), "decode buffers");
    AugScratch *as = xcalloc((size_t)nt, sizeof(AugScratch), "resize buffers");
    float *chw = xmalloc((size_t)nt * per * sizeof(float), "images");
    float *flipped = net && fc->flip_avg ? xmalloc((size_t)B * d * sizeof(float), "mirrored features") : NULL;
    int fail_at = -1;
    for (int b0 = 0; b0 < n && fail_at < 0; b0 += B) {
        const int nb = n - b0 < B ? n - b0 : B;
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt)
        for (int k = 0; k < nb; k++) {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            const int j = b0 + k;
            const int idx = (int)((int64_t)j * sp->n / n); /* evenly spaced */
            lab[j] = sp->labels ? sp->labels[idx] : -1;
            float *img_chw = chw + (size_t)t * per;
            Err te;
            if (preprocess_eval(img_chw, ds, s, idx, fc, &imgs[t], &as[t], &te)) {
#pragma omp critical(features_error)
                if (fail_at < 0 || j < fail_at) {
                    fail_at = j;
                    *e = te;
                }
                continue;
            }
            if (!net) {
                memcpy(feat + (size_t)j * d, img_chw, per * sizeof(float));
                continue;
            }
            float *dst = x + (size_t)k * per; /* CHW -> HWC */
            for (int c = 0; c < C; c++)
                for (int p = 0; p < S * S; p++) dst[(size_t)p * C + c] = img_chw[(size_t)c * S * S + p];
        }
        if (fail_at >= 0 || !net) continue;
        if (nb < B) memset(x + (size_t)nb * per, 0, (size_t)(B - nb) * per * sizeof(float));
        /* Evaluation mode reads the running statistics and writes nothing: buffers stay const. */
        if (x_dev != x) be->upload(x_dev, x, (size_t)B * per * sizeof(float));
        resnet_forward(be, net, run_params, (float *)run_buffers, &acts, x_dev, 0, scratch);
        be->download(feat + (size_t)b0 * d, acts.features, (size_t)nb * d * sizeof(float));
        if (fc->flip_avg) { /* the mirrored batch (HWC rows reversed), its features averaged in */
            for (int k = 0; k < nb; k++)
                for (int h = 0; h < S; h++) {
                    float *row = x + (size_t)k * per + (size_t)h * S * C;
                    for (int w = 0; w < S / 2; w++)
                        for (int c = 0; c < C; c++) {
                            const float t = row[(size_t)w * C + c];
                            row[(size_t)w * C + c] = row[(size_t)(S - 1 - w) * C + c];
                            row[(size_t)(S - 1 - w) * C + c] = t;
                        }
                }
            if (x_dev != x) be->upload(x_dev, x, (size_t)B * per * sizeof(float));
            resnet_forward(be, net, run_params, (float *)run_buffers, &acts, x_dev, 0, scratch);
            be->download(flipped, acts.features, (size_t)nb * d * sizeof(float));
            float *f = feat + (size_t)b0 * d;
            for (size_t i = 0; i < (size_t)nb * d; i++) f[i] = 0.5f * (f[i] + flipped[i]);
        }
    }
    xfree(flipped);
    for (int t = 0; t < nt; t++) image_free(&imgs[t]), aug_scratch_free(&as[t]);
    xfree(imgs), xfree(as), xfree(chw);
    if (x_dev != x) be->release(x_dev);
    if (state) be->release(state);
    xfree(x);
    if (mem) be->release(mem);
    if (fail_at >= 0) {
        xfree(feat);
        free(lab);
        return -1;
    }
    *features = feat;
    *labels = lab;
    *dim = d;
    return n;
}
