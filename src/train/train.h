/* The training loop as a library: resume, data, the step loop, checkpoints, the monitors and
 * signals of one BYOL run, for every command that trains (byol train; the lab's variants).
 * The options are plain values: the flags that fill them are src/cli/train_opts.c. */
#ifndef BYOL_TRAIN_H
#define BYOL_TRAIN_H

#include "../backend/backend.h"
#include "../data/data_options.h"
#include "../io/checkpoint.h"
#include "../io/safetensors.h"
#include "../model/byol.h"

typedef struct {
    ModelConfig mc;
    DataOptions data;
    int epochs, batch, seed, eval_every, keep, log_every, workers, threads, max_steps;
    int knn_k, eval_bank, eval_queries, knn_before, knn_after, split_unlabeled, sync_bn, balance, allow_change;
    float base_lr, pred_lr_mult, weight_decay, momentum, lars_eta, tau_base, warmup_epochs, warmup_frac, time_budget, knn_t,
        ckpt_minutes, comm_timeout;
    const char *out, *resume, *config, *on_nan;
    /* --init: the encoders start from these weights (torchvision's names), with fresh heads */
    const char *init;
    const char *tau_schedule; /* "cosine" (BYOL's) or "constant" */
    const char *optimizer;    /* "lars", "sgd" or "adamw"; NULL: the method's (train_options_resolve) */
    /* DINO: the teacher's temperature after its warm-up from warmup_teacher_temp over
     * min(30 epochs, teacher_temp_warmup of the run), the student's, and the center */
    float dino_teacher_temp, dino_warmup_teacher_temp, dino_teacher_temp_warmup, dino_student_temp,
        dino_center_momentum;
    int dino_center;
    /* Multi-crop: local views per image, their size (0: half the image size) and crop scales */
    int local_crops, local_size;
    const char *local_scale; /* "min,max" of the crop area (0.05,0.4) */
    float local_weight;       /* the local views' terms' weight in the loss, the global ones' 1 (1) */
    /* --size-schedule: the view size's phases (src/train/size_schedule.h); NULL: the image size */
    const char *size_schedule;
    /* --var-cov "W1,W2": VICReg's variance hinge and covariance penalty on the online
     * projections of the two global views, with these weights, added to the loss ("0,0": off) */
    const char *var_cov;
    /* the predictor's learning rate held at its peak (SimSiam's fix_pred_lr): -1 the method's
     * (SimSiam 1, else 0) */
    int pred_lr_constant;
    int budget_recipe;        /* train_options_budget_recipe applied: the batch may shrink to the data */
    float knn_every_s;        /* > 0: kNN of the online and target encoders every so many seconds */
    int quiet;                /* 1: no progress lines (the lab runs many trainings) */
    ComputeOptions plan;
    int skip_nonfinite; /* --on-nan skip */
    int out_given, out_default, in_channels_given, stem_given, arch_given, width_given;
    char data_buf[4096]; /* --data made absolute */
    char init_buf[4096]; /* --init made absolute */
    char out_buf[4096];
} TrainOptions;

/* The defaults: a model and recipe sized for a 2-core CPU and 15 minutes on Fashion-MNIST. */
void train_options_default(TrainOptions *o);

/* The short-budget recipe, for --time-budget runs given no recipe flag (byol train decides):
 * ResNet-18 width 16, heads 2048/256/2048, batch 256 (fewer when the data has fewer images),
 * LARS base lr 0.5 with the predictor's x10, weight decay 1e-5, --var-cov 0.1,0.004 and the
 * size schedule "auto". The best of the levers measured at 15 minutes on CIFAR-10
 * (docs/results.md); its schedules are shares of the budget, so it scales with it. */
void train_options_budget_recipe(TrainOptions *o);

/* --data and --init as absolute paths (into o->data_buf, o->init_buf), so that a run's saved
 * configuration works from any folder. */
void train_data_absolute(TrainOptions *o);

/* --var-cov's "W1,W2" (NULL or "": 0, 0). 0, or -1 with e set. */
int var_cov_parse(const char *text, float *w_var, float *w_cov, Err *e);

/* The optimizer's name: NULL becomes the method's (BYOL lars, SimSiam and DINO sgd). Returns 1 for sgd,
 * 0 for lars, 2 for adamw, or -1 with e set for another name. */
int train_optimizer_resolve(const char **optimizer, Method method, Err *e);

/* Fills in what the method decides where the options leave it open: the heads
 * (model_config_resolve), the optimizer (BYOL LARS, SimSiam and DINO SGD), its base learning
 * rate (1 for LARS, 0.05 for SGD, DINO's 0.03, 5e-4 for AdamW) and the target's EMA (0.99; DINO's teacher
 * 0.996). 0, or -1 with e set for an unknown optimizer. */
int train_options_resolve(TrainOptions *o, Err *e);

/* What the caller has set up before the run. */
typedef struct {
    const Backend *be; /* opened, with its precision set (compute_backend) */
    /* --resume: the checkpoint, opened and its metadata read (the caller closes it); a fresh
     * run: ckpt_path "" and resume_st NULL, meta all zeros. */
    const char *ckpt_path;
    const Safetensors *resume_st;
    const CkptMeta *meta;
    /* The configuration text the run saves (config.txt, every checkpoint), asked for once the
     * run has filled its figures into the options (image size, stem, warm-up); malloc'ed. */
    char *(*config_text)(void *ctx);
    void *config_ctx;
} TrainSetup;

typedef struct {
    int64_t step;     /* the step the run ended at */
    double final_knn; /* kNN top-1 after training, or -1 (none measured) */
} TrainResult;

/* Runs (or resumes) the training o describes, printing its progress, writing its folder
 * (o->out). Returns the exit status: 0, 1 (an error, said in one line on stderr), or 128 + the
 * signal that stopped it (the run is saved and resumable). */
int train_run(TrainOptions *o, const TrainSetup *s, TrainResult *result);

#endif
