/* Frozen features for evaluation: the encoder in evaluation mode (batch norm with running
 * statistics) on un-augmented images, or the raw pixels themselves as a baseline.
 *
 * Un-augmented means: decoded, then by default the largest centred square resized (bilinear,
 * antialiased) to S x S when the image is not S x S already (torchvision's Resize(S) +
 * CenterCrop(S)); with resize > 0 the BYOL / ImageNet protocol instead, torchvision's
 * Resize(resize, bicubic) + CenterCrop(S) (256 then 224 for 224-px models, 87.5%; see
 * image_resize_center_crop). The two agree at native size (CIFAR, MNIST, STL-10: no resize). Then
 * scaled to [0, 1] and normalized by the training run's channel mean and std. */
#ifndef BYOL_FEATURES_H
#define BYOL_FEATURES_H

#include "../data/augment.h"
#include "../data/dataset.h"
#include "../model/byol.h"

typedef struct {
    int image_size;
    float mean[3], std[3];
    int batch;      /* images per encoder forward */
    int max_images; /* evenly spaced subset when the split is larger (0: all) */
    int resize;     /* > 0: short side to this (bicubic), then the centred S x S; 0: the largest centred square to S */
    /* The backend the encoder runs on (NULL: the CPU). A device backend gets its own copy of
     * the encoder's state and returns the features to the host batch by batch. */
    const struct Backend *be;
    /* 1: each image's features are the mean of its own and its horizontal mirror's (an
     * evaluation option, reported apart from the plain features) */
    int flip_avg;
} FeatureConfig;

/* The preprocessing in words, for reports: "center 224 of short side 256 (bicubic)" or "largest
 * centred square to 32 (bilinear)". */
void feature_preprocess_name(const FeatureConfig *fc, char *buf, size_t cap);

/* Features of split s as a malloc'ed [n, d] float array (d = encoder.out_dim, or C*S*S for raw
 * pixels when net is NULL), labels [n] (malloc'ed; -1 where none). Returns n, or -1 with e set. */
int extract_features(const ResNet *net, const float *params, const float *buffers,
                     const Dataset *ds, Split s, const FeatureConfig *fc, float **features,
                     int32_t **labels, int *dim, Err *e);

/* One image, un-augmented, as CHW floats (C*S*S). scratch: reused across calls. */
int preprocess_eval(float *out, const Dataset *ds, Split s, int idx, const FeatureConfig *fc,
                    Image *img, AugScratch *scratch, Err *e);

#endif
