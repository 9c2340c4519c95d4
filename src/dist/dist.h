/* Data-parallel training over processes (MPI): who we are, collectives with a deadline, and the
 * bucketed gradient all-reduce.
 *
 * Built with MPI when the build finds it (BYOL_MPI); otherwise every function is the one-process
 * case and costs nothing. Under `mpirun -np P`, rank r of P takes images [r*B/P, (r+1)*B/P) of
 * every global batch; gradients are summed over ranks and divided by P, batch-norm statistics are
 * summed over ranks (synchronized batch norm), and every rank applies the same update, so the
 * parameters stay identical (checked by dist_check_identical).
 *
 * Every collective waits at most dist_set_timeout() seconds (default 300). Each rank tells the
 * others its step at the start of every step (dist_heartbeat); when a collective times out, the
 * rank names the ranks that fell behind, and the whole job is aborted with a non-zero status: a
 * rank that hangs never leaves the others waiting forever. (A rank that dies is seen by mpirun,
 * which ends the job and names it.) */
#ifndef BYOL_DIST_H
#define BYOL_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "../nn/nn.h"

/* Call first in main. Initializes MPI when the program runs under mpirun (or mpiexec); a
 * plain start stays a single process without touching MPI. */
void dist_init(int *argc, char ***argv);
void dist_finalize(void);
int dist_rank(void);
int dist_size(void);
int dist_enabled(void); /* more than one rank */
/* Compute threads when --threads is not given: this rank's cores (threads_available), divided
 * among the ranks on this node that share them, and at most its share of the cgroup quota. */
int dist_default_threads(void);
/* "MPI (Open MPI 4.1.4)" or "no MPI in this build" */
const char *dist_summary(void);

void dist_set_timeout(double seconds);
/* This rank reached `step` (called at the start of every step). */
void dist_heartbeat(int64_t step);

/* In-place sums over all ranks. */
void dist_allreduce_sum_f64(double *buf, int n, const char *what);
/* The maximum over ranks, of one value or in place of n. */
double dist_allreduce_max(double x, const char *what);
void dist_allreduce_max_f64(double *buf, int n, const char *what);
void dist_broadcast(void *buf, size_t bytes, int root, const char *what);

/* Stops with a message naming the tensor region when ranks' parameters differ: a checksum
 * (sum and sum of squares in double) compared across ranks. */
void dist_check_identical(const float *params, size_t n, int64_t step);

/* Batch-norm statistics across ranks: the reducer (src/nn/nn.h) the batch-norm kernels call
 * on their per-channel sums; NULL when there is one rank. */
const Reducer *dist_bn_reducer(void);

/* The gradient all-reduce, in buckets: backward reports, from the last parameters to the first,
 * the offset from which the gradient buffer is final (gradsync_ready); each time at least a
 * bucket's worth is final, a non-blocking all-reduce of it starts, so communication overlaps the
 * rest of backward. gradsync_finish starts what is left, waits for all and divides by the ranks. */
typedef struct GradSync GradSync;
GradSync *gradsync_create(float *grads, size_t n, size_t bucket_floats);
void gradsync_destroy(GradSync *g);
void gradsync_begin(GradSync *g); /* a new step: nothing final yet */
void gradsync_ready(GradSync *g, size_t from);
void gradsync_finish(GradSync *g);
/* Seconds spent blocked since the last reset (for byol bench's communication share): in the
 * batch-norm reducer, and waiting for the gradient all-reduce in gradsync_finish. */
typedef struct {
    double bn, grads;
} DistWait;
DistWait dist_wait_seconds(int reset);

#endif
