/* The convolution planner: which CPU kernel runs each (layer shape, pass).
 *
 * The CPU backend has three convolution kernels: im2col + GEMM (any shape), Winograd F(2x2, 3x3)
 * (3x3 stride 1) and direct (channels a multiple of the vector width). Which one is fastest
 * depends on the machine (vector width, caches, the BLAS's kernels), on the layer and on the
 * thread count: the same width-16 layer ran 4.65x faster by Winograd than by direct kernels on a
 * Zen 2 and 2.5x slower on an AVX-512 Xeon. So, as FFTW's planner and cuDNN's find mode do, the
 * planner times every kernel that applies, once per shape, when a run sets up, and keeps the
 * fastest (PLAN_MEASURE). Its choices are
 *   - cached in a small text file keyed by the CPU, the thread count and the build, so that
 *     later runs on the same machine reuse them instead of measuring again;
 *   - written into checkpoints (conv_plan_to_text), so that a resumed run runs the same kernels:
 *     the choice changes rounding, and resumes are bit-exact.
 * PLAN_FIXED chooses by a measurement-free rule instead (direct for narrow layers, else Winograd
 * where it applies, else im2col): the same choice on every run, for tests and comparisons.
 *
 * Planning happens before any kernel runs, single-threaded (the model's set-up calls conv_plan
 * for every convolution it will run); kernels then only look their choice up. */
#ifndef BYOL_CONV_PLAN_H
#define BYOL_CONV_PLAN_H

#include <stdio.h>

#include "../core/common.h"
#include "nn.h"

typedef enum { CONV_ALGO_IM2COL, CONV_ALGO_WINOGRAD, CONV_ALGO_DIRECT, CONV_ALGO_COUNT } ConvAlgo;

const char *conv_algo_name(ConvAlgo a); /* "im2col", "winograd", "direct" */
const char *conv_pass_name(int pass);   /* "forward", "data", "weight" */
int conv_algo_applies(ConvAlgo a, const ConvShape *s, int pass);
size_t conv_algo_scratch_floats(ConvAlgo a, const ConvShape *s, int pass);
/* The measurement-free rule of PLAN_FIXED. */
ConvAlgo conv_algo_fixed(const ConvShape *s, int pass);
/* One pass by kernel a (which must apply). forward: out = y, in = x, wt = weights; data:
 * out = dx, in = dy, wt = weights; weight: out = dw (accumulated), in = dy, wt = x. */
void conv_algo_run(ConvAlgo a, int pass, float *out, const float *in, const float *wt,
                   const ConvShape *s, float *scratch);

typedef enum { PLAN_FIXED, PLAN_MEASURE } PlanMode;
/* The library starts in PLAN_FIXED with no cache; the commands set what their flags say. */
void conv_plan_set_mode(PlanMode m);
PlanMode conv_plan_mode(void);
int conv_plan_mode_parse(const char *s, PlanMode *m); /* "measure" or "fixed"; -1 otherwise */

/* The plan cache: `path` NULL or "" is the default ($XDG_CACHE_HOME/byol/conv-plans.txt, else
 * ~/.cache/byol/conv-plans.txt), "none" none. In PLAN_MEASURE the file's choices for this
 * machine (conv_plan_machine_key) are read now; a missing file is an empty cache, and an
 * unreadable one is named on `warn` and rewritten. New measurements are written to it at once
 * (a failure to write is named on `warn` once; the run goes on). */
void conv_plan_use_cache(const char *path, FILE *warn);
const char *conv_plan_cache_path(void); /* "" when none */
/* "AMD EPYC (family 25, model 1); threads 2; byol.c 0.1, built for avx2, direct avx2; openmp,
 * OpenBLAS ..., kernels for Zen": what the cache's choices hold for. */
const char *conv_plan_machine_key(void);

/* Chooses the kernels of shape s for the passes in `passes` (CONV_PASSES_*) that have none yet,
 * by the mode, and returns the scratch floats the shape's chosen kernels need. */
size_t conv_plan(const ConvShape *s, unsigned passes);
/* The kernel chosen for (s, pass): the plan of the same layer with the smallest batch >= s->B
 * (a balanced data-parallel step runs shards smaller than the batch planned; every kernel's
 * scratch grows with the batch). A pass never planned is a programming error: it dies. */
ConvAlgo conv_plan_algo(const ConvShape *s, int pass);

/* The plan as text, for checkpoints: "B,H,W,Cin,Cout,K,stride,pad:FDW" per shape, separated by
 * spaces, with F, D, W the forward, data and weight kernels (i im2col, w winograd, d direct,
 * - none), of the passes conv_plan was asked for. conv_plan_to_text's result is malloc'ed. conv_plan_check_text validates the syntax;
 * conv_plan_load_text makes its choices this process's (over cache and measurement), except
 * those whose kernel does not apply on this CPU (another vector width), which are planned
 * again: their number is returned, or -1 with e set on a syntax error. */
char *conv_plan_to_text(void);
int conv_plan_check_text(const char *text, Err *e);
int conv_plan_load_text(const char *text, Err *e);

/* Of the passes conv_plan was asked for (the ones this process runs): */
typedef struct {
    int shapes;      /* shapes planned */
    int measured;    /* passes measured by this process */
    int cached;      /* passes taken from the cache file */
    int given;       /* passes taken from conv_plan_load_text (a checkpoint) */
    int fixed;       /* passes chosen by the fixed rule */
    double seconds;  /* spent measuring */
} PlanStats;
void conv_plan_stats(PlanStats *st);
/* One line: "convolution plan: 60 passes of 20 shapes, 40 from the cache, 20 measured in 1.2 s
 * (FILE)". */
void conv_plan_summary(char *buf, size_t cap);
/* Every pass conv_plan was asked for, its choice beside the GFLOP/s of every kernel measured
 * (byol bench --plan). */
void conv_plan_report(FILE *f);
/* Forgets every choice (tests). */
void conv_plan_reset(void);
/* Tests: time candidates with fn (seconds for one run of kernel a on (s, pass)) instead of the
 * clock; NULL restores the clock. */
typedef double (*ConvPlanTimer)(ConvAlgo a, int pass, const ConvShape *s, void *ctx);
void conv_plan_set_timer(ConvPlanTimer fn, void *ctx);

#endif
