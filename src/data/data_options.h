/* What a command that reads images asks of its data: where it is, how big the views are, and
 * every augmentation value (NaN: the default for the image size and channels). The flags that
 * fill it are src/cli/data_flags.c; training, evaluation and the data commands read it. */
#ifndef BYOL_DATA_OPTIONS_H
#define BYOL_DATA_OPTIONS_H

#include <stdio.h>

#include "augment.h"
#include "dataset.h"

typedef struct {
    const char *data, *dataset, *interp;
    int image_size; /* 0: dataset_default_image_size; else >= DATA_MIN_IMAGE_SIZE */
    int blur_kernel;
    /* NaN = not given: the default for the image size and channels applies */
    float crop_scale_min, crop_scale_max, crop_ratio_min, crop_ratio_max;
    float flip_p, jitter_p, brightness, contrast, saturation, hue, gray_p;
    float blur_p[2], blur_sigma_min, blur_sigma_max, solarize_p[2], solarize_threshold;
} DataOptions;

enum { DATA_MIN_IMAGE_SIZE = 8 };
void data_options_default(DataOptions *o);

/* Opens --data (default: Debian's Fashion-MNIST) as --dataset (default: detected). */
int data_open(Dataset *ds, const DataOptions *o, FILE *warn, Err *e);
/* The augmentation for ds: defaults for its size and channels, then the options given. */
int data_aug_config(AugConfig *c, const DataOptions *o, const Dataset *ds, Err *e);

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

#endif
