/* The collapse lab: short training runs of one base recipe and its ablations, each a flag of
 * byol train, in one process (train_run per variant). It answers the question people bring to
 * BYOL, why it does not collapse when nothing in its loss forbids a constant output, with the
 * papers' ablations run on the user's own data: DIR/report.md (a table: the paper's figure,
 * ours, and whether the run collapsed by the collapse monitor's rule) and DIR/lab.svg (std·√D,
 * effective rank, loss and the kNN of the online and target encoders against steps). */
#ifndef BYOL_LAB_H
#define BYOL_LAB_H

#include "train.h"

typedef struct {
    const char *slug;      /* its folder under the lab's */
    const char *name;      /* "no predictor" */
    const char *flags;     /* the byol train flags that make it ("" for the base recipe) */
    const char *published; /* the paper's figure (ImageNet linear top-1 unless noted) */
    int collapses;         /* the papers' outcome: 1 collapses, 0 does not */
    void (*apply)(TrainOptions *o);
    int quick;             /* one of --quick's six: those whose outcome shows within 150 steps */
} LabVariant;

/* The variants, in report order; *n set to their number. */
const LabVariant *lab_variants(int *n);

typedef struct {
    const char *data;    /* NULL: byol train's default (Fashion-MNIST) */
    const char *out;     /* the lab's folder */
    double budget_s;     /* the whole lab's training time, shared equally by the variants */
    int quick;           /* a smaller kNN bank (the --quick demo) */
    int report_only;     /* no training: the report and figure again from the runs in out */
    int threads, seed;
    int batch, width;    /* 0: byol train's */
    const char *only;    /* comma-separated slugs, or NULL: all */
    const Backend *be;
    /* The configuration text a variant's run saves (config.txt, its checkpoints), as byol train
     * writes it, from that variant's options (a TrainOptions *): what byol eval and --resume
     * rebuild the variant's model from. */
    char *(*config_text)(void *options);
} LabOptions;

/* What one variant ended at (from its metrics.jsonl): its figures are the mean of the last
 * LAB_TAIL logged steps (each step's are of one batch; SimSiam without stop-gradient swings
 * between cosine 0.89 and 0.97 from one logged step to the next at batch 64). */
enum { LAB_TAIL = 10, LAB_FIGURES = 6 };
typedef struct {
    int ran;                 /* it trained and wrote metrics */
    long steps;
    double elapsed_s;        /* the run's training time at its last logged step */
    double loss, std_sqrt_d, eff_rank, knn, knn_target; /* knn*: -1 when not measured */
    double mean_cos;         /* predictions against targets (method_loss_mean_cos); NAN for DINO */
    double entropy, entropy_uniform, kl; /* DINO's teacher entropy, ln K, and KL; NAN for others */
    int collapsed;           /* by the collapse monitor's rule, at the end */
    const char *why;         /* which sign: "std", "rank", "agreement", "KL", "entropy"; "" if none */
} LabOutcome;

/* DINO's two collapses, as its paper tells them apart (its Figure 7), both with the student
 * following the teacher:
 * - to uniform: the KL between teacher and student < DINO_KL_MIN (nats), or the teacher's
 *   entropy above DINO_UNIFORM_FRAC of ln K while the KL is under DINO_KL_FOLLOW. Measured in
 *   the lab: without sharpening 0.988 of ln K with KL 0.021-0.040 (KL 0.009 after 1100 steps);
 *   DINO itself 0.94-0.95 with KL 0.10-0.16.
 * - to one prototype: the teacher's entropy under DINO_ENTROPY_FRAC of ln K (without centering
 *   0.02-0.04). */
#define DINO_KL_MIN 0.01
#define DINO_KL_FOLLOW 0.05
#define DINO_UNIFORM_FRAC 0.975
#define DINO_ENTROPY_FRAC 0.05

/* Runs the variants, writes report.md and lab.svg; returns the exit status (0, 1, or 128 + a
 * signal that stopped it). */
int lab_run(const LabOptions *o);

/* The last values of a run's metrics.jsonl (exposed for tests). 0, or -1 with e set. */
int lab_outcome_read(const char *metrics_path, LabOutcome *out, Err *e);

#endif
