/* The flags every command that reads images shares: where the data is, how big the views are,
 * and every augmentation value (the paper's defaults unless given). */
#ifndef BYOL_DATA_FLAGS_H
#define BYOL_DATA_FLAGS_H

#include "../data/augment.h"
#include "../data/dataset.h"
#include "args.h"

typedef struct {
    const char *data, *dataset, *interp;
    int image_size; /* 0: dataset_default_image_size; else >= DATA_MIN_IMAGE_SIZE */
    int blur_kernel;
    /* NaN = not given: the default for the image size and channels applies */
    float crop_scale_min, crop_scale_max, crop_ratio_min, crop_ratio_max;
    float flip_p, jitter_p, brightness, contrast, saturation, hue, gray_p;
    float blur_p[2], blur_sigma_min, blur_sigma_max, solarize_p[2], solarize_threshold;
} DataOptions;

enum { DATA_FLAG_COUNT = 23, DATA_MIN_IMAGE_SIZE = 8 };
void data_options_default(DataOptions *o);
void data_flags(Flag *out, DataOptions *o);

/* Opens --data (default: Debian's Fashion-MNIST) as --dataset (default: detected). */
int data_open(Dataset *ds, const DataOptions *o, FILE *warn, Err *e);
/* The augmentation for ds: defaults for its size and channels, then the flags given. */
int data_aug_config(AugConfig *c, const DataOptions *o, const Dataset *ds, Err *e);

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

#endif
