/* A supervised classifier: a ResNet encoder and a linear head on its pooled features, with
 * torchvision's names throughout (conv1.weight, ..., layer4.1.bn2.running_var, fc.weight,
 * fc.bias), so that its file is a torchvision resnet's state_dict (byol finetune writes it, byol
 * predict reads it). One ParamStore holds both; the head comes last, so an optimizer's
 * "from this offset on" rule (LarsConfig.mult_from) gives the head its own learning rate. */
#ifndef BYOL_CLASSIFIER_H
#define BYOL_CLASSIFIER_H

#include "../io/safetensors.h"
#include "resnet.h"

typedef struct {
    ResNet net;
    ParamStore store;
    size_t fc_weight, fc_bias; /* params offsets: [n_classes, out_dim], [n_classes] */
    int n_classes;
    char **class_names;   /* n_classes strings (malloc'ed) */
    int image_size;       /* the side images are fed at */
    float mean[3], std[3]; /* per-channel normalization of pixels in [0, 1] */
} Classifier;

/* Builds the model (zeroed; `trained` adds gradients and momentum). class_names may be NULL
 * ("0", "1", ...). */
void classifier_init(Classifier *c, const EncoderConfig *enc, int n_classes, char *const *class_names, int trained);
void classifier_free(Classifier *c);

/* logits [B, n_classes] of pooled features [B, out_dim] (the head alone, on the CPU). */
void classifier_logits(const Classifier *c, float *logits, const float *features, int B);

/* The classifier file: the store's tensors plus metadata byol.kind = "classifier", arch, width,
 * stem, in_channels, image_size, mean, std (byol export's forms), byol.classes (the class names,
 * one a line) and `extra` pairs. Written atomically. */
int classifier_save(const Classifier *c, const char *path, int64_t steps, const StMeta *extra, int n_extra, Err *e);
/* Reads a classifier file. A byol train checkpoint or an exported encoder is refused in one
 * line that says what the file is and which command takes it. */
int classifier_load(Classifier *c, const char *path, Err *e);

#endif
