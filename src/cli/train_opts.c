#include "train_opts.h"

#include <math.h>
#include <string.h>
#include <time.h>

static const char *TRAIN_USAGE =
    "usage: byol train [--data PATH] [--dataset NAME] [--out DIR] [--epochs N] [--batch B]\n"
    "                  [--time-budget SECONDS] [--resume DIR|FILE] [--config FILE] [flags]\n"
    "Pretrains an encoder with BYOL. Runs with no flags on Debian's Fashion-MNIST with a CPU-sized\n"
    "model. Settings can also come from --config FILE (one 'flag = value' per line).";

int train_flags(Flag *f, TrainOptions *o) {
    train_options_default(o);
    int n = 0;
    model_flags(f + n, &o->mc);
    /* byol train's own model defaults (sized for a CPU), said in its --help */
    f[n + 1].help = "base width; stages use w, 2w, 4w, 8w (8)";
    f[n + 4].help = "projector hidden size (512)";
    f[n + 5].help = "projection size (64)";
    f[n + 6].help = "predictor hidden size (the method's: byol = proj-hidden, simsiam = proj-dim / 4)";
    n += MODEL_FLAG_COUNT;
    data_flags(f + n, &o->data);
    n += DATA_FLAG_COUNT;
    Flag own[] = {
        {"out", FLAG_STRING, &o->out, "run folder: config, metrics, plot, checkpoints (runs/<date-time>)", 0, -1},
        {"epochs", FLAG_INT, &o->epochs, "epochs (6)", 1, 1000000},
        {"batch", FLAG_INT, &o->batch, "images per step (128)", 2, 1 << 20},
        {"optimizer", FLAG_STRING, &o->optimizer, "lars, sgd with momentum, or adamw (betas 0.9, 0.999; no decay on biases and norms) (the method's: byol lars, simsiam and dino sgd)", 0, -1},
        {"base-lr", FLAG_FLOAT, &o->base_lr, "learning rate per 256 images (1.0 with LARS, 0.05 with SGD, dino 0.03, 5e-4 with AdamW)", 0, 1e4},
        {"weight-decay", FLAG_FLOAT, &o->weight_decay, "weight decay (5e-4; the paper's 1e-5 collapses short runs)", 0, 10},
        {"momentum", FLAG_FLOAT, &o->momentum, "SGD momentum (0.9)", 0, 1},
        {"lars-eta", FLAG_FLOAT, &o->lars_eta, "LARS trust coefficient (0.02)", 0, 1e3},
        {"pred-lr-mult", FLAG_FLOAT, &o->pred_lr_mult, "predictor learning rate: this times the schedule's (1; with --pred-lr-constant 1: times the peak)", 1e-3, 1e3},
        {"warmup-epochs", FLAG_FLOAT, &o->warmup_epochs, "linear warm-up in epochs (10, at most 10% of the run; not with --time-budget)", -1, 1e6},
        {"warmup-frac", FLAG_FLOAT, &o->warmup_frac, "linear warm-up as a share of the run or of --time-budget (0.1 with a budget)", 0, 1},
        {"tau-base", FLAG_FLOAT, &o->tau_base, "target EMA decay at the start, cosine to 1 (0.99; dino 0.996)", 0, 1},
        {"dino-teacher-temp", FLAG_FLOAT, &o->dino_teacher_temp, "dino: the teacher's softmax temperature after warm-up (0.07; = the student's: no sharpening, an ablation)", 1e-4, 100},
        {"dino-warmup-teacher-temp", FLAG_FLOAT, &o->dino_warmup_teacher_temp, "dino: the teacher's temperature at the start, linear to --dino-teacher-temp (0.04)", 1e-4, 100},
        {"dino-teacher-temp-warmup", FLAG_FLOAT, &o->dino_teacher_temp_warmup, "dino: the teacher temperature's warm-up, a share of the run, at most 30 epochs (0.3)", 0, 1},
        {"dino-student-temp", FLAG_FLOAT, &o->dino_student_temp, "dino: the student's softmax temperature (0.1)", 1e-4, 100},
        {"dino-center", FLAG_INT, &o->dino_center, "dino: center the teacher's outputs, 0 or 1 (1; 0 is an ablation)", 0, 1},
        {"dino-center-momentum", FLAG_FLOAT, &o->dino_center_momentum, "dino: the center's EMA decay (0.9)", 0, 1},
        {"knn-every-s", FLAG_FLOAT, &o->knn_every_s, "also kNN of the online and the target encoder every S seconds, into metrics (0 off)", 0, 1e9},
        {"tau-schedule", FLAG_STRING, &o->tau_schedule, "cosine (tau-base -> 1, BYOL's) or constant (tau-base throughout) (cosine)", 0, -1},
        {"no-predictor", FLAG_SWITCH, &o->mc.no_predictor, "ablation: no predictor, the projection predicts the target's (collapses)", 0, 1},
        {"local-crops", FLAG_INT, &o->local_crops, "multi-crop: local views per image, through the online network only, each predicting both views' targets (0)", 0, 16},
        {"local-size", FLAG_INT, &o->local_size, "multi-crop: the local views' size in px (half the image size)", 0, 4096},
        {"local-scale", FLAG_STRING, &o->local_scale, "multi-crop: min,max area fraction of a local view's crop (0.05,0.4)", 0, -1},
        {"local-weight", FLAG_FLOAT, &o->local_weight, "multi-crop: the weight of the local views' terms in the loss, the global views' being 1 (1)", 1e-3, 100},
        {"size-schedule", FLAG_STRING, &o->size_schedule, "view sizes through the run, SIZE:SHARE of the run or budget each, ending at the image size, e.g. 16:0.5,24:0.3,32:0.2; auto: half, three quarters and all of the image size for 0.5, 0.3 and 0.2 (off)", 0, -1},
        {"var-cov", FLAG_STRING, &o->var_cov, "W1,W2: VICReg's variance hinge (W1) and covariance penalty (W2) on the online projections, added to the loss (0,0: off)", 0, -1},
        {"pred-lr-constant", FLAG_INT, &o->pred_lr_constant, "the predictor's learning rate held at its peak times --pred-lr-mult, no warm-up or decay, 0 or 1 (the method's: simsiam 1, else 0)", -1, 1},
        {"local-predictor", FLAG_INT, &o->mc.local_predictor, "multi-crop: the local views predict with a predictor of their own, 0 or 1 (0: the global views' predictor)", 0, 1},
        {"no-stop-grad", FLAG_SWITCH, &o->mc.no_stop_grad, "ablation of simsiam: no stop-gradient, z takes gradients too (collapses)", 0, 1},
        {"head-bn", FLAG_INT, &o->mc.head_bn, "batch norm in the projector and predictor, 0 or 1 (the method's: 1, an ablation at 0; dino 0, its --use_bn_in_head at 1)", -1, 1},
        {"time-budget", FLAG_FLOAT, &o->time_budget, "seconds of training: the schedules follow the time spent and end with it; given no recipe flag, the short-budget recipe (width 16, heads 2048/256/2048, batch 256, lr 0.5, predictor x10, wd 1e-5, --var-cov 0.1,0.004, --size-schedule auto); a resumed run goes on with the same clock (off)", 0, 1e9},
        {"seed", FLAG_INT, &o->seed, "random seed: weights, order, augmentations (0)", 0, 2147483647},
        {"workers", FLAG_INT, &o->workers, "loader threads, 1 to 64 (0: a quarter of the cores, 1 to 8)", 0, 64},
        {"threads", FLAG_INT, &o->threads, "compute threads (0: the cores this process may use: affinity mask, cgroup quota; ranks sharing cores split them)", 0, 4096},
        {"sync-bn", FLAG_INT, &o->sync_bn, "under mpirun: batch norm over the global batch, 0 or 1 (1)", 0, 1},
        {"balance", FLAG_INT, &o->balance, "under mpirun: shards sized by each rank's measured speed, 0 or 1 (0)", 0, 1},
        {"comm-timeout", FLAG_FLOAT, &o->comm_timeout, "under mpirun: seconds a rank waits for the others before stopping all (300)", 1, 1e6},
        {"eval-every", FLAG_INT, &o->eval_every, "kNN monitor every N epochs, 0 off (1)", 0, 1000000},
        {"eval-bank", FLAG_INT, &o->eval_bank, "kNN monitor: train images as the bank, 0 all (10000)", 0, 1 << 30},
        {"eval-queries", FLAG_INT, &o->eval_queries, "kNN monitor: test images scored, 0 all (10000)", 0, 1 << 30},
        {"knn-k", FLAG_INT, &o->knn_k, "kNN neighbours, at most the bank's images (200)", 1, 100000},
        {"knn-t", FLAG_FLOAT, &o->knn_t, "kNN temperature (0.1)", 1e-4, 100},
        {"knn-before", FLAG_INT, &o->knn_before, "kNN of the untrained encoder first, 0 or 1 (1)", 0, 1},
        {"knn-after", FLAG_INT, &o->knn_after, "kNN of the trained encoder at the end, 0 or 1 (1)", 0, 1},
        {"unlabeled", FLAG_INT, &o->split_unlabeled, "pretrain on the unlabeled split when there is one (STL-10), 0 or 1 (0)", 0, 1},
        {"log-every", FLAG_INT, &o->log_every, "steps between metrics lines (10)", 1, 1000000},
        {"keep", FLAG_INT, &o->keep, "checkpoints kept (3)", 1, 1000000},
        {"ckpt-minutes", FLAG_FLOAT, &o->ckpt_minutes, "also checkpoint every N minutes within an epoch, 0 off (10)", 0, 1e6},
        {"on-nan", FLAG_STRING, &o->on_nan, "a step with a non-finite loss or gradient: stop (the last good checkpoint stays) or skip it (stop)", 0, -1},
        {"max-steps", FLAG_INT, &o->max_steps, "stop after this many steps as if interrupted, 0 off (tests)", 0, 2147483647},
        {"init", FLAG_STRING, &o->init, "start both encoders from these weights, torchvision's names (byol export's file, or tools/pth2safetensors.py's from a torchvision state_dict); the file's arch, width and stem unless given; fresh heads (off)", 0, -1},
        {"resume", FLAG_STRING, &o->resume, "continue the run of a folder (its newest checkpoint) or a checkpoint; an older checkpoint of the folder moves the newer ones aside", 0, -1},
        {"allow-change", FLAG_INT, &o->allow_change, "with --resume: accept recipe flags that differ from the checkpoint's, 0 or 1 (0)", 0, 1},
        {"config", FLAG_STRING, &o->config, "settings file, 'flag = value' per line", 0, -1},
    };
    memcpy(f + n, own, sizeof own);
    n += (int)ARRAY_LEN(own);
    compute_flags(f + n, &o->plan);
    n += COMPUTE_FLAG_COUNT;
    if (n > TRAIN_FLAG_MAX) die("train_flags: %d flags exceed TRAIN_FLAG_MAX", n);
    return n;
}

int train_parse(int argc, char **argv, const Flag *flags, int n, TrainOptions *o, Err *e) {
    /* whether a --config file sets the stem (else it follows the image size): a value no
     * setting can have, looked at after the files */
    const Stem stem_before = o->mc.enc.stem;
    o->mc.enc.stem = (Stem)-1;
    for (int i = 0; i < argc; i++) {
        const char *path = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0) path = argv[i] + 9;
        if (path && flags_parse_file(path, flags, n, e)) {
            o->mc.enc.stem = stem_before;
            return -1;
        }
    }
    const int stem_in_config = o->mc.enc.stem != (Stem)-1;
    if (!stem_in_config) o->mc.enc.stem = stem_before;
    int rc = flags_parse(argc, argv, flags, n, TRAIN_USAGE, e);
    if (rc) return rc;
    if (strcmp(o->on_nan, "stop") != 0 && strcmp(o->on_nan, "skip") != 0)
        return err_set(e, "--on-nan: '%.64s' is neither stop nor skip", o->on_nan);
    o->skip_nonfinite = strcmp(o->on_nan, "skip") == 0;
    o->out_given = flag_given(argc, argv, "out") || (o->out && !o->resume);
    o->in_channels_given = flag_given(argc, argv, "in-channels");
    o->arch_given = flag_given(argc, argv, "arch");
    o->width_given = flag_given(argc, argv, "width");
    o->stem_given = stem_in_config || flag_given(argc, argv, "stem");
    if (!o->out) {
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(o->out_buf, sizeof o->out_buf, "runs/%Y%m%d-%H%M%S", &tm);
        o->out = o->out_buf;
        o->out_default = 1; /* made unique when the folder is created (two runs in one second) */
    }
    return 0;
}

FlagScope train_flag_scope(const Flag *f) {
    static const char *const run[] = {"out", "resume", "allow-change", "config", "max-steps", "threads", "workers",
                                      "comm-timeout", "plan", "plan-cache", "device", "precision"};
    static const char *const monitor[] = {"balance", "eval-every", "eval-bank", "eval-queries", "knn-k", "knn-t", "knn-every-s",
                                          "knn-before", "knn-after", "log-every", "keep", "ckpt-minutes", "on-nan"};
    for (size_t k = 0; k < ARRAY_LEN(run); k++)
        if (strcmp(f->name, run[k]) == 0) return FLAG_RUN;
    for (size_t k = 0; k < ARRAY_LEN(monitor); k++)
        if (strcmp(f->name, monitor[k]) == 0) return FLAG_MONITOR;
    return FLAG_RECIPE;
}

static int saved_flag(const Flag *f) { return train_flag_scope(f) != FLAG_RUN; }
char *train_config_dump(const Flag *flags, int n) { return flags_dump_if(flags, n, saved_flag); }

int train_parse_saved(const char *text, const char *label, const Flag *flags, int n, Err *e) {
    if (flags_parse_text(text, label, flags, n, e)) return -1;
    TrainOptions d;
    Flag defaults[TRAIN_FLAG_MAX];
    train_flags(defaults, &d);
    for (int i = 0; i < n; i++)
        if (train_flag_scope(&flags[i]) == FLAG_RUN) flag_copy_value(&flags[i], &defaults[i]);
    return 0;
}

int train_recipe_given(int argc, char **argv, const Flag *flags, int n) {
    /* where the data is, which images, the seed and the budget leave the recipe open */
    static const char *const open_flags[] = {"data", "dataset", "image-size", "in-channels", "unlabeled", "seed",
                                             "time-budget"};
    TrainOptions d;
    Flag defaults[TRAIN_FLAG_MAX];
    train_flags(defaults, &d);
    for (int i = 0; i < n; i++) {
        if (train_flag_scope(&flags[i]) != FLAG_RECIPE) continue;
        int open = 0;
        for (size_t k = 0; k < ARRAY_LEN(open_flags); k++) open |= strcmp(flags[i].name, open_flags[k]) == 0;
        if (open) continue;
        if (flag_given(argc, argv, flags[i].name)) return 1;
        char a[1200], b[1200]; /* set by a --config file */
        const char *va = flag_value_string(&defaults[i], a, sizeof a), *vb = flag_value_string(&flags[i], b, sizeof b);
        if ((va == NULL) != (vb == NULL) || (va && strcmp(va, vb) != 0)) return 1;
    }
    return 0;
}

int train_recipe_changes(const Flag *before, const Flag *after, int n, char *out, size_t cap) {
    int changes = 0;
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (train_flag_scope(&before[i]) != FLAG_RECIPE) continue;
        char a[1200], b[1200];
        const char *va = flag_value_string(&before[i], a, sizeof a), *vb = flag_value_string(&after[i], b, sizeof b);
        if (!va) va = "(default)";
        if (!vb) vb = "(default)";
        if (strcmp(va, vb) == 0) continue;
        int w = snprintf(out + len, cap - len, "%s%s %s -> %s", changes ? ", " : "", before[i].name, va, vb);
        if (w > 0 && (size_t)w < cap - len) len += (size_t)w;
        changes++;
    }
    return changes;
}
