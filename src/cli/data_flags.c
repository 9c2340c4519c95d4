#include "data_flags.h"

#include <math.h>
#include <string.h>

void data_flags(Flag *f, DataOptions *o) {
    int i = 0;
    f[i++] = (Flag){"data", FLAG_STRING, &o->data, "dataset path (" DEFAULT_DATA ")", 0, -1};
    f[i++] = (Flag){"dataset", FLAG_STRING, &o->dataset, "mnist, fashion-mnist, cifar10, cifar100, stl10, folder (detected)", 0, -1};
    f[i++] = (Flag){"image-size", FLAG_INT, &o->image_size, "view side in pixels, 8 or more; 0: the dataset's (a folder's typical size, at most 224 when sizes vary)", 0, 4096};
    f[i++] = (Flag){"interp", FLAG_STRING, &o->interp, "resize filter: bilinear or bicubic (bilinear)", 0, -1};
    f[i++] = (Flag){"crop-scale-min", FLAG_FLOAT, &o->crop_scale_min, "random resized crop: min area fraction (0.08)", 1e-6, 1};
    f[i++] = (Flag){"crop-scale-max", FLAG_FLOAT, &o->crop_scale_max, "max area fraction (1)", 1e-6, 1};
    f[i++] = (Flag){"crop-ratio-min", FLAG_FLOAT, &o->crop_ratio_min, "min aspect ratio w/h (0.75)", 1e-3, 1e3};
    f[i++] = (Flag){"crop-ratio-max", FLAG_FLOAT, &o->crop_ratio_max, "max aspect ratio w/h (1.3333)", 1e-3, 1e3};
    f[i++] = (Flag){"flip-p", FLAG_FLOAT, &o->flip_p, "horizontal flip probability (0.5)", 0, 1};
    f[i++] = (Flag){"jitter-p", FLAG_FLOAT, &o->jitter_p, "colour jitter probability (0.8)", 0, 1};
    f[i++] = (Flag){"brightness", FLAG_FLOAT, &o->brightness, "jitter brightness (0.4)", 0, 10};
    f[i++] = (Flag){"contrast", FLAG_FLOAT, &o->contrast, "jitter contrast (0.4)", 0, 10};
    f[i++] = (Flag){"saturation", FLAG_FLOAT, &o->saturation, "jitter saturation (0.2)", 0, 10};
    f[i++] = (Flag){"hue", FLAG_FLOAT, &o->hue, "jitter hue (0.1)", 0, 0.5};
    f[i++] = (Flag){"gray-p", FLAG_FLOAT, &o->gray_p, "grayscale probability (0.2; 0 for 1 channel)", 0, 1};
    f[i++] = (Flag){"blur-p1", FLAG_FLOAT, &o->blur_p[0], "view 1 Gaussian blur probability (1.0; 0 at <= 64 px)", 0, 1};
    f[i++] = (Flag){"blur-p2", FLAG_FLOAT, &o->blur_p[1], "view 2 Gaussian blur probability (0.1; 0 at <= 64 px)", 0, 1};
    f[i++] = (Flag){"blur-sigma-min", FLAG_FLOAT, &o->blur_sigma_min, "blur sigma range (0.1 ..)", 1e-3, 100};
    f[i++] = (Flag){"blur-sigma-max", FLAG_FLOAT, &o->blur_sigma_max, "(.. 2.0)", 1e-3, 100};
    f[i++] = (Flag){"blur-kernel", FLAG_INT, &o->blur_kernel, "blur kernel side, odd, 0: 10% of --image-size", 0, 255};
    f[i++] = (Flag){"solarize-p1", FLAG_FLOAT, &o->solarize_p[0], "view 1 solarize probability (0.0)", 0, 1};
    f[i++] = (Flag){"solarize-p2", FLAG_FLOAT, &o->solarize_p[1], "view 2 solarize probability (0.2)", 0, 1};
    f[i++] = (Flag){"solarize-threshold", FLAG_FLOAT, &o->solarize_threshold, "solarize pixels >= this (0.5)", 0, 1};
    if (i != DATA_FLAG_COUNT) die("data_flags: %d flags, DATA_FLAG_COUNT says %d", i, DATA_FLAG_COUNT);
}
