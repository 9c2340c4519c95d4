/* What the commands that read a byol train run share (eval, export, embed, neighbors, map,
 * finetune): its checkpoint's model with the flags that must agree with it, its dataset, and the
 * un-augmented feature preprocessing it implies. */
#ifndef BYOL_CKPT_MODEL_H
#define BYOL_CKPT_MODEL_H

#include "../eval/features.h"
#include "args.h"
#include "train_opts.h"

/* A model from a checkpoint: the architecture from its saved configuration; model flags given
 * on the command line must agree with it. Fills mean/std and the training image size. */
typedef struct {
    TrainOptions o;     /* the checkpoint's configuration */
    Flag flags[TRAIN_FLAG_MAX];
    int nf;
    Byol model;
    float mean[3], std[3];
    int64_t step;
    int loaded;
} Loaded;

/* Loads a byol train checkpoint (a file, or a run folder's newest). A classifier checkpoint of
 * byol finetune is refused in one line that says which command takes it. */
int load_checkpoint(Loaded *L, const char *ckpt, const ModelConfig *asked, int argc, char **argv, Err *e);

/* The model flags, with help that says where the values come from: the checkpoint's saved
 * configuration (a flag given must agree with it), and without a checkpoint (eval's
 * --random-init / --raw-pixels) byol train's defaults, which *c is set to. */
void ckpt_model_flags(Flag *f, ModelConfig *c, int ckpt_optional);

/* Opens the dataset; when its path came from the checkpoint (no --data), a failure names the
 * checkpoint it came from, so that a run moved to another machine is understood. */
int open_data(Dataset *ds, const DataOptions *dopt, int from_ckpt, const char *ckpt, Err *e);

/* Checks --eval-resize against the crop (the image size). */
int check_eval_resize(int resize, int image_size, Err *e);

/* The loaded run's evaluation preprocessing on ds: its normalization and training image size
 * (ds's default when the run has none), resize as --eval-resize, batch 256, backend be (NULL:
 * the CPU). Refuses, naming both, a dataset whose channel count is not the encoder's. */
int run_feature_config(const Loaded *L, const Dataset *ds, int resize, const struct Backend *be, FeatureConfig *fc,
                       Err *e);

/* Row i's name: a folder image's path relative to the dataset's root, else "split/i". */
void image_name(const Dataset *ds, Split split, int i, char *out, size_t cap);

#endif
