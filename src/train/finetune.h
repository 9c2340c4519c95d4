/* Supervised fine-tuning of an encoder with a linear head (the BYOL paper's semi-supervised
 * protocol, Section 4 / Appendix D): the whole classifier trained with cross-entropy on a
 * class-balanced fraction of the train split's labels (src/eval/subset.h, fixed by the seed), on
 * random resized crops with horizontal flips, by SGD with momentum under a cosine-decayed rate;
 * then scored (top-1, top-5) on the test split. The head starts at zero (SimCLR's fine-tuning
 * does the same), or as the linear probe of the frozen features (head_from_probe: "LP-FT",
 * Kumar et al. 2022). Measured on CIFAR-10 (docs/results.md): the probe's head helped a BYOL
 * encoder at 10% of the labels and hurt it at 1%, and hurt an untrained encoder at both (the
 * probe, fitted to convergence on few images, starts overconfident), so zero is the default. */
#ifndef BYOL_FINETUNE_H
#define BYOL_FINETUNE_H

#include <stdio.h>

#include "../data/dataset.h"
#include "../model/classifier.h"

typedef struct {
    double label_fraction; /* (0, 1] */
    int epochs;            /* passes over the labelled images */
    int batch;
    double lr;             /* at the first step, cosine-decayed to 0 at the last */
    double momentum, weight_decay;
    double crop_min;       /* RandomResizedCrop's smallest area fraction (torchvision's 0.08) */
    uint64_t seed;         /* the labelled subset, the order and the crops */
    int workers;           /* loader threads (0: its default) */
    int log_every;         /* steps between progress lines on `log` (0: none) */
    int eval_max;          /* test images scored, evenly spaced (0: all) */
    /* 1: the head starts as the linear probe fitted (L-BFGS, byol eval's) to the frozen features
     * of the labelled images, and is scored on the test split before training (linear probing
     * then fine-tuning, Kumar et al. 2022); 0: it starts at zero. */
    int head_from_probe;
    FILE *log;
} FinetuneConfig;

void finetune_config_default(FinetuneConfig *c);

typedef struct {
    int labelled;      /* images of the subset */
    long steps;
    double final_loss; /* mean cross-entropy of the last epoch's steps */
    double top1, top5; /* on the test split */
    double probe_top1, probe_top5; /* the head from the probe, before fine-tuning (head_from_probe) */
    int test_images;
    double train_seconds, eval_seconds;
} FinetuneReport;

/* Trains c (built with trained = 1, its encoder and head initialized by the caller; image_size,
 * mean and std set) on ds's train split and scores it on the test split. Refuses, in one line,
 * a dataset without labelled train and test splits, a channel count not the encoder's, a
 * fraction outside (0, 1] or one that leaves a class without an image, and a subset smaller than
 * one batch. 0, or -1 with e set. */
int finetune_run(Classifier *c, const Dataset *ds, const FinetuneConfig *cfg, FinetuneReport *rep, Err *e);

#endif
