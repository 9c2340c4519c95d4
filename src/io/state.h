/* BYOL state <-> safetensors, with PyTorch's names, shapes and layouts:
 *   online.encoder.<torchvision resnet key>, online.projector.{0,1,3}.*, predictor.{0,1,3}.*,
 *   target.encoder.*, target.projector.*, momentum.<online or predictor parameter key>, and
 *   after AdamW steps exp_avg_sq.<key> (its second moment; momentum.* is its first).
 * Convolution weights are converted between PyTorch's OIHW and our OHWI here and nowhere else. */
#ifndef BYOL_STATE_H
#define BYOL_STATE_H

#include "../model/byol.h"
#include "safetensors.h"

/* Loads every tensor of the model from `path`. Missing momentum.* keys mean zero momentum;
 * any other missing key, a non-F32 dtype or a wrong shape is an error naming the key. Keys the
 * model does not use (num_batches_tracked, ...) are ignored. */
int state_load(Byol *m, const char *path, Err *e);
int state_load_from(Byol *m, const Safetensors *st, Err *e);

/* An encoder's weights with torchvision's names: byol export's file, tools/pth2safetensors.py's
 * from a torchvision state_dict (its fc.* ignored), or a byol checkpoint (its online encoder).
 * state_encoder_config reads what the file's encoder is (arch from its blocks, width, input
 * channels and stem from conv1.weight) into *c and its key prefix ("" or "online.encoder.")
 * into *prefix; state_load_encoder puts the weights and batch-norm statistics into the online
 * and the target encoder of m (built for that config), leaving the heads as they are. A missing
 * tensor, a misshaped one or a non-F32 dtype is an error naming it. 0, or -1 with e set. */
int state_encoder_config(const Safetensors *st, EncoderConfig *c, const char **prefix, Err *e);
int state_load_encoder(Byol *m, const Safetensors *st, const char *prefix, Err *e);

/* Any one store, its tensors named as registered (a classifier: torchvision's resnet keys and
 * fc.*): loads every tensor (missing, misshaped or non-F32: an error naming it), or writes
 * params and buffers in PyTorch's layouts, with batches_tracked as every batch norm's
 * num_batches_tracked (so that torchvision's load_state_dict(strict=True) takes the file),
 * atomically, with `meta` pairs. 0, or -1 with e set. */
int state_store_load(ParamStore *s, const Safetensors *st, Err *e);
int state_store_save(const ParamStore *s, const char *path, int64_t batches_tracked, const StMeta *meta, int n_meta,
                     Err *e);

/* Writes the whole state (online, predictor, target, momentum) atomically, with `meta` pairs. */
int state_save(const Byol *m, const char *path, const StMeta *meta, int n_meta, Err *e);

/* Layout conversion of one tensor between PyTorch's shape and our storage. */
void tensor_to_storage(const TensorSpec *t, float *dst, const float *torch_layout);
void tensor_to_torch(const TensorSpec *t, float *dst, const float *storage);

#endif
