/* byol train: pretrain an encoder with BYOL on a dataset, with the paper's recipe (LARS, warm-up
 * then cosine learning rate, cosine tau), checkpoints, exact resume, a kNN monitor and a collapse
 * monitor. Everything of a run lives in --out DIR: config.txt, metrics.jsonl, plot.svg,
 * ckpt-<step>.safetensors. */
#include <errno.h>
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
#include "../io/checkpoint.h"
#include "../optim/optim.h"
#include "commands.h"
#include "data_flags.h"
#include "train_opts.h"

static volatile sig_atomic_t g_signal;
static void on_signal(int sig) { g_signal = sig; }

/* ---------------------------------------------------------------- helpers */

static int make_dir(const char *dir, Err *e) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return err_set(e, "--out %s: cannot create %s: %s", dir, buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return err_set(e, "--out %s: cannot create the folder: %s", dir, strerror(errno));
    if (access(buf, W_OK) != 0) return err_set(e, "--out %s: folder is not writable", dir);
    return 0;
}

static int write_text_file(const char *path, const char *text, Err *e) {
    AtomicFile af;
    if (atomic_open(&af, path, e)) return -1;
    if (atomic_write(&af, text, strlen(text), e)) return -1;
    return atomic_commit(&af, e);
}

/* kNN top-1 of the online encoder: train split as the bank, test split scored (subsets of
 * max_bank / max_query images, evenly spaced; 0 = all). -1 when the dataset has no labels. */
static double knn_monitor(const Byol *m, const Dataset *ds, const FeatureConfig *base, int max_bank,
                          int max_query, int k, float T, Err *e) {
    if (!ds->n_classes || !ds->split[SPLIT_TRAIN].labels || !ds->split[SPLIT_TEST].n ||
        !ds->split[SPLIT_TEST].labels)
        return -1;
    FeatureConfig fc = *base;
    float *fb, *fq;
    int32_t *lb, *lq;
    int d;
    fc.max_images = max_bank;
    int nb = extract_features(&m->encoder, m->online.params, m->online.buffers, ds, SPLIT_TRAIN, &fc, &fb, &lb, &d, e);
    if (nb < 0) return -2;
    fc.max_images = max_query;
    int nq = extract_features(&m->encoder, m->online.params, m->online.buffers, ds, SPLIT_TEST, &fc, &fq, &lq, &d, e);
    if (nq < 0) {
        xfree(fb), free(lb);
        return -2;
    }
    double acc = knn_top1(fb, lb, nb, fq, lq, nq, d, ds->n_classes, k, T, e);
    xfree(fb), xfree(fq), free(lb), free(lq);
    return acc;
}

/* A checkpoint with what a resume, eval, export or embed needs besides the tensors; then only
 * the newest --keep are kept. */
static int save_run_checkpoint(const Byol *m, const TrainOptions *o, int64_t step, long spe, long skipped,
                               const char *config, const char *mean_s, const char *std_s, char *cp, size_t cap,
                               Err *e) {
    char step_s[32], epoch_s[32], skipped_s[32];
    snprintf(step_s, sizeof step_s, "%lld", (long long)step);
    snprintf(epoch_s, sizeof epoch_s, "%.4f", (double)step / spe);
    snprintf(skipped_s, sizeof skipped_s, "%ld", skipped);
    StMeta meta[] = {{"byol.config", (char *)config}, {"byol.step", step_s}, {"byol.epoch", epoch_s},
                     {"byol.mean", (char *)mean_s}, {"byol.std", (char *)std_s}, {"byol.skipped", skipped_s},
                     {"byol.format", "1"}};
    if (ckpt_save(m, o->out, step, meta, (int)ARRAY_LEN(meta), cp, cap, e)) return -1;
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

static int fault_nan_at(const FaultSteps *f, int64_t step) {
    for (int i = 0; i < f->n; i++)
        if (f->steps[i] == step) return 1;
    return 0;
}

enum { MAX_SKIPS_IN_A_ROW = 20 }; /* --on-nan skip: beyond this the run has diverged */

static void format_eta(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, cap, "--");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

/* ---------------------------------------------------------------- the command */

int cmd_train(int argc, char **argv) {
    TrainOptions o;
    Flag flags[TRAIN_FLAG_MAX];
    int nf = train_flags(flags, &o);
    Err e;
    int rc = train_parse(argc, argv, flags, nf, &o, &e);
    if (rc == 1) return 0;
    if (rc) {
        fprintf(stderr, "byol train: %s\n", e.msg);
        return 2;
    }
    /* Resume: the checkpoint's own configuration, then the flags given now on top of it. */
    char ckpt_path[4400] = "";
    Safetensors resume_st = {0};
    int64_t start_step = 0;
    long n_skipped = 0; /* steps refused for non-finite values, over the whole run */
    if (o.resume) {
        if (ckpt_resolve(o.resume, ckpt_path, sizeof ckpt_path, &e) || st_open(&resume_st, ckpt_path, &e)) {
            fprintf(stderr, "byol train: --resume: %s\n", e.msg);
            return 1;
        }
        const char *cfg = st_meta(&resume_st, "byol.config"), *step = st_meta(&resume_st, "byol.step");
        if (!cfg || !step) {
            fprintf(stderr, "byol train: --resume %s: not a byol train checkpoint (no byol.config/byol.step metadata)\n", ckpt_path);
            st_close(&resume_st);
            return 1;
        }
        nf = train_flags(flags, &o); /* defaults, then the saved config, then today's flags */
        int bad = flags_parse_text(cfg, ckpt_path, flags, nf, &e);
        o.max_steps = 0; /* an interruption for a test is not part of the recipe */
        if (bad || train_parse(argc, argv, flags, nf, &o, &e) < 0) {
            fprintf(stderr, "byol train: %s\n", e.msg);
            st_close(&resume_st);
            return 2;
        }
        start_step = atoll(step);
        const char *sk = st_meta(&resume_st, "byol.skipped");
        n_skipped = sk ? atol(sk) : 0;
        if (!o.out_given) { /* continue in the checkpoint's folder */
            snprintf(o.out_buf, sizeof o.out_buf, "%s", ckpt_path);
            char *slash = strrchr(o.out_buf, '/');
            if (slash) *slash = 0;
            else snprintf(o.out_buf, sizeof o.out_buf, ".");
            o.out = o.out_buf;
        }
    }

    /* Compute threads default to all cores: the loader's workers need little (a 32-pixel view
     * costs ~50 us to decode and augment against ~4 ms to train on), and a second compute thread
     * made the default Fashion-MNIST run 1.4x faster on 2 cores (529 vs 379 images/s). */
    if (o.threads == 0) o.threads = dist_default_threads();
    threads_set(o.threads);
    dist_set_timeout(o.comm_timeout);
    Dataset ds;
    if (data_open(&ds, &o.data, stderr, &e)) {
        if (!o.data.data && access(DEFAULT_DATA, R_OK) != 0)
            fprintf(stderr, "byol train: no data: the default is Fashion-MNIST from Debian's dataset-fashion-mnist "
                            "(apt-get install dataset-fashion-mnist), or pass --data PATH\n");
        else
            fprintf(stderr, "byol train: %s\n", e.msg);
        st_close(&resume_st);
        return 1;
    }
    rc = 1;
    Split split = o.split_unlabeled && ds.split[SPLIT_UNLABELED].n ? SPLIT_UNLABELED : SPLIT_TRAIN;
    AugConfig ac;
    ByolWork work = {0};
    ShardPlan plan = {0};
    Loader *loader = NULL;
    Byol model;
    memset(&model, 0, sizeof model);
    FILE *metrics = NULL;
    if (data_aug_config(&ac, &o.data, &ds, &e)) {
        fprintf(stderr, "byol train: %s\n", e.msg);
        goto done_data;
    }
    if (o.mc.enc.in_channels != ds.channels) {
        if (o.in_channels_given) {
            fprintf(stderr, "byol train: --in-channels %d but %s has %d-channel images\n", o.mc.enc.in_channels,
                    ds.root, ds.channels);
            goto done_data;
        }
        o.mc.enc.in_channels = ds.channels;
    }
    /* Normalization: the checkpoint's when resuming, else the split's statistics. */
    if (o.resume && st_meta(&resume_st, "byol.mean")) {
        sscanf(st_meta(&resume_st, "byol.mean"), "%f %f %f", &ac.mean[0], &ac.mean[1], &ac.mean[2]);
        sscanf(st_meta(&resume_st, "byol.std"), "%f %f %f", &ac.std[0], &ac.std[1], &ac.std[2]);
    } else if (dataset_channel_stats(&ds, split, 10000, ac.image_size, ac.mean, ac.std, &e) < 0) {
        fprintf(stderr, "byol train: %s\n", e.msg);
        goto done_data;
    }
    const int S = ac.image_size, B = o.batch;
    const size_t image = (size_t)ds.channels * S * S;
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
    shard_plan_init(&plan, B, P, o.balance);
    int reach_first, reach;
    shard_plan_reach(&plan, rank, &reach_first, &reach);
    const int b = shard_plan_max(&plan);
    if (n_images < B) {
        fprintf(stderr, "byol train: %s: the %s split has %d images, fewer than one batch of %d (lower --batch)\n",
                ds.root, SPLIT_NAMES[split], n_images, B);
        goto done_data;
    }
    const long spe = n_images / B, total = (long)o.epochs * spe;
    long warmup = o.warmup_epochs >= 0 ? (long)(o.warmup_epochs * spe) : (long)fmin(10.0 * spe, 0.1 * total);
    if (warmup > total) warmup = total;
    const double lr_peak = o.base_lr * B / 256.0;

    /* The run's folder (rank 0 writes everything in it): a fresh run refuses a folder that
     * already holds checkpoints. */
    o.data.image_size = S; /* the effective configuration: with the dataset's figures filled in */
    char *config = flags_dump(flags, nf);
    char path[4400];
    int setup_failed = 0;
    if (root) {
        if (make_dir(o.out, &e)) {
            fprintf(stderr, "byol train: %s\n", e.msg);
            setup_failed = 1;
        } else {
            ckpt_remove_stale_temporaries(o.out); /* half-written files of a killed run */
            if (!o.resume && ckpt_count(o.out) > 0) {
                fprintf(stderr, "byol train: --out %s already holds a run (ckpt-*.safetensors): --resume %s to "
                                "continue it, or choose another --out\n", o.out, o.out);
                setup_failed = 1;
            } else {
                snprintf(path, sizeof path, "%s/config.txt", o.out);
                if (write_text_file(path, config, &e)) {
                    fprintf(stderr, "byol train: %s\n", e.msg);
                    setup_failed = 1;
                }
            }
        }
    }
    if (dist_allreduce_max(setup_failed, "setting up the run folder") > 0) { /* all ranks stop together */
        free(config);
        goto done_data;
    }

    byol_init(&model, &o.mc);
    if (o.resume) {
        setup_failed = state_load_from(&model, &resume_st, &e) != 0;
        if (setup_failed)
            fprintf(stderr, "byol train: --resume: %s (the checkpoint's model differs from the flags?)\n", e.msg);
    } else {
        byol_init_weights(&model, (uint64_t)o.seed);
    }
    if (!setup_failed) {
        LoaderConfig lc = {&ds, split, ac, reach, (uint64_t)o.seed, o.workers, 2, start_step, reach_first, B};
        loader = loader_create(&lc, &e);
        if (!loader) {
            fprintf(stderr, "byol train: %s\n", e.msg);
            setup_failed = 1;
        }
    }
    if (!setup_failed && root) {
        snprintf(path, sizeof path, "%s/metrics.jsonl", o.out);
        metrics = fopen(path, o.resume ? "a" : "w");
        if (!metrics) {
            fprintf(stderr, "byol train: %s: cannot write: %s\n", path, strerror(errno));
            setup_failed = 1;
        }
    }
    if (dist_allreduce_max(setup_failed, "starting the run") > 0) {
        free(config);
        goto done_model;
    }
    byol_broadcast_state(&model); /* every rank starts from rank 0's bits */
    byol_work_init(&work, &model, b, ds.channels, S, S, &backend_cpu);
    byol_work_distribute(&work, &model, o.sync_bn, B);

    char mean_s[64], std_s[64];
    snprintf(mean_s, sizeof mean_s, "%.9g %.9g %.9g", ac.mean[0], ac.mean[1], ac.mean[2]);
    snprintf(std_s, sizeof std_s, "%.9g %.9g %.9g", ac.std[0], ac.std[1], ac.std[2]);
    FeatureConfig fc = {S, {ac.mean[0], ac.mean[1], ac.mean[2]}, {ac.std[0], ac.std[1], ac.std[2]}, 256, 0};
    const int tty = isatty(STDOUT_FILENO);
    printf("byol train: %s %s (%d images, %dx%d, %d ch), %s width %d %s stem, heads %d/%d/%d\n", ds.kind,
           SPLIT_NAMES[split], n_images, S, S, ds.channels, arch_name(o.mc.enc.arch), o.mc.enc.width,
           stem_name(o.mc.enc.stem), o.mc.proj_hidden, o.mc.proj_dim, o.mc.pred_hidden);
    if (P > 1) {
        char balanced[64] = "";
        if (plan.margin > 0) snprintf(balanced, sizeof balanced, ", balanced by speed up to %d either way", plan.margin);
        printf("  %d ranks x %d images%s (data-parallel, %s batch norm, %s)\n", P, B / P, balanced,
               o.sync_bn ? "synchronized" : "per-rank", dist_summary());
    }
    if (o.time_budget > 0)
        printf("  batch %d, time budget %.0f s, lr %.4g (base %.3g x %d/256), tau %.4g -> 1, out %s\n", B,
               o.time_budget, lr_peak, o.base_lr, B, o.tau_base, o.out);
    else
        printf("  batch %d, %d epochs x %ld steps, warm-up %ld steps, lr %.4g (base %.3g x %d/256), tau %.4g -> 1, "
               "out %s\n", B, o.epochs, spe, warmup, lr_peak, o.base_lr, B, o.tau_base, o.out);
    fflush(stdout);

    if (start_step == 0 && o.knn_before) {
        double acc = knn_monitor(&model, &ds, &fc, o.eval_bank, o.eval_queries, o.knn_k, o.knn_t, &e);
        if (acc < -1.5) {
            fprintf(stderr, "byol train: %s\n", e.msg);
            free(config);
            goto done_model;
        }
        if (acc >= 0) {
            printf("kNN top-1 before training (untrained encoder): %.2f%%\n", 100 * acc);
            if (metrics) {
                fprintf(metrics, "{\"step\": 0, \"epoch\": 0, \"knn_top1\": %.6f, \"untrained\": true}\n", acc);
                fflush(metrics);
            }
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* the predictor's parameters follow the online encoder and projector's in the buffer */
    StepConfig sc = {{(float)lr_peak, o.weight_decay, o.momentum, o.lars_eta, model.target.n_params, o.pred_lr_mult},
                     o.tau_base};
    double *cwork = xmalloc(collapse_work_doubles(b, o.mc.proj_dim) * sizeof(double), "collapse monitor");
    const double t_start = now_seconds();
    double t_log = t_start;
    int64_t saved_step = -1; /* the newest checkpoint this run wrote: its step and path */
    char saved_path[4400] = "";
    long log_images = 0;
    int64_t step = start_step;
    int collapse_warned = 0, stop_signal = 0, skips_in_a_row = 0;
    rc = 0;
    double last_knn = -1, last_ckpt_elapsed = 0;
    int ckpt_failed = 0;
    const FaultSteps faults = fault_steps_from_env();
    const int slow_rank = fault_slow_rank();
    for (;;) {
        double elapsed = now_seconds() - t_start;
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
        if (o.time_budget > 0) {
            frac = elapsed / o.time_budget;
            if (frac >= 1) break;
        } else {
            if (step >= total) break;
            frac = (double)step / total;
        }
        if (o.max_steps > 0 && step >= o.max_steps) { /* as if interrupted here (tests) */
            stop_signal = -1;
            break;
        }
        const long K = 1000000; /* schedules as a function of progress */
        const long kk = o.time_budget > 0 ? (long)(frac * K) : step;
        const long kt = o.time_budget > 0 ? K : total;
        const long kw = o.time_budget > 0 ? (long)(K * (o.warmup_epochs >= 0 ? fmin(1, o.warmup_epochs / fmax(1, o.epochs)) : 0.1)) : warmup;
        sc.lars.lr = (float)lr_at_step(kk, kt, kw, lr_peak);
        sc.tau = (float)tau_at_step(kk, kt, o.tau_base);

        Batch bt = loader_next(loader);
        const size_t at = (size_t)(plan.cut[rank] - reach_first) * image;
        if (fault_nan_at(&faults, step + 1)) ((float *)bt.views)[at] = NAN;
        byol_work_set_shard(&work, plan.cut[rank + 1] - plan.cut[rank]);
        const float loss = byol_step_views(&model, &work, bt.views + at, bt.views + (size_t)reach * image + at,
                                           &sc, &backend_cpu);
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
            if (o.skip_nonfinite && ++skips_in_a_row <= MAX_SKIPS_IN_A_ROW) {
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
                    if (o.skip_nonfinite)
                        fprintf(stderr, "%sbyol train: step %lld: %s; %d steps in a row were not finite, so the run "
                                        "has diverged (lower --base-lr)", tty ? "\n" : "", (long long)step, what,
                                MAX_SKIPS_IN_A_ROW + 1);
                    else
                        fprintf(stderr, "%sbyol train: step %lld: %s; the step was not applied (lower --base-lr, or "
                                        "--on-nan skip to drop such steps)", tty ? "\n" : "", (long long)step, what);
                    if (saved_path[0]) fprintf(stderr, "; the last good checkpoint is %s\n", saved_path);
                    else if (o.resume) fprintf(stderr, "; the last good checkpoint is %s\n", ckpt_path);
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
        if (!work.refused && (step % o.log_every == 0 || epoch_end || step == total)) { /* a skipped step has no figures */
            CollapseStats cs; /* of this rank's shard of projections */
            collapse_stats(work.proj.out, work.n, o.mc.proj_dim, &cs, cwork);
            const double ips = log_images / fmax(now - t_log, 1e-9);
            if (metrics) {
                fprintf(metrics, "{\"step\": %lld, \"epoch\": %.4f, \"loss\": %.7g, \"lr\": %.6g, \"tau\": %.7g, "
                                 "\"images_per_s\": %.2f, \"proj_std\": %.5f, \"eff_rank\": %.3f}\n",
                        (long long)step, (double)step / spe, loss, sc.lars.lr, sc.tau, ips, cs.std_sqrt_d,
                        cs.eff_rank);
                fflush(metrics);
            }
            /* cheap insurance that the ranks still train one model */
            if (P > 1 && step % (o.log_every * 10) == 0)
                dist_check_identical(model.online.params, model.online.n_params, step);
            double left = o.time_budget > 0 ? o.time_budget - (now - t_start)
                                             : (total - step) * (double)B / fmax(ips, 1e-9);
            char eta[32];
            format_eta(eta, sizeof eta, left);
            if (tty)
                printf("\r\033[Kepoch %.2f  step %lld/%ld  loss %.4f  lr %.3g  tau %.5f  %.0f img/s  std %.2f  rank %.1f  ETA %s",
                       (double)step / spe, (long long)step, o.time_budget > 0 ? 0 : total, loss, sc.lars.lr, sc.tau, ips,
                       cs.std_sqrt_d, cs.eff_rank, eta);
            else if (step % (o.log_every * 10) == 0 || epoch_end)
                printf("epoch %.2f step %lld loss %.5f lr %.4g tau %.6f %.1f img/s proj_std %.3f eff_rank %.1f ETA %s\n",
                       (double)step / spe, (long long)step, loss, sc.lars.lr, sc.tau, ips, cs.std_sqrt_d, cs.eff_rank, eta);
            fflush(stdout);
            if (root && collapse_warning(&cs) && !collapse_warned) {
                fprintf(stderr, "%sbyol train: warning: step %lld: the projections are collapsing, %s (std x sqrt(D) "
                                "%.3f, effective rank %.1f of %d); features may stop improving: try a lower --base-lr, "
                                "a higher --tau-base, or milder augmentations\n",
                        tty ? "\n" : "", (long long)step,
                        cs.std_sqrt_d < COLLAPSE_STD_MIN ? "all alike" : "into a few directions", cs.std_sqrt_d,
                        cs.eff_rank, o.mc.proj_dim);
                collapse_warned = 1;
            }
            t_log = now;
            log_images = 0;
        }
        const int last = o.time_budget > 0 ? 0 : step == total;
        if (epoch_end && !last && o.eval_every > 0 && (step / spe) % o.eval_every == 0) {
            last_knn = knn_monitor(&model, &ds, &fc, o.eval_bank, o.eval_queries, o.knn_k, o.knn_t, &e);
            if (last_knn >= 0 && metrics) {
                fprintf(metrics, "{\"step\": %lld, \"epoch\": %.4f, \"knn_top1\": %.6f}\n", (long long)step,
                        (double)step / spe, last_knn);
                fflush(metrics);
                printf("%sepoch %lld: kNN top-1 %.2f%%\n", tty ? "\n" : "", (long long)(step / spe), 100 * last_knn);
            }
            if (root) {
                snprintf(path, sizeof path, "%s/plot.svg", o.out);
                char mpath[4400];
                snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", o.out);
                Err pe;
                plot_metrics_svg(mpath, path, &pe); /* a picture is a convenience: never stop for it */
            }
        }
        if (g_signal && P == 1) {
            stop_signal = g_signal;
            break;
        }
        /* checkpoint times from the agreed clock, so that every rank counts the same steps */
        if (epoch_end || (o.ckpt_minutes > 0 && elapsed - last_ckpt_elapsed > 60 * o.ckpt_minutes)) {
            if (root &&
                save_run_checkpoint(&model, &o, step, spe, n_skipped, config, mean_s, std_s, saved_path, sizeof saved_path, &e)) {
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
    }
    if (P > 1 && rc == 0 && !stop_signal) { /* a failure in the last step's checkpoint */
        if (dist_allreduce_max(ckpt_failed, "the end of training") > 0) rc = 1;
    }
    xfree(cwork);
    if (tty) printf("\n");

    if (rc == 0) { /* the final (or interrupted) state, unless the loop just wrote it */
        int failed = 0;
        if (P > 1) dist_check_identical(model.online.params, model.online.n_params, step);
        if (root && saved_step != step &&
            save_run_checkpoint(&model, &o, step, spe, n_skipped, config, mean_s, std_s, saved_path, sizeof saved_path, &e)) {
            fprintf(stderr, "byol train: %s\n", e.msg);
            failed = 1;
        } else {
            printf("checkpoint %s (step %lld)\n", saved_path, (long long)step);
        }
        if (dist_allreduce_max(failed, "the final checkpoint") > 0) rc = 1;
    }
    if (rc == 0 && stop_signal > 0) {
        printf("stopped by signal %d at step %lld: byol train --resume %s continues\n", stop_signal, (long long)step, o.out);
        rc = 128 + stop_signal;
    } else if (rc == 0 && stop_signal < 0) {
        printf("stopped at --max-steps %lld: byol train --resume %s continues\n", (long long)step, o.out);
    } else if (rc == 0) {
        printf("trained %lld steps in %.1f s\n", (long long)(step - start_step), now_seconds() - t_start);
        if (P > 1 && plan.margin > 0) {
            printf("balanced shards at the end (images per rank):");
            shard_plan_print_sizes(&plan, stdout);
        }
        if (n_skipped)
            printf("skipped %ld step%s with non-finite values (--on-nan skip)\n", n_skipped, n_skipped == 1 ? "" : "s");
        if (o.knn_after) {
            double acc = knn_monitor(&model, &ds, &fc, o.eval_bank, o.eval_queries, o.knn_k, o.knn_t, &e);
            if (acc >= 0) {
                printf("kNN top-1 after training: %.2f%%\n", 100 * acc);
                if (metrics)
                    fprintf(metrics, "{\"step\": %lld, \"epoch\": %.4f, \"knn_top1\": %.6f, \"final\": true}\n",
                            (long long)step, (double)step / spe, acc);
            }
        }
    }
    if (metrics) fflush(metrics);
    if (root) {
        char mpath[4400];
        snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", o.out);
        snprintf(path, sizeof path, "%s/plot.svg", o.out);
        Err pe;
        if (plot_metrics_svg(mpath, path, &pe) == 0 && rc == 0 && stop_signal == 0) printf("plot %s\n", path);
    }
    free(config);
done_model:
    if (metrics) fclose(metrics);
    loader_destroy(loader);
    byol_work_free(&work);
    byol_free(&model);
done_data:
    shard_plan_free(&plan);
    dataset_close(&ds);
    st_close(&resume_st);
    return rc;
}
