#include "features.h"

#include <stdlib.h>
#include <string.h>

#include "../backend/backend.h"

int preprocess_eval(float *out, const Dataset *ds, Split s, int idx, const FeatureConfig *fc,
                    Image *img, AugScratch *scratch, Err *e) {
    const int S = fc->image_size, C = ds->channels;
    if (dataset_image(ds, s, idx, S, img, e)) return -1;
    int side = img->w < img->h ? img->w : img->h;
    aug_resized_crop(out, img->px, img->h, img->w, C, (img->h - side) / 2, (img->w - side) / 2,
                     side, side, S, INTERP_BILINEAR, scratch);
    aug_normalize(out, C, S, S, fc->mean, fc->std);
    return 0;
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
    void *mem = NULL, *scratch = NULL;
    float *x = NULL, *chw = xmalloc(per * sizeof(float), "image");
    if (net) {
        Arena a = {NULL, 0, 0};
        resnet_plan(&acts, net, B, S, S, &a, &backend_cpu);
        size_t act_bytes = a.used;
        mem = xcalloc(act_bytes + acts.max_scratch + 64, 1, "evaluation activations (lower the batch)");
        Arena real = {(char *)mem, 0, act_bytes + acts.max_scratch + 64};
        resnet_plan(&acts, net, B, S, S, &real, &backend_cpu);
        scratch = arena_take(&real, acts.max_scratch);
        x = xcalloc((size_t)B * per, sizeof(float), "evaluation batch");
    }
    Image img = {0};
    AugScratch as = {0};
    int rc = 0;
    for (int b0 = 0; b0 < n && !rc; b0 += B) {
        const int nb = n - b0 < B ? n - b0 : B;
        for (int k = 0; k < nb && !rc; k++) {
            const int j = b0 + k;
            const int idx = (int)((int64_t)j * sp->n / n); /* evenly spaced */
            lab[j] = sp->labels ? sp->labels[idx] : -1;
            if (preprocess_eval(chw, ds, s, idx, fc, &img, &as, e)) {
                rc = -1;
                break;
            }
            if (!net) {
                memcpy(feat + (size_t)j * d, chw, per * sizeof(float));
                continue;
            }
            float *dst = x + (size_t)k * per; /* CHW -> HWC */
            for (int c = 0; c < C; c++)
                for (int p = 0; p < S * S; p++) dst[(size_t)p * C + c] = chw[(size_t)c * S * S + p];
        }
        if (rc || !net) continue;
        if (nb < B) memset(x + (size_t)nb * per, 0, (size_t)(B - nb) * per * sizeof(float));
        /* Evaluation mode reads the running statistics and writes nothing: buffers stay const. */
        resnet_forward(&backend_cpu, net, params, (float *)buffers, &acts, x, 0, scratch);
        memcpy(feat + (size_t)b0 * d, acts.features, (size_t)nb * d * sizeof(float));
    }
    image_free(&img);
    aug_scratch_free(&as);
    xfree(chw), xfree(x), xfree(mem);
    if (rc) {
        xfree(feat);
        free(lab);
        return -1;
    }
    *features = feat;
    *labels = lab;
    *dim = d;
    return n;
}
