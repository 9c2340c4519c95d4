/* byol train's loop (src/train/train.h): with the paper's recipe (LARS, warm-up then cosine
 * learning rate, cosine tau), checkpoints, exact resume, a kNN monitor and a collapse monitor.
 * Everything of a run lives in its folder: config.txt, metrics.jsonl, plot.svg,
 * ckpt-<step>.safetensors. */
#include "train.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/threads.h"
#include "../data/loader.h"
#include "../dist/balance.h"
#include "../dist/dist.h"
#include "../eval/features.h"
#include "../eval/knn.h"
#include "../eval/monitor.h"
#include "../eval/plot.h"
#include "../io/run_dir.h"
#include "../io/state.h"
#include "../io/tensorboard.h"
#include "../nn/conv_plan.h"
#include "../optim/optim.h"
#include "size_schedule.h"

/* The defaults: a model and recipe sized for a 2-core CPU and 15 minutes on Fashion-MNIST.
 * Measured there (full evaluation, 60,000-image bank): kNN 76.2% against 72.9% for the
 * untrained encoder, linear probe 80.4% against 74.0%. With the paper's weight decay (1e-5)
 * and 1024/128 heads the projections collapsed to rank 4 within 50 steps and kNN did not
 * improve (73.0%). */
void train_data_absolute(TrainOptions *o) {
    char abs_path[PATH_MAX];
    if (o->data.data && o->data.data != o->data_buf && realpath(o->data.data, abs_path) &&
        strlen(abs_path) < sizeof o->data_buf) {
        memcpy(o->data_buf, abs_path, strlen(abs_path) + 1);
        o->data.data = o->data_buf;
    }
    if (o->init && o->init != o->init_buf && realpath(o->init, abs_path) && strlen(abs_path) < sizeof o->init_buf) {
        memcpy(o->init_buf, abs_path, strlen(abs_path) + 1);
        o->init = o->init_buf;
    }
}

/* --init: the encoder the file holds decides the arch, width, input channels and stem that the
 * flags leave open; one given that differs is refused, naming it. 0, or -1 with e set. */
static int init_encoder_config(TrainOptions *o, const Safetensors *st, const char **prefix, Err *e) {
    EncoderConfig f;
    if (state_encoder_config(st, &f, prefix, e)) return -1;
    EncoderConfig *c = &o->mc.enc;
    char what[160];
    snprintf(what, sizeof what, "a %s of width %d on %d-channel images with the %s stem", arch_name(f.arch), f.width,
             f.in_channels, stem_name(f.stem));
    if (o->arch_given && c->arch != f.arch)
        return err_set(e, "--init %s: its encoder is %s; --arch %s differs (leave it out)", o->init, what, arch_name(c->arch));
    if (o->width_given && c->width != f.width)
        return err_set(e, "--init %s: its encoder is %s; --width %d differs (leave it out)", o->init, what, c->width);
    if (o->stem_given && c->stem != f.stem)
        return err_set(e, "--init %s: its encoder is %s; --stem %s differs (--stem %s, or leave it out)", o->init, what,
                       stem_name(c->stem), stem_name(f.stem));
    if (o->in_channels_given && c->in_channels != f.in_channels)
        return err_set(e, "--init %s: its encoder is %s; --in-channels %d differs (leave it out)", o->init, what,
                       c->in_channels);
    *c = f;
    o->stem_given = o->in_channels_given = 1; /* the data must fit the file's encoder */
    return 0;
}

int var_cov_parse(const char *text, float *w_var, float *w_cov, Err *e) {
    double a, b;
    char tail;
    *w_var = *w_cov = 0;
    if (!text || !*text) return 0;
    if (sscanf(text, "%lf,%lf%c", &a, &b, &tail) != 2 || !(a >= 0 && a <= 1e4) || !(b >= 0 && b <= 1e4))
        return err_set(e, "--var-cov %.64s: two weights W1,W2 from 0 to 1e4, the variance hinge's and the "
                          "covariance penalty's (VICReg's 25,1 beside its own invariance term of weight 25)", text);
    *w_var = (float)a, *w_cov = (float)b;
    return 0;
}

int train_optimizer_resolve(const char **optimizer, Method method, Err *e) {
    if (!*optimizer) *optimizer = method == METHOD_BYOL ? "lars" : "sgd";
    if (strcmp(*optimizer, "sgd") == 0) return 1;
    if (strcmp(*optimizer, "lars") == 0) return 0;
    if (strcmp(*optimizer, "adamw") == 0) return 2;
    return err_set(e, "--optimizer %.64s: not an optimizer (lars, sgd, adamw)", *optimizer);
}

int train_options_resolve(TrainOptions *o, Err *e) {
    if (model_config_check(&o->mc, e)) return -1;
    if (o->mc.local_predictor && !o->local_crops)
        return err_set(e, "--local-predictor 1 is the local views' predictor: add --local-crops N");
    model_config_resolve(&o->mc);
    const int sgd = train_optimizer_resolve(&o->optimizer, o->mc.method, e);
    if (sgd < 0) return -1;
    if (isnan(o->base_lr))
        o->base_lr = sgd == 2 ? 5e-4f : !sgd ? 1.0f : o->mc.method == METHOD_DINO ? 0.03f : 0.05f;
    if (isnan(o->tau_base)) o->tau_base = o->mc.method == METHOD_DINO ? 0.996f : 0.99f;
    if (o->pred_lr_constant < 0) o->pred_lr_constant = o->mc.method == METHOD_SIMSIAM;
    if (o->pred_lr_constant && o->mc.no_predictor)
        return err_set(e, "--pred-lr-constant 1: %s has no predictor", o->mc.method == METHOD_DINO ? "--method dino"
                                                                                                  : "--no-predictor");
    if (o->local_weight != 1 && !o->local_crops)
        return err_set(e, "--local-weight %g weighs the local views' terms: add --local-crops N", o->local_weight);
    float wv, wc;
    if (var_cov_parse(o->var_cov, &wv, &wc, e)) return -1;
    if ((wv > 0 || wc > 0) && o->mc.method == METHOD_DINO)
        return err_set(e, "--var-cov %s: the variance and covariance terms are on BYOL's and SimSiam's projections, "
                          "not DINO's", o->var_cov);
    return 0;
}

void train_options_default(TrainOptions *o) {
    memset(o, 0, sizeof *o);
    model_config_default(&o->mc);
    o->mc.enc.width = 8;
    o->mc.proj_hidden = 512;
    o->mc.proj_dim = 64;
    o->mc.pred_hidden = 0; /* the method's: proj_hidden for BYOL, a bottleneck for SimSiam */
    o->mc.proj_layers = 0; /* the method's */
    data_options_default(&o->data);
    o->epochs = 6;
    o->batch = 128;
    o->seed = 0;
    o->eval_every = 1;
    o->keep = 3;
    o->log_every = 10;
    o->workers = 0;
    o->threads = 0;
    o->knn_k = 200;
    o->knn_t = 0.1f;
    o->eval_bank = 10000;
    o->eval_queries = 10000;
    o->knn_before = 1;
    o->knn_after = 1;
    o->base_lr = NAN; /* the optimizer's: 1 for LARS, 0.05 for SGD */
    o->weight_decay = 5e-4f;
    o->momentum = 0.9f;
    o->lars_eta = 0.02f;
    o->pred_lr_mult = 1;
    o->tau_base = NAN; /* the method's: 0.99, DINO 0.996 */
    o->dino_teacher_temp = 0.07f;
    o->dino_warmup_teacher_temp = 0.04f;
    o->dino_teacher_temp_warmup = 0.3f;
    o->dino_student_temp = 0.1f;
    o->dino_center_momentum = 0.9f;
    o->dino_center = 1;
    o->local_scale = "0.05,0.4";
    o->local_weight = 1;
    o->var_cov = "0,0";
    o->pred_lr_constant = -1;
    o->warmup_epochs = NAN; /* unset (and so is -1, which older checkpoints saved): 10 epochs, at most 10% of the run */
    o->warmup_frac = NAN;   /* unset: with --time-budget, 10% of it */
    o->ckpt_minutes = 10;
    o->comm_timeout = 300;
    o->sync_bn = 1;
    o->on_nan = "stop";
    o->tau_schedule = "cosine";
}

void train_options_budget_recipe(TrainOptions *o) {
    o->mc.enc.width = 16;
    o->mc.proj_hidden = 2048;
    o->mc.proj_dim = 256;
    o->mc.pred_hidden = 2048;
    o->batch = 256;
    o->base_lr = 0.5f;
    o->pred_lr_mult = 10;
    o->weight_decay = 1e-5f; /* the paper's: the variance hinge keeps the projections spread */
    o->var_cov = "0.1,0.004";
    o->size_schedule = "auto";
    o->budget_recipe = 1;
}

static volatile sig_atomic_t g_signal;
static void on_signal(int sig) { g_signal = sig; }

/* ---------------------------------------------------------------- helpers */


/* The folder a file path is in ("." for a bare name). */
static void folder_of(const char *path, char *dir, size_t cap) {
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, cap, ".");
}

/* Whether two paths name the same folder. */
static int same_dir(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    return realpath(a, ra) && realpath(b, rb) && strcmp(ra, rb) == 0;
}

/* The run's folder, before anything is written in it: created (a default name made unique),
 * locked against a second training, and checked. A fresh run refuses a folder that holds
 * checkpoints; a run resumed from an older checkpoint than its folder's newest moves the newer
 * ones aside, and drops the metrics lines a killed run logged after its last checkpoint. Then
 * config.txt. Prints one line and returns 1 on failure. */
static int setup_run_dir(TrainOptions *o, const char *ckpt_path, int64_t start_step, const char *config,
                         RunLock *lock, Err *e) {
    if (o->out != o->out_buf) snprintf(o->out_buf, sizeof o->out_buf, "%s", o->out);
    o->out = o->out_buf;
    if (run_dir_create(o->out_buf, sizeof o->out_buf, o->out_default, e) || run_dir_lock(o->out, lock, e)) {
        fprintf(stderr, "byol train: %s\n", e->msg);
        return 1;
    }
    ckpt_remove_stale_temporaries(o->out); /* half-written files of a killed run */
    char path[4400];
    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out);
    if (o->resume) {
        char ckpt_dir[4400];
        folder_of(ckpt_path, ckpt_dir, sizeof ckpt_dir);
        if (!same_dir(ckpt_dir, o->out)) {
            if (ckpt_count(o->out) > 0) {
                fprintf(stderr, "byol train: --out %s already holds another run (ckpt-*.safetensors): choose an empty "
                                "--out for the resumed run, or leave --out out to continue in %s\n", o->out, ckpt_dir);
                return 1;
            }
        } else {
            char aside[4400];
            int moved = run_dir_set_aside_newer(o->out, start_step, aside, sizeof aside, e);
            if (moved < 0 || metrics_drop_after(path, start_step, NULL, e) < 0) {
                fprintf(stderr, "byol train: %s\n", e->msg);
                return 1;
            }
            if (moved)
                printf("byol train: resuming from step %lld, an older checkpoint than the folder's newest: its %d newer "
                       "checkpoint%s and their metrics were moved to %s\n", (long long)start_step, moved,
                       moved == 1 ? "" : "s", aside);
        }
    } else if (ckpt_count(o->out) > 0) {
        fprintf(stderr, "byol train: --out %s already holds a run (ckpt-*.safetensors): --resume %s to continue it, "
                        "or choose another --out\n", o->out, o->out);
        return 1;
    }
    snprintf(path, sizeof path, "%s/config.txt", o->out);
    if (atomic_write_file(path, config, strlen(config), e)) {
        fprintf(stderr, "byol train: %s\n", e->msg);
        return 1;
    }
    return 0;
}

/* kNN top-1 of an encoder (a network's store: the online or the target one): train split as the
 * bank, test split scored (subsets of max_bank / max_query images, evenly spaced; 0 = all). -1
 * when the dataset has no labels. */
static double knn_of(const Byol *m, const ParamStore *net, const Dataset *ds, const FeatureConfig *base,
                     int max_bank, int max_query, int k, float T, Err *e) {
    if (!ds->n_classes || !ds->split[SPLIT_TRAIN].labels || !ds->split[SPLIT_TEST].n ||
        !ds->split[SPLIT_TEST].labels)
        return -1;
    FeatureConfig fc = *base;
    float *fb, *fq;
    int32_t *lb, *lq;
    int d;
    fc.max_images = max_bank;
    int nb = extract_features(&m->encoder, net->params, net->buffers, ds, SPLIT_TRAIN, &fc, &fb, &lb, &d, e);
    if (nb < 0) return -2;
    fc.max_images = max_query;
    int nq = extract_features(&m->encoder, net->params, net->buffers, ds, SPLIT_TEST, &fc, &fq, &lq, &d, e);
    if (nq < 0) {
        xfree(fb), free(lb);
        return -2;
    }
    double acc = knn_top1(fb, lb, nb, fq, lq, nq, d, ds->n_classes, k, T, e);
    xfree(fb), xfree(fq), free(lb), free(lq);
    return acc;
}

static double knn_monitor(const Byol *m, const Dataset *ds, const FeatureConfig *base, int max_bank,
                          int max_query, int k, float T, Err *e) {
    return knn_of(m, &m->online, ds, base, max_bank, max_query, k, T, e);
}

/* What the kNN monitor measures (bank, queries, k capped at the bank), or why there is none:
 * one line at the start. Returns whether there is a monitor. */
static int knn_monitor_describe(const Dataset *ds, const TrainOptions *o) {
    if (!o->knn_before && !o->knn_after && !o->eval_every) return 0;
    if (!ds->n_classes || !ds->split[SPLIT_TRAIN].labels || !ds->split[SPLIT_TEST].n || !ds->split[SPLIT_TEST].labels) {
        printf("  no kNN monitor: %s has no labelled %s split (the monitor scores labelled test images against "
               "the train images)\n", ds->root, ds->split[SPLIT_TEST].n ? "train and test" : "test");
        return 0;
    }
    const int n_train = ds->split[SPLIT_TRAIN].n, n_test = ds->split[SPLIT_TEST].n;
    const int bank = o->eval_bank && o->eval_bank < n_train ? o->eval_bank : n_train;
    const int queries = o->eval_queries && o->eval_queries < n_test ? o->eval_queries : n_test;
    const int k = knn_effective_k(o->knn_k, bank);
    char capped[96] = "";
    if (k != o->knn_k) snprintf(capped, sizeof capped, " (--knn-k %d capped at the bank's %d images)", o->knn_k, bank);
    printf("  kNN monitor: %d train images as the bank, %d test queries, k %d%s, T %g\n", bank, queries, k, capped,
           o->knn_t);
    return 1;
}

/* A checkpoint with what a resume, eval, export or embed needs besides the tensors; then only
 * the newest --keep are kept. `elapsed` is the training time spent since the run began, so that
 * a resumed --time-budget run goes on with the same clock. */
static int save_run_checkpoint(const Byol *m, const TrainOptions *o, int64_t step, long spe, long skipped,
                               double elapsed, const char *config, const char *mean_s, const char *std_s, char *cp,
                               size_t cap, Err *e) {
    char step_s[32], epoch_s[32], skipped_s[32], elapsed_s[32];
    snprintf(step_s, sizeof step_s, "%lld", (long long)step);
    snprintf(epoch_s, sizeof epoch_s, "%.4f", (double)step / spe);
    snprintf(skipped_s, sizeof skipped_s, "%ld", skipped);
    snprintf(elapsed_s, sizeof elapsed_s, "%.3f", elapsed);
    char *plan = conv_plan_to_text(); /* the kernels a resume must run to go on bit for bit */
    StMeta meta[] = {{"byol.config", (char *)config}, {"byol.step", step_s}, {"byol.epoch", epoch_s},
                     {"byol.mean", (char *)mean_s}, {"byol.std", (char *)std_s}, {"byol.skipped", skipped_s},
                     {"byol.elapsed", elapsed_s}, {"byol.plan", plan}, {"byol.format", "1"}};
    int rc = ckpt_save(m, o->out, step, meta, (int)ARRAY_LEN(meta), cp, cap, e);
    xfree(plan);
    if (rc) return -1;
    ckpt_prune(o->out, o->keep);
    return 0;
}

/* Fault injection for tests: BYOL_FAULT_NAN_STEPS="5,9" puts a NaN into the views of steps 5
 * and 9 (counted from 1 over the whole run), as a corrupt image or an overflow would. Parsed
 * once at start; at most FAULT_MAX_STEPS steps are taken from the list. */
enum { FAULT_MAX_STEPS = 64 };
typedef struct {
    int64_t steps[FAULT_MAX_STEPS];
    int n;
} FaultSteps;

static FaultSteps fault_steps_from_env(void) {
    FaultSteps f = {.n = 0};
    for (const char *p = getenv("BYOL_FAULT_NAN_STEPS"); p && *p && f.n < FAULT_MAX_STEPS;) {
        char *end;
        long long s = strtoll(p, &end, 10);
        if (end == p) break;
        f.steps[f.n++] = s;
        p = *end == ',' ? end + 1 : end;
    }
    return f;
}

/* BYOL_FAULT_SLOW_RANK=R: rank R reports three times its compute time to the shard balance, as a
 * rank on a slower core would (tests of --balance). */
static int fault_slow_rank(void) {
    const char *v = getenv("BYOL_FAULT_SLOW_RANK");
    return v && *v ? atoi(v) : -1;
}

/* BYOL_FAULT_SIGNAL_AT=PHASE: the process sends itself SIGINT as PHASE begins (final-checkpoint,
 * final-knn), as a Ctrl-C at that moment would (tests of what a late signal does). */
static void fault_signal_at(const char *phase) {
    const char *v = getenv("BYOL_FAULT_SIGNAL_AT");
    if (v && strcmp(v, phase) == 0) raise(SIGINT);
}

/* BYOL_FAULT_SLOW_KNN=S: each kNN check during training takes S seconds longer, as on a large
 * bank (tests of the images/s figure that follows it). */
static void fault_slow_knn(void) {
    const char *v = getenv("BYOL_FAULT_SLOW_KNN");
    if (v && *v) usleep((useconds_t)(atof(v) * 1e6));
}

static int fault_nan_at(const FaultSteps *f, int64_t step) {
    for (int i = 0; i < f->n; i++)
        if (f->steps[i] == step) return 1;
    return 0;
}

/* The step's work for views of `size` px: the activations, the data-parallel reducers and the
 * loss's extras (at the start, and again at each change of --size-schedule). */
static void train_work_init(ByolWork *w, Byol *m, const TrainOptions *o, int b, int channels, int size, float var_w,
                            float cov_w, const Backend *be) {
    byol_work_init_crops(w, m, b, channels, size, size, o->local_crops, o->local_size, be);
    byol_work_distribute(w, m, o->sync_bn, o->batch);
    byol_work_set_loss(w, o->local_weight, var_w, cov_w);
}

enum { MAX_SKIPS_IN_A_ROW = 20 }; /* --on-nan skip: beyond this the run has diverged */

static void format_eta(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, cap, "--");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

/* The warm-up: --warmup-epochs (epoch runs only) or --warmup-frac of the run; by default 10
 * epochs, at most 10% of an epoch run, and 10% of a --time-budget. Fills the value in effect into
 * the options, so that the saved configuration says it. */
static int resolve_warmup(TrainOptions *o, long spe, long total, long *warmup_steps, double *warmup_frac, Err *e) {
    const int epochs_given = o->warmup_epochs >= 0, frac_given = !isnan(o->warmup_frac);
    if (epochs_given && frac_given)
        return err_set(e, "--warmup-epochs %g and --warmup-frac %g: give one of them", o->warmup_epochs, o->warmup_frac);
    if (o->time_budget > 0) {
        if (epochs_given)
            return err_set(e, "--warmup-epochs %g: a --time-budget run has no fixed number of epochs; give the "
                              "warm-up as a share of the budget with --warmup-frac (e.g. 0.1)", o->warmup_epochs);
        if (!frac_given) o->warmup_frac = 0.1f;
        o->warmup_epochs = NAN;
        *warmup_frac = o->warmup_frac;
        *warmup_steps = 0;
        return 0;
    }
    long w = frac_given ? lround(o->warmup_frac * (double)total)
           : epochs_given ? lround(o->warmup_epochs * (double)spe) : (long)fmin(10.0 * spe, 0.1 * total);
    if (w > total) w = total;
    *warmup_steps = w;
    *warmup_frac = total ? (double)w / total : 0;
    if (!frac_given) o->warmup_epochs = (float)((double)w / spe);
    return 0;
}

/* The same scalars as metrics.jsonl into the run's TensorBoard file; a write that fails is said
 * once and ends the TensorBoard log, not the training (metrics.jsonl has everything). */
static void tb_log(TbWriter *tb, int64_t step, const char *const *tags, const double *values, int n) {
    Err e;
    if (!tb->f) return;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    if (tb_scalars(tb, step, t.tv_sec + t.tv_nsec * 1e-9, tags, values, n, &e)) {
        fprintf(stderr, "byol train: warning: %s; TensorBoard logging stops (metrics.jsonl goes on)\n", e.msg);
        tb_close(tb);
    }
}

int train_run(TrainOptions *o, const TrainSetup *s, TrainResult *result) {
    Err e;
    int rc;
    const Backend *be = s->be;
    const CkptMeta *meta = s->meta;
    const char *ckpt_path = s->ckpt_path;
    int64_t start_step = o->resume ? meta->step : 0;
    long n_skipped = o->resume ? meta->skipped : 0; /* steps refused for non-finite values, over the whole run */
    double final_knn = -1;
    if (train_options_resolve(o, &e)) {
        fprintf(stderr, "byol train: %s\n", e.msg);
        return 2;
    }
    const int sgd = strcmp(o->optimizer, "sgd") == 0;
    const int tau_constant = strcmp(o->tau_schedule, "constant") == 0;
    if (!tau_constant && strcmp(o->tau_schedule, "cosine") != 0) {
        fprintf(stderr, "byol train: --tau-schedule %.64s: neither cosine nor constant\n", o->tau_schedule);
        return 2;
    }
    /* A resumed run runs the kernels the checkpoint's run chose: each choice rounds differently,
     * and with the same kernels and threads the resumed run goes on bit for bit. */
    int replanned = 0;
    if (o->resume && meta->plan && conv_plan_mode() == PLAN_MEASURE) replanned = conv_plan_load_text(meta->plan, &e);
    Dataset ds;
    if (data_open(&ds, &o->data, stderr, &e)) {
        if (!o->data.data && access(DEFAULT_DATA, R_OK) != 0)
            fprintf(stderr, "byol train: no data: the default is Fashion-MNIST from Debian's dataset-fashion-mnist "
                            "(apt-get install dataset-fashion-mnist), or pass --data PATH\n");
        else
            fprintf(stderr, "byol train: %s\n", e.msg);
        return 1;
    }
    rc = 1;
    Split split = o->split_unlabeled && ds.split[SPLIT_UNLABELED].n ? SPLIT_UNLABELED : SPLIT_TRAIN;
    AugConfig ac;
    ByolWork work = {0};
    ShardPlan plan = {0};
    Loader *loader = NULL;
    Byol model;
    memset(&model, 0, sizeof model);
    FILE *metrics = NULL;
    TbWriter tb = {0}; /* the TensorBoard file beside metrics.jsonl */
    RunLock lock = {-1};
    Safetensors init_st = {0}; /* --init's file */
    const char *init_prefix = "";
    if (data_aug_config(&ac, &o->data, &ds, &e)) {
        fprintf(stderr, "byol train: %s\n", e.msg);
        goto done_data;
    }
    if (o->init && !o->resume) {
        if (st_open(&init_st, o->init, &e) || init_encoder_config(o, &init_st, &init_prefix, &e)) {
            fprintf(stderr, "byol train: %s%s\n", strncmp(e.msg, "--init", 6) ? "--init: " : "", e.msg);
            goto done_data;
        }
        printf("byol train: --init %s: %s width %d, %s stem, %d-channel images\n", o->init, arch_name(o->mc.enc.arch),
               o->mc.enc.width, stem_name(o->mc.enc.stem), o->mc.enc.in_channels);
    }
    if (o->mc.enc.in_channels != ds.channels) {
        if (o->resume) { /* the model's first layer was trained on the checkpoint's images */
            fprintf(stderr, "byol train: --resume %s: the checkpoint's encoder takes %d-channel images, but %s has "
                            "%d-channel images (resume with the run's own --data, or start a new run with --out)\n",
                    ckpt_path, o->mc.enc.in_channels, ds.root, ds.channels);
            goto done_data;
        }
        if (o->in_channels_given) {
            if (o->init)
                fprintf(stderr, "byol train: --init %s: its encoder takes %d-channel images, but %s has %d-channel "
                                "images\n", o->init, o->mc.enc.in_channels, ds.root, ds.channels);
            else
                fprintf(stderr, "byol train: --in-channels %d but %s has %d-channel images\n", o->mc.enc.in_channels,
                        ds.root, ds.channels);
            goto done_data;
        }
        o->mc.enc.in_channels = ds.channels;
    }
    /* Normalization: the checkpoint's when resuming, else the split's statistics. */
    if (o->resume && meta->has_norm) {
        memcpy(ac.mean, meta->mean, sizeof ac.mean);
        memcpy(ac.std, meta->std, sizeof ac.std);
    } else if (dataset_channel_stats(&ds, split, 10000, ac.image_size, ac.mean, ac.std, &e) < 0) {
        fprintf(stderr, "byol train: %s\n", e.msg);
        goto done_data;
    }
    /* the short-budget recipe's batch of 256 is lowered to what a small dataset holds (the
     * ranks' multiple of 2); a batch the user gives is refused below instead */
    const int recipe_batch = o->batch;
    if (o->budget_recipe && ds.split[split].n < o->batch)
        o->batch = MAX(2 * dist_size(), ds.split[split].n - ds.split[split].n % (2 * dist_size()));
    const int S = ac.image_size, B = o->batch;
    SizeSchedule sizes;
    if (size_schedule_parse(&sizes, o->size_schedule, S, &e)) {
        fprintf(stderr, "byol train: %s\n", e.msg);
        goto done_data;
    }
    /* Multi-crop: the local views' augmentation is the global one at their size and scales */
    AugConfig local_ac = ac;
    if (o->local_crops) {
        if (!o->local_size) o->local_size = MAX(S / 2, 1);
        double lo, hi;
        char tail;
        if (sscanf(o->local_scale, "%lf,%lf%c", &lo, &hi, &tail) != 2 || !(lo > 0 && lo <= hi && hi <= 1)) {
            fprintf(stderr, "byol train: --local-scale %.64s: two area fractions, min,max with 0 < min <= max <= 1 "
                            "(0.05,0.4)\n", o->local_scale);
            goto done_data;
        }
        const int smallest = size_schedule_min(&sizes, S);
        if (o->local_size > smallest || o->local_crops > MAX_LOCAL_CROPS) {
            fprintf(stderr, "byol train: --local-size %d, --local-crops %d: at most the %s (%d) and %d views\n",
                    o->local_size, o->local_crops, sizes.n ? "smallest size of --size-schedule" : "image size",
                    smallest, MAX_LOCAL_CROPS);
            goto done_data;
        }
        if (o->mc.no_stop_grad) {
            fprintf(stderr, "byol train: --local-crops with --no-stop-grad: not built (the ablation takes two views)\n");
            goto done_data;
        }
        local_ac.image_size = o->local_size;
        local_ac.crop_scale_min = (float)lo, local_ac.crop_scale_max = (float)hi;
    }
    const size_t local_image = (size_t)ds.channels * o->local_size * o->local_size;
    const int n_images = ds.split[split].n;
    /* Data-parallel: --batch is the global batch; rank r trains on its shard of b = B/P images. */
    const int P = dist_size(), rank = dist_rank(), root = rank == 0;
    if (B % P != 0 || B / P < 2) {
        if (root)
            fprintf(stderr, "byol train: --batch %d does not split into %d equal shards of at least 2 images "
                            "(one per rank)\n", B, P);
        goto done_data;
    }
    /* The shard cuts: equal, or moved each step towards the ranks' speeds (--balance); the
     * loader makes the images a rank's shard can reach. */
    shard_plan_init(&plan, B, P, o->balance);
    int reach_first, reach;
    shard_plan_reach(&plan, rank, &reach_first, &reach);
    const int b = shard_plan_max(&plan);
    if (n_images < B) {
        fprintf(stderr, "byol train: %s: the %s split has %d images, fewer than one batch of %d (lower --batch)\n",
                ds.root, SPLIT_NAMES[split], n_images, B);
        goto done_data;
    }
    const long spe = n_images / B, total = (long)o->epochs * spe;
    long warmup = 0;
    double warmup_frac = 0;
    if (resolve_warmup(o, spe, total, &warmup, &warmup_frac, &e)) {
        fprintf(stderr, "byol train: %s\n", e.msg);
        goto done_data;
    }
    const double lr_peak = o->base_lr * B / 256.0;
    float var_w, cov_w;
    if (var_cov_parse(o->var_cov, &var_w, &cov_w, &e)) {
        fprintf(stderr, "byol train: %s\n", e.msg);
        goto done_data;
    }
    if ((var_w > 0 || cov_w > 0) && !be->var_cov_loss) {
        fprintf(stderr, "byol train: --var-cov %s: not built for the %s backend (use --device cpu)\n", o->var_cov,
                be->name);
        goto done_data;
    }
    /* The view size of the phase the run starts in (a resumed run: the one it stopped in), and
     * how many floats an image of that size takes in a batch. */
    const double start_frac = o->time_budget > 0 ? meta->elapsed_s / o->time_budget : total ? (double)start_step / total : 0;
    int phase = size_schedule_phase(&sizes, start_frac);
    int view_size = sizes.n ? sizes.size[phase] : S;
    size_t image = (size_t)ds.channels * view_size * view_size;
    /* The stem follows the image size unless given: the CIFAR stem keeps full resolution through
     * the first stage, which at 224 px costs about 7x the time of the ImageNet stem's /4. */
    if (!o->resume && !o->stem_given) o->mc.enc.stem = S > 64 ? STEM_IMAGENET : STEM_CIFAR;

    /* The model's weights first (a bad --init or checkpoint leaves no folder behind), then the
     * run's folder: rank 0 writes everything in it. */
    int setup_failed = 0;
    byol_init(&model, &o->mc);
    if (o->resume) {
        setup_failed = state_load_from(&model, s->resume_st, &e) != 0;
        if (setup_failed)
            fprintf(stderr, "byol train: --resume %s: %s%s\n", ckpt_path, e.msg,
                    o->allow_change ? " (--allow-change cannot change the network's shape: a resumed run keeps its model)" : "");
    } else {
        byol_init_weights(&model, (uint64_t)o->seed);
        if (o->init && (setup_failed = state_load_encoder(&model, &init_st, init_prefix, &e) != 0))
            fprintf(stderr, "byol train: --init: %s\n", e.msg);
    }
    if (dist_allreduce_max(setup_failed, "loading the weights") > 0) goto done_model;
    o->data.image_size = S; /* the effective configuration: with the dataset's figures filled in */
    char *config = s->config_text(s->config_ctx);
    char path[4400];
    if (root) setup_failed = setup_run_dir(o, ckpt_path, start_step, config, &lock, &e);
    if (dist_allreduce_max(setup_failed, "setting up the run folder") > 0) { /* all ranks stop together */
        free(config);
        goto done_model;
    }
    LoaderConfig lc = {&ds, split, ac, reach, (uint64_t)o->seed, o->workers, 2, start_step, reach_first, B,
                       o->local_crops, local_ac, NULL, 0, 0};
    lc.aug.image_size = view_size;
    if (!setup_failed) {
        loader = loader_create(&lc, &e);
        if (!loader) {
            fprintf(stderr, "byol train: %s\n", e.msg);
            setup_failed = 1;
        }
    }
    if (!setup_failed && root) {
        snprintf(path, sizeof path, "%s/metrics.jsonl", o->out);
        metrics = fopen(path, o->resume ? "a" : "w");
        if (!metrics) {
            fprintf(stderr, "byol train: %s: cannot write: %s\n", path, strerror(errno));
            setup_failed = 1;
        } else if (tb_open(&tb, o->out, &e)) { /* a resumed run adds a file: TensorBoard reads them all */
            fprintf(stderr, "byol train: %s\n", e.msg);
            setup_failed = 1;
        }
    }
    if (dist_allreduce_max(setup_failed, "starting the run") > 0) {
        free(config);
        goto done_model;
    }
    byol_broadcast_state(&model); /* every rank starts from rank 0's bits */
    byol_place(&model, be); /* checkpoints are the same files on every device */
    train_work_init(&work, &model, o, b, ds.channels, view_size, var_w, cov_w, be);

    char mean_s[64], std_s[64];
    snprintf(mean_s, sizeof mean_s, "%.9g %.9g %.9g", ac.mean[0], ac.mean[1], ac.mean[2]);
    snprintf(std_s, sizeof std_s, "%.9g %.9g %.9g", ac.std[0], ac.std[1], ac.std[2]);
    FeatureConfig fc = {S, {ac.mean[0], ac.mean[1], ac.mean[2]}, {ac.std[0], ac.std[1], ac.std[2]}, 256, 0, 0, be, 0};
    const int tty = isatty(STDOUT_FILENO);
    printf("byol train: %s, %s %s (%d images, %dx%d, %d ch), %s width %d %s stem, heads %d/%d/%d, %s\n",
           method_name(o->mc.method), ds.kind, SPLIT_NAMES[split], n_images, S, S, ds.channels,
           arch_name(o->mc.enc.arch), o->mc.enc.width, stem_name(o->mc.enc.stem), o->mc.proj_hidden, o->mc.proj_dim,
           o->mc.pred_hidden, o->optimizer);
    if (P > 1) {
        char balanced[64] = "";
        if (plan.margin > 0) snprintf(balanced, sizeof balanced, ", balanced by speed up to %d either way", plan.margin);
        printf("  %d ranks x %d images%s (data-parallel, %s batch norm, %s)\n", P, B / P, balanced,
               o->sync_bn ? "synchronized" : "per-rank", dist_summary());
    }
    if (!o->resume && !o->stem_given)
        printf("  %s stem for %d px images (--stem to choose)\n", stem_name(o->mc.enc.stem), S);
    char plan_line[512];
    conv_plan_summary(plan_line, sizeof plan_line);
    printf("  %s\n", plan_line);
    if (replanned > 0)
        printf("  %d kernel choices of the checkpoint's plan do not apply to this CPU's vector width: chosen again "
               "(the run goes on with other rounding)\n", replanned);
    if (o->time_budget > 0)
        printf("  batch %d, time budget %g s (%.4g s spent), warm-up %g%% of it, lr %.4g (base %.3g x %d/256), "
               "tau %.4g -> 1, out %s\n", B, o->time_budget, meta->elapsed_s, 100 * warmup_frac, lr_peak, o->base_lr, B,
               o->tau_base, o->out);
    else
        printf("  batch %d, %d epochs x %ld steps, warm-up %ld steps, lr %.4g (base %.3g x %d/256), tau %.4g -> 1, "
               "out %s\n", B, o->epochs, spe, warmup, lr_peak, o->base_lr, B, o->tau_base, o->out);
    if (o->budget_recipe) { /* the values train_options_budget_recipe set */
        printf("  the short-budget recipe (--time-budget and no recipe flag): width %d, heads %d/%d/%d, batch %d",
               o->mc.enc.width, o->mc.proj_hidden, o->mc.proj_dim, o->mc.pred_hidden, B);
        if (B != recipe_batch) printf(" (%d is more than the %d images)", recipe_batch, ds.split[split].n);
        printf(", base lr %g (predictor x%g), weight decay %g, --var-cov %s, --size-schedule %s\n", o->base_lr,
               o->pred_lr_mult, o->weight_decay, o->var_cov, o->size_schedule);
    }
    if (sizes.n) {
        printf("  size schedule:");
        for (int i = 0; i < sizes.n; i++)
            printf(" %d px to %.3g%%%s", sizes.size[i], 100 * sizes.end[i], i + 1 < sizes.n ? "," : "");
        printf(" of the %s\n", o->time_budget > 0 ? "budget" : "steps");
    }
    knn_monitor_describe(&ds, o);
    fflush(stdout);

    if (start_step == 0 && o->knn_before) {
        double acc = knn_monitor(&model, &ds, &fc, o->eval_bank, o->eval_queries, o->knn_k, o->knn_t, &e);
        if (acc < -1.5) {
            fprintf(stderr, "byol train: %s\n", e.msg);
            free(config);
            goto done_model;
        }
        if (acc >= 0) {
            /* with --init the step-0 encoder is the file's, not an untrained one */
            printf("kNN top-1 before training (%s encoder): %.2f%%\n", o->init ? "the --init" : "untrained", 100 * acc);
            if (metrics) {
                fprintf(metrics, "{\"step\": 0, \"epoch\": 0, \"knn_top1\": %.6f, \"%s\": true}\n", acc,
                        o->init ? "init" : "untrained");
                fflush(metrics);
                tb_log(&tb, 0, (const char *const[]){o->init ? "knn/init_top1" : "knn/untrained_top1"}, &acc, 1);
            }
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART; /* a write or read the signal interrupts goes on: the handler only sets a flag */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* the predictor's parameters follow the online encoder and projector's in the buffer */
    /* --pred-lr-constant (SimSiam's): the predictor keeps the peak rate (times --pred-lr-mult): tail_absolute */
    StepConfig sc = {{.lr = (float)lr_peak, .weight_decay = o->weight_decay, .momentum = o->momentum,
                      .eta = o->lars_eta, .mult_from = model.pred_from,
                      .lr_mult = o->pred_lr_constant ? (float)(lr_peak * o->pred_lr_mult) : o->pred_lr_mult,
                      .sgd = sgd, .tail_absolute = o->pred_lr_constant},
                     o->tau_base,
                     {o->dino_teacher_temp, o->dino_student_temp, o->dino_center_momentum, o->dino_center}};
    if (strcmp(o->optimizer, "adamw") == 0) { /* PyTorch's defaults */
        sc.lars.adamw = 1;
        sc.lars.beta1 = 0.9f, sc.lars.beta2 = 0.999f, sc.lars.eps = 1e-8f;
    }
    /* DINO's teacher temperature warms up over a share of the run, at most 30 epochs */
    const double dino_warm = o->time_budget > 0 ? o->dino_teacher_temp_warmup
                                                : fmin(o->dino_teacher_temp_warmup, 30.0 * spe / fmax(total, 1));
    const int dino = o->mc.method == METHOD_DINO;
    double *cwork = xmalloc(collapse_work_doubles(b, o->mc.proj_dim) * sizeof(double), "collapse monitor");
    /* The run's clock: the training time of earlier processes of this run (a resumed run), then
     * this one's. A --time-budget run ends when their sum reaches the budget. */
    const double t_start = now_seconds(), elapsed0 = meta->elapsed_s;
    double t_log = t_start;
    int64_t saved_step = -1; /* the newest checkpoint this run wrote: its step and path */
    char saved_path[4400] = "";
    long log_images = 0;
    int64_t step = start_step;
    int collapse_warned = 0, stop_signal = 0, skips_in_a_row = 0;
    rc = 0;
    double last_knn = -1, last_ckpt_elapsed = elapsed0, last_knn_s = elapsed0;
    int finished = 0; /* the schedule ran to its end (not stopped by a signal or --max-steps) */
    int ckpt_failed = 0;
    const FaultSteps faults = fault_steps_from_env();
    const int slow_rank = fault_slow_rank();
    for (;;) {
        double elapsed = elapsed0 + now_seconds() - t_start;
        if (P > 1) { /* the ranks agree on the clock, a signal and a failed checkpoint */
            double agree[3] = {elapsed, (double)g_signal, (double)ckpt_failed};
            dist_heartbeat(step);
            dist_allreduce_max_f64(agree, 3, "the start of a step");
            elapsed = agree[0];
            if (agree[1] > 0 && !g_signal) g_signal = (int)agree[1];
            if (agree[2] > 0) {
                rc = 1;
                break;
            }
            if (g_signal) {
                stop_signal = g_signal;
                break;
            }
        }
        double frac; /* progress in [0, 1] */
        if (o->time_budget > 0) {
            frac = elapsed / o->time_budget;
            if (frac >= 1) {
                finished = 1;
                break;
            }
        } else {
            if (step >= total) {
                finished = 1;
                break;
            }
            frac = (double)step / total;
        }
        if (o->max_steps > 0 && step >= o->max_steps) { /* as if interrupted here (tests) */
            stop_signal = -1;
            break;
        }
        const long K = 1000000; /* schedules as a function of progress */
        const long kk = o->time_budget > 0 ? (long)(frac * K) : step;
        const long kt = o->time_budget > 0 ? K : total;
        const long kw = o->time_budget > 0 ? (long)(K * warmup_frac) : warmup;
        sc.lars.lr = (float)lr_at_step(kk, kt, kw, lr_peak);
        sc.tau = tau_constant ? o->tau_base : (float)tau_at_step(kk, kt, o->tau_base);
        sc.lars.step = step + 1; /* AdamW's bias correction: the steps taken, this one included */
        if (dino) {
            const double f = dino_warm > 0 ? fmin(frac / dino_warm, 1.0) : 1.0;
            sc.dino.teacher_temp = (float)(o->dino_warmup_teacher_temp +
                                           f * (o->dino_teacher_temp - o->dino_warmup_teacher_temp));
        }

        if (sizes.n && size_schedule_phase(&sizes, frac) != phase) {
            /* the next size: a loader and activations for it, from this step on (the
             * batches are the same draws at another size) */
            phase = size_schedule_phase(&sizes, frac);
            view_size = sizes.size[phase];
            image = (size_t)ds.channels * view_size * view_size;
            loader_destroy(loader);
            lc.aug.image_size = view_size;
            lc.start_step = step;
            loader = loader_create(&lc, &e);
            if (!loader) die("byol train: %s", e.msg); /* it opened at the first size */
            byol_work_free(&work);
            train_work_init(&work, &model, o, b, ds.channels, view_size, var_w, cov_w, be);
            if (root && !o->quiet)
                printf("%sstep %lld: views of %d px from here\n", tty ? "\n" : "", (long long)step, view_size);
        }
        Batch bt = loader_next(loader);
        const size_t at = (size_t)(plan.cut[rank] - reach_first) * image;
        if (fault_nan_at(&faults, step + 1)) ((float *)bt.views)[at] = NAN;
        byol_work_set_shard(&work, plan.cut[rank + 1] - plan.cut[rank]);
        const float *locals[MAX_LOCAL_CROPS];
        for (int l = 0; l < o->local_crops; l++)
            locals[l] = bt.local_views + ((size_t)l * reach + plan.cut[rank] - reach_first) * local_image;
        const float loss = byol_step_crops(&model, &work, bt.views + at, bt.views + (size_t)reach * image + at,
                                           locals, &sc, be);
        shard_plan_update(&plan, rank, work.compute_seconds * (rank == slow_rank ? 3 : 1));
        step++;
        log_images += B;
        if (work.refused) { /* nothing was updated: the model is still the previous step's */
            char what[256];
            if (work.bad_tensor >= 0)
                snprintf(what, sizeof what, "loss %g, first non-finite gradient: %s", loss,
                         model.online.specs[work.bad_tensor].name);
            else
                snprintf(what, sizeof what, "loss %g", loss);
            if (o->skip_nonfinite && ++skips_in_a_row <= MAX_SKIPS_IN_A_ROW) {
                n_skipped++;
                if (root)
                    fprintf(stderr, "%sbyol train: warning: step %lld: %s; step skipped (--on-nan skip; %ld so far)\n",
                            tty ? "\n" : "", (long long)step, what, n_skipped);
                if (metrics) {
                    fprintf(metrics, "{\"step\": %lld, \"epoch\": %.4f, \"skipped\": %ld}\n", (long long)step,
                            (double)step / spe, n_skipped);
                    fflush(metrics);
                }
            } else {
                if (root) {
                    if (o->skip_nonfinite)
                        fprintf(stderr, "%sbyol train: step %lld: %s; %d steps in a row were not finite, so the run "
                                        "has diverged (lower --base-lr)", tty ? "\n" : "", (long long)step, what,
                                MAX_SKIPS_IN_A_ROW + 1);
                    else
                        fprintf(stderr, "%sbyol train: step %lld: %s; the step was not applied (lower --base-lr, or "
                                        "--on-nan skip to drop such steps)", tty ? "\n" : "", (long long)step, what);
                    if (saved_path[0]) fprintf(stderr, "; the last good checkpoint is %s\n", saved_path);
                    else if (o->resume) fprintf(stderr, "; the last good checkpoint is %s\n", ckpt_path);
                    else fprintf(stderr, "; no checkpoint was written yet\n");
                }
                rc = 1;
                break;
            }
        } else {
            skips_in_a_row = 0;
        }
        const int epoch_end = step % spe == 0;
        const double now = now_seconds();
        if (!work.refused && (step % o->log_every == 0 || epoch_end || step == total)) { /* a skipped step has no figures */
            CollapseStats cs; /* of this rank's shard of projections */
            collapse_stats(work.proj.out, work.n, o->mc.proj_dim, &cs, cwork);
            const double ips = log_images / fmax(now - t_log, 1e-9);
            const double mean_cos = method_loss_mean_cos(o->mc.method, loss); /* NAN for DINO */
            if (metrics) {
                fprintf(metrics, "{\"step\": %lld, \"epoch\": %.4f, \"loss\": %.7g, \"lr\": %.6g, \"tau\": %.7g, "
                                 "\"images_per_s\": %.2f, \"proj_std\": %.5f, \"eff_rank\": %.3f, \"elapsed_s\": %.3f",
                        (long long)step, (double)step / spe, loss, sc.lars.lr, sc.tau, ips, cs.std_sqrt_d,
                        cs.eff_rank, elapsed0 + now - t_start);
                if (!dino) /* how closely predictions match targets: 1 is the trivial solution's */
                    fprintf(metrics, ", \"mean_cos\": %.6f", mean_cos);
                if (var_w > 0 || cov_w > 0) fprintf(metrics, ", \"var_cov\": %.6g", work.var_cov_loss);
                if (sizes.n) fprintf(metrics, ", \"image_size\": %d", view_size);
                if (dino) /* DINO's collapse monitors: the teacher's entropy (0: one prototype, ln K:
                           * uniform) and the KL between teacher and student */
                    fprintf(metrics, ", \"teacher_temp\": %.5f, \"teacher_entropy\": %.5f, \"entropy_uniform\": %.5f, "
                                     "\"kl\": %.6g", sc.dino.teacher_temp, work.dino_entropy, log((double)o->mc.dino_out),
                            work.dino_kl);
                fprintf(metrics, "}\n");
                fflush(metrics);
                static const char *const tags[] = {"loss", "lr", "tau", "images_per_s", "collapse/std_sqrt_d",
                                                   "collapse/eff_rank", "collapse/mean_cos", "dino/teacher_temp",
                                                   "dino/teacher_entropy", "dino/kl"};
                const double v[] = {loss, sc.lars.lr, sc.tau, ips, cs.std_sqrt_d, cs.eff_rank, mean_cos,
                                    dino ? sc.dino.teacher_temp : NAN, dino ? work.dino_entropy : NAN,
                                    dino ? work.dino_kl : NAN};
                tb_log(&tb, step, tags, v, (int)ARRAY_LEN(tags));
            }
            /* cheap insurance that the ranks still train one model */
            if (P > 1 && step % (o->log_every * 10) == 0)
                dist_check_identical(model.online.params, model.online.n_params, step);
            double left = o->time_budget > 0 ? o->time_budget - (elapsed0 + now - t_start)
                                             : (total - step) * (double)B / fmax(ips, 1e-9);
            char eta[32];
            format_eta(eta, sizeof eta, left);
            if (o->quiet)
                ;
            else if (tty)
                printf("\r\033[Kepoch %.2f  step %lld/%ld  loss %.4f  lr %.3g  tau %.5f  %.0f img/s  std %.2f  rank %.1f  ETA %s",
                       (double)step / spe, (long long)step, o->time_budget > 0 ? 0 : total, loss, sc.lars.lr, sc.tau, ips,
                       cs.std_sqrt_d, cs.eff_rank, eta);
            else if (step % (o->log_every * 10) == 0 || epoch_end)
                printf("epoch %.2f step %lld loss %.5f lr %.4g tau %.6f %.1f img/s proj_std %.3f eff_rank %.1f ETA %s\n",
                       (double)step / spe, (long long)step, loss, sc.lars.lr, sc.tau, ips, cs.std_sqrt_d, cs.eff_rank, eta);
            fflush(stdout);
            const CollapseSign sign = collapse_sign(&cs, mean_cos);
            if (root && sign != COLLAPSE_NONE && !collapse_warned) {
                fprintf(stderr, "%sbyol train: warning: step %lld: the projections are collapsing, %s (std x sqrt(D) "
                                "%.3f, effective rank %.1f of %d, prediction-target cosine %.3f); features may stop "
                                "improving: try a lower --base-lr, a higher --tau-base, or milder augmentations\n",
                        tty ? "\n" : "", (long long)step,
                        sign == COLLAPSE_STD    ? "all alike"
                        : sign == COLLAPSE_RANK ? "into a few directions"
                                                : "shrinking while predictions match their targets",
                        cs.std_sqrt_d, cs.eff_rank, o->mc.proj_dim, mean_cos);
                collapse_warned = 1;
            }
            t_log = now;
            log_images = 0;
        }
        const int last = o->time_budget > 0 ? 0 : step == total;
        const double t_extra = now_seconds(); /* the kNN check, plot and checkpoint: not training */
        /* --knn-every-s (the collapse lab): kNN of the online encoder and of the target's (the
         * online one for SimSiam, which has none) every so many seconds of the run's clock */
        if (o->knn_every_s > 0 && elapsed - last_knn_s >= o->knn_every_s && root) {
            const double on_acc = knn_monitor(&model, &ds, &fc, o->eval_bank, o->eval_queries, o->knn_k, o->knn_t, &e);
            const ParamStore *tnet = model.target.n_params ? &model.target : &model.online;
            const double tg_acc = knn_of(&model, tnet, &ds, &fc, o->eval_bank, o->eval_queries, o->knn_k, o->knn_t, &e);
            if (on_acc >= 0 && tg_acc >= 0 && metrics) {
                fprintf(metrics, "{\"step\": %lld, \"epoch\": %.4f, \"knn_top1\": %.6f, \"knn_target_top1\": %.6f}\n",
                        (long long)step, (double)step / spe, on_acc, tg_acc);
                fflush(metrics);
                tb_log(&tb, step, (const char *const[]){"knn/top1", "knn/target_top1"}, (const double[]){on_acc, tg_acc}, 2);
            }
            last_knn_s = elapsed;
        }
        if (epoch_end && !last && o->eval_every > 0 && (step / spe) % o->eval_every == 0) {
            last_knn = knn_monitor(&model, &ds, &fc, o->eval_bank, o->eval_queries, o->knn_k, o->knn_t, &e);
            fault_slow_knn();
            if (last_knn >= 0 && metrics) {
                fprintf(metrics, "{\"step\": %lld, \"epoch\": %.4f, \"knn_top1\": %.6f}\n", (long long)step,
                        (double)step / spe, last_knn);
                fflush(metrics);
                tb_log(&tb, step, (const char *const[]){"knn/top1"}, &last_knn, 1);
                printf("%sepoch %lld: kNN top-1 %.2f%%\n", tty ? "\n" : "", (long long)(step / spe), 100 * last_knn);
            }
            if (root) {
                snprintf(path, sizeof path, "%s/plot.svg", o->out);
                char mpath[4400];
                snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", o->out);
                Err pe;
                plot_metrics_svg(mpath, path, &pe); /* a picture is a convenience: never stop for it */
            }
        }
        if (g_signal && P == 1) {
            stop_signal = g_signal;
            break;
        }
        /* checkpoint times from the agreed clock, so that every rank counts the same steps */
        if (epoch_end || (o->ckpt_minutes > 0 && elapsed - last_ckpt_elapsed > 60 * o->ckpt_minutes)) {
            if (last) fault_signal_at("final-checkpoint");
            if (root && save_run_checkpoint(&model, o, step, spe, n_skipped, elapsed0 + now_seconds() - t_start, config,
                                            mean_s, std_s, saved_path, sizeof saved_path, &e)) {
                fprintf(stderr, "%sbyol train: %s\n", tty ? "\n" : "", e.msg);
                ckpt_failed = 1; /* the others learn it at the next step's agreement */
                if (P == 1) {
                    rc = 1;
                    break;
                }
            }
            last_ckpt_elapsed = elapsed;
            saved_step = step;
        }
        t_log += now_seconds() - t_extra; /* so the next images/s figure is of training alone */
    }
    if (P > 1 && rc == 0 && !stop_signal) { /* a failure in the last step's checkpoint */
        if (dist_allreduce_max(ckpt_failed, "the end of training") > 0) rc = 1;
    }
    xfree(cwork);
    if (tty) printf("\n");

    const int trained_nothing = step == start_step && o->resume && finished;
    if (rc == 0 && !trained_nothing) { /* the final (or interrupted) state, unless the loop just wrote it */
        int failed = 0;
        if (P > 1) dist_check_identical(model.online.params, model.online.n_params, step);
        if (saved_step != step) fault_signal_at("final-checkpoint");
        if (root && saved_step != step &&
            save_run_checkpoint(&model, o, step, spe, n_skipped, elapsed0 + now_seconds() - t_start, config, mean_s,
                                std_s, saved_path, sizeof saved_path, &e)) {
            fprintf(stderr, "byol train: %s\n", e.msg);
            failed = 1;
        } else {
            printf("checkpoint %s (step %lld)\n", saved_path, (long long)step);
        }
        if (dist_allreduce_max(failed, "the final checkpoint") > 0) rc = 1;
    }
    /* a signal that came during the last step or the final checkpoint still stops the run */
    if (!stop_signal && g_signal) stop_signal = g_signal;
    if (rc == 0 && trained_nothing) {
        printf("nothing to train: the run of %s already ended at step %lld (to train it further, raise --epochs "
               "or --time-budget with --allow-change 1)\n", ckpt_path, (long long)step);
    } else if (rc == 0 && stop_signal > 0 && finished) {
        printf("stopped by signal %d after the last step: the run is complete (checkpoint %s); the final kNN was "
               "skipped\n", stop_signal, saved_path);
        rc = 128 + stop_signal;
    } else if (rc == 0 && stop_signal > 0) {
        printf("stopped by signal %d at step %lld: byol train --resume %s continues\n", stop_signal, (long long)step, o->out);
        rc = 128 + stop_signal;
    } else if (rc == 0 && stop_signal < 0) {
        printf("stopped at --max-steps %lld: byol train --resume %s continues\n", (long long)step, o->out);
    } else if (rc == 0) {
        printf("trained %lld steps in %.1f s\n", (long long)(step - start_step), now_seconds() - t_start);
        if (P > 1 && plan.margin > 0) {
            printf("balanced shards at the end (images per rank):");
            shard_plan_print_sizes(&plan, stdout);
        }
        if (n_skipped)
            printf("skipped %ld step%s with non-finite values (--on-nan skip)\n", n_skipped, n_skipped == 1 ? "" : "s");
        if (o->knn_after) {
            fault_signal_at("final-knn");
            double acc = knn_monitor(&model, &ds, &fc, o->eval_bank, o->eval_queries, o->knn_k, o->knn_t, &e);
            if (g_signal) { /* Ctrl-C during the final kNN: the run is saved, the figure is dropped */
                printf("stopped by signal %d during the final kNN: the run is complete (checkpoint %s)\n", (int)g_signal,
                       saved_path);
                rc = 128 + g_signal;
            } else if (acc >= 0) {
                printf("kNN top-1 after training: %.2f%%\n", 100 * acc);
                final_knn = acc;
                if (metrics)
                    fprintf(metrics, "{\"step\": %lld, \"epoch\": %.4f, \"knn_top1\": %.6f, \"final\": true}\n",
                            (long long)step, (double)step / spe, acc);
                tb_log(&tb, step, (const char *const[]){"knn/final_top1"}, &acc, 1);
            }
        }
    }
    if (metrics) fflush(metrics);
    if (root) {
        char mpath[4400];
        snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", o->out);
        snprintf(path, sizeof path, "%s/plot.svg", o->out);
        Err pe;
        if (plot_metrics_svg(mpath, path, &pe) == 0 && rc == 0 && stop_signal == 0) printf("plot %s\n", path);
    }
    free(config);
    if (result) {
        result->step = step;
        result->final_knn = final_knn;
    }
done_model:
    if (metrics) fclose(metrics);
    tb_close(&tb);
    loader_destroy(loader);
    byol_work_free(&work);
    byol_free(&model);
done_data:
    st_close(&init_st);
    run_dir_unlock(&lock);
    shard_plan_free(&plan);
    dataset_close(&ds);
    return rc;
}
