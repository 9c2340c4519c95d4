/* byol lab: the collapse lab (src/train/lab.h): parses the flags and runs the variants. */
#include <string.h>
#include <time.h>

#include "../core/threads.h"
#include "../train/lab.h"
#include "args.h"
#include "commands.h"
#include "train_opts.h"

static const char *USAGE =
    "usage: byol lab [--data PATH] [--budget SECONDS] [--quick] [--out DIR] [--only a,b] [--report-only]\n"
    "Why BYOL does not collapse: short runs of byol train's recipe and of the papers' ablations\n"
    "(no predictor, tau 0, tau 1, a fast predictor, SimSiam, no batch norm in the heads), each a\n"
    "flag of byol train, in one process. Writes DIR/report.md (the papers' outcome beside ours)\n"
    "and DIR/lab.png and .svg (std x sqrt(D), effective rank, loss, kNN of the online and target\n"
    "encoders).\n"
    "Variants: byol no-predictor tau0 tau1 tau0-fast-predictor simsiam no-head-bn.";

/* A variant's configuration as byol train saves it: train's flags, bound to a copy of the
 * variant's options. */
static char *variant_config(void *options) {
    static TrainOptions bound;
    Flag flags[TRAIN_FLAG_MAX];
    const int n = train_flags(flags, &bound);
    bound = *(const TrainOptions *)options;
    return train_config_dump(flags, n);
}

int cmd_lab(int argc, char **argv) {
    LabOptions o = {.budget_s = 1740, .config_text = variant_config};
    float budget = -1;
    int quick = 0;
    char out_buf[256];
    ComputeOptions po = {NULL, NULL, NULL, NULL};
    Flag flags[10 + COMPUTE_FLAG_COUNT] = {
        {"data", FLAG_STRING, &o.data, "dataset path (Debian's Fashion-MNIST)", 0, -1},
        {"budget", FLAG_FLOAT, &budget, "seconds of training for the whole lab, shared by the variants (1650, and about two minutes of set-up and evaluation: 30 minutes; --quick 240)", 10, 1e7},
        {"quick", FLAG_SWITCH, &quick, "a demo of about 5 minutes: six variants (byol, no-predictor, tau1, simsiam, simsiam-no-stop-grad, dino), a smaller budget and kNN bank", 0, 1},
        {"out", FLAG_STRING, &o.out, "the lab's folder (runs/lab-<date-time>)", 0, -1},
        {"only", FLAG_STRING, &o.only, "comma-separated variants (all)", 0, -1},
        {"threads", FLAG_INT, &o.threads, "threads (the cores this process may use)", 1, 4096},
        {"seed", FLAG_INT, &o.seed, "random seed, the same for every variant (0)", 0, 2147483647},
        {"batch", FLAG_INT, &o.batch, "images per step (byol train's 128)", 2, 1 << 20},
        {"width", FLAG_INT, &o.width, "encoder base width (byol train's 8)", 1, 4096},
        {"report-only", FLAG_SWITCH, &o.report_only, "no training: report.md and the figure again from the variants' runs in --out (with --quick or --only as the lab ran)", 0, 1},
    };
    int nf = 10;
    compute_flags(flags + nf, &po);
    nf += COMPUTE_FLAG_COUNT;
    Err e;
    int rc = flags_parse(argc, argv, flags, nf, USAGE, &e);
    if (rc == 1) return 0;
    if (rc) return cmd_fail("lab", &e, 2);
    o.quick = quick;
    o.budget_s = budget > 0 ? budget : quick ? 240 : 1650;
    if (!o.out) {
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(out_buf, sizeof out_buf, "runs/lab-%Y%m%d-%H%M%S", &tm);
        o.out = out_buf;
    }
    threads_set(o.threads);
    if (plan_apply(&po, NULL, &e) || !(o.be = compute_backend(&po, &e))) return cmd_fail("lab", &e, 2);
    return lab_run(&o);
}
