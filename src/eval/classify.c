#include "classify.h"

#include <math.h>
#include <stdlib.h>

#include "features.h"
#include "knn.h"

void softmax_rows(float *x, int rows, int K) {
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * K;
        float m = row[0];
        for (int k = 1; k < K; k++) m = row[k] > m ? row[k] : m;
        double sum = 0;
        for (int k = 0; k < K; k++) sum += exp((double)row[k] - m);
        for (int k = 0; k < K; k++) row[k] = (float)(exp((double)row[k] - m) / sum);
    }
}

int classifier_predict(const Classifier *c, const Dataset *ds, Split s, int max_images, float **probs,
                       int32_t **labels, Err *e) {
    *probs = NULL, *labels = NULL;
    if (ds->channels != c->net.cfg.in_channels)
        return err_set(e, "%s has %d-channel images, the classifier's encoder takes %d", ds->root, ds->channels,
                       c->net.cfg.in_channels);
    FeatureConfig fc = {.image_size = c->image_size, .mean = {c->mean[0], c->mean[1], c->mean[2]},
                        .std = {c->std[0], c->std[1], c->std[2]}, .batch = 256, .max_images = max_images};
    float *feat;
    int d;
    const int n = extract_features(&c->net, c->store.params, c->store.buffers, ds, s, &fc, &feat, labels, &d, e);
    if (n < 0) return -1;
    float *p = xmalloc((size_t)n * c->n_classes * sizeof(float), "class probabilities");
    classifier_logits(c, p, feat, n);
    softmax_rows(p, n, c->n_classes);
    xfree(feat);
    *probs = p;
    return n;
}

int classify_accuracy(const float *probs, const int32_t *labels, int n, int K, double *top1, double *top5) {
    double *score = xmalloc((size_t)K * sizeof *score, "scores");
    int scored = 0, hit1 = 0, hit5 = 0;
    for (int i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= K) continue;
        for (int k = 0; k < K; k++) score[k] = probs[(size_t)i * K + k];
        const int rank = class_rank(score, K, labels[i]);
        scored++, hit1 += rank < 1, hit5 += rank < 5;
    }
    xfree(score);
    *top1 = scored ? (double)hit1 / scored : 0;
    *top5 = scored ? (double)hit5 / scored : 0;
    return scored;
}
