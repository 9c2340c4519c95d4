/* byol train's settings: model, data and augmentation flags, the recipe, the run's folder. Also
 * read from --config FILE and from a checkpoint's saved configuration (`key = value` lines). */
#ifndef BYOL_TRAIN_OPTS_H
#define BYOL_TRAIN_OPTS_H

#include "args.h"
#include "data_flags.h"

typedef struct {
    ModelConfig mc;
    DataOptions data;
    int epochs, batch, seed, eval_every, keep, log_every, workers, threads, max_steps;
    int knn_k, eval_bank, eval_queries, knn_before, knn_after, split_unlabeled, sync_bn, balance;
    float base_lr, pred_lr_mult, weight_decay, momentum, lars_eta, tau_base, warmup_epochs, time_budget, knn_t,
        ckpt_minutes, comm_timeout;
    const char *out, *resume, *config, *on_nan;
    int skip_nonfinite; /* --on-nan skip */
    int out_given, in_channels_given;
    char out_buf[4096];
} TrainOptions;

enum { TRAIN_FLAG_MAX = 96 };
void train_options_default(TrainOptions *o);
/* Fills the flag table (defaults set); returns its length. */
int train_flags(Flag *flags, TrainOptions *o);
/* --config FILE first (wherever it stands), then the command line on top. 1: --help shown. */
int train_parse(int argc, char **argv, const Flag *flags, int n, TrainOptions *o, Err *e);

#endif
