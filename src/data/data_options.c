#include "data_options.h"

#include <math.h>
#include <string.h>

#include "../core/common.h"

void data_options_default(DataOptions *o) {
    memset(o, 0, sizeof *o);
    float *unset[] = {&o->crop_scale_min, &o->crop_scale_max, &o->crop_ratio_min, &o->crop_ratio_max,
                      &o->flip_p, &o->jitter_p, &o->brightness, &o->contrast, &o->saturation, &o->hue,
                      &o->gray_p, &o->blur_p[0], &o->blur_p[1], &o->blur_sigma_min, &o->blur_sigma_max,
                      &o->solarize_p[0], &o->solarize_p[1], &o->solarize_threshold};
    for (size_t i = 0; i < ARRAY_LEN(unset); i++) *unset[i] = NAN;
}

int data_open(Dataset *ds, const DataOptions *o, FILE *warn, Err *e) {
    return dataset_open(ds, o->data ? o->data : DEFAULT_DATA, o->dataset, warn, e);
}

static void take(float *dst, float v) {
    if (!isnan(v)) *dst = v;
}

int data_aug_config(AugConfig *c, const DataOptions *o, const Dataset *ds, Err *e) {
    int S = o->image_size;
    /* Below 8 px the CIFAR stem's last stage (8x downsampling) has less than one pixel; the
     * encoders would still run, on nothing. */
    if (S && S < DATA_MIN_IMAGE_SIZE)
        return err_set(e, "--image-size %d is too small: at least %d px (the CIFAR stem downsamples 8x, "
                          "the ImageNet stem 32x, so 32 or more there); 0 takes the dataset's size",
                       S, DATA_MIN_IMAGE_SIZE);
    if (!S) S = dataset_default_image_size(ds);
    aug_config_default(c, S, ds->channels);
    if (o->interp) {
        if (strcmp(o->interp, "bilinear") == 0) c->interp = INTERP_BILINEAR;
        else if (strcmp(o->interp, "bicubic") == 0) c->interp = INTERP_BICUBIC;
        else return err_set(e, "--interp: unknown filter '%s' (bilinear, bicubic)", o->interp);
    }
    if (o->blur_kernel) c->blur_kernel = o->blur_kernel;
    take(&c->crop_scale_min, o->crop_scale_min), take(&c->crop_scale_max, o->crop_scale_max);
    take(&c->crop_ratio_min, o->crop_ratio_min), take(&c->crop_ratio_max, o->crop_ratio_max);
    for (int v = 0; v < 2; v++) {
        ViewAug *a = &c->view[v];
        take(&a->flip_p, o->flip_p), take(&a->jitter_p, o->jitter_p);
        take(&a->brightness, o->brightness), take(&a->contrast, o->contrast);
        take(&a->saturation, o->saturation), take(&a->hue, o->hue);
        if (ds->channels == 3) take(&a->gray_p, o->gray_p);
        take(&a->blur_p, o->blur_p[v]);
        take(&a->blur_sigma_min, o->blur_sigma_min), take(&a->blur_sigma_max, o->blur_sigma_max);
        take(&a->solarize_p, o->solarize_p[v]);
        take(&a->solarize_threshold, o->solarize_threshold);
    }
    return aug_config_check(c, e);
}
