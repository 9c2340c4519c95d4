/* byol train: parses the flags (a --config file, a resumed checkpoint's configuration under
 * the flags given now), chooses the device, and runs the training loop of src/train/. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../core/threads.h"
#include "../dist/dist.h"
#include "../io/checkpoint.h"
#include "../io/run_dir.h"
#include "../train/train.h"
#include "commands.h"
#include "data_flags.h"
#include "train_opts.h"

/* The options of a resumed run: the defaults, then the checkpoint's configuration, then the flags
 * given now. A recipe flag that differs from the checkpoint's is refused unless --allow-change,
 * and then named. 0, or the exit status. */
static int resume_options(int argc, char **argv, Flag *flags, int nf, TrainOptions *o, const CkptMeta *meta,
                          const char *ckpt_path, Err *e) {
    Flag saved_flags[TRAIN_FLAG_MAX];
    TrainOptions saved;
    train_flags(saved_flags, &saved);
    if (train_parse_saved(meta->config, ckpt_path, saved_flags, nf, e) ||
        train_parse_saved(meta->config, ckpt_path, flags, nf, e) || train_parse(argc, argv, flags, nf, o, e) < 0) {
        fprintf(stderr, "byol train: %s\n", e->msg);
        return 2;
    }
    train_data_absolute(&saved);
    train_data_absolute(o);
    char changes[2048];
    int n = train_recipe_changes(saved_flags, flags, nf, changes, sizeof changes);
    if (n && !o->allow_change) {
        fprintf(stderr, "byol train: --resume %s: the recipe differs from the checkpoint's (%s): a resumed run "
                        "keeps its recipe; add --allow-change 1 to change it anyway, or start a new run with --out\n",
                ckpt_path, changes);
        return 2;
    }
    if (n && dist_rank() == 0) printf("byol train: --allow-change: %s\n", changes);
    return 0;
}

/* The configuration a run saves: its flags' values (which point into the run's options). */
typedef struct {
    const Flag *flags;
    int n;
} ConfigFlags;

static char *config_from_flags(void *ctx) {
    const ConfigFlags *c = ctx;
    return train_config_dump(c->flags, c->n);
}

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
    CkptMeta meta = {0};
    if (o.resume) {
        if (ckpt_resolve(o.resume, ckpt_path, sizeof ckpt_path, &e) || st_open(&resume_st, ckpt_path, &e) ||
            ckpt_meta_read(&resume_st, ckpt_path, &meta, &e)) {
            fprintf(stderr, "byol train: --resume: %s\n", e.msg);
            st_close(&resume_st);
            return 1;
        }
        nf = train_flags(flags, &o);
        if ((rc = resume_options(argc, argv, flags, nf, &o, &meta, ckpt_path, &e))) {
            st_close(&resume_st);
            return rc;
        }
        if (!o.out_given) { /* continue in the checkpoint's folder */
            path_folder(ckpt_path, o.out_buf, sizeof o.out_buf);
            o.out = o.out_buf;
            o.out_default = 0;
        }
    } else {
        train_data_absolute(&o);
        /* --time-budget alone: the recipe measured best for short budgets, and the budget kept
         * for training (the per-epoch kNN monitor and the untrained encoder's kNN off unless
         * asked for; the final kNN comes after the budget) */
        if (o.time_budget > 0 && !train_recipe_given(argc, argv, flags, nf)) {
            train_options_budget_recipe(&o);
            if (!flag_given(argc, argv, "eval-every")) o.eval_every = 0;
            if (!flag_given(argc, argv, "knn-before")) o.knn_before = 0;
        }
    }

    /* Compute threads default to the cores this process may use (affinity, cgroup quota; under
     * mpirun, shared among the ranks on them): the loader's workers need little (a 32-pixel view
     * costs ~50 us to decode and augment against ~4 ms to train on), and a second compute thread
     * made the default Fashion-MNIST run 1.4x faster on 2 cores (529 vs 379 images/s). */
    if (o.threads == 0) o.threads = dist_default_threads();
    threads_set(o.threads);
    dist_set_timeout(o.comm_timeout);
    const Backend *be = NULL;
    if (plan_apply(&o.plan, NULL, &e) || !(be = compute_backend(&o.plan, &e))) {
        fprintf(stderr, "byol train: %s\n", e.msg);
        st_close(&resume_st);
        return 2;
    }

    ConfigFlags cf = {flags, nf};
    const TrainSetup setup = {be, ckpt_path, o.resume ? &resume_st : NULL, &meta, config_from_flags, &cf};
    rc = train_run(&o, &setup, NULL);
    st_close(&resume_st);
    return rc;
}
