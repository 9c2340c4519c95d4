/* Balanced shards for data-parallel steps (--balance): ranks that compute at different speeds
 * (a core that also serves interrupts, a busier or older node) take different shares of each
 * global batch, so that they reach each synchronized batch norm together instead of the
 * fastest waiting for the slowest at every layer.
 *
 * Rank r's equal shard is [r*B/P, (r+1)*B/P); a balanced cut may move each boundary by up to
 * `margin` images either way, so rank r always takes images of its equal shard widened by the
 * margin (its reach), which its loader prepares. After every step the ranks exchange their
 * compute time per image (one small all-reduce); every rank smooths the same numbers the same
 * way and so computes the same cuts for the next step: shares proportional to speed.
 *
 * Which rank takes which image changes only the order of floating-point sums (the step is the
 * global batch's either way), so a balanced run is as correct as an equal-shard one but not
 * bit-reproducible from run to run: timings decide the cuts. */
#ifndef BYOL_BALANCE_H
#define BYOL_BALANCE_H

#include <stdio.h>

typedef struct {
    int ranks, global, margin;
    int exchanges, updates; /* shard_plan_update calls; costs taken into the smoothing */
    int *cut;     /* [ranks + 1]: rank r takes images [cut[r], cut[r + 1]) of the global batch */
    double *cost; /* [ranks] smoothed seconds per image */
    double *sent; /* [ranks] the exchange buffer */
} ShardPlan;

/* Equal cuts of `global` images over `ranks` (global % ranks == 0). balance 0: the cuts never
 * move (margin 0); 1: up to a quarter of a shard either way, at most (B/P - 2) / 2, so every
 * shard keeps at least 2 images. */
void shard_plan_init(ShardPlan *p, int global, int ranks, int balance);
void shard_plan_free(ShardPlan *p);
/* The images rank r may be given: [*first, *first + *count). */
void shard_plan_reach(const ShardPlan *p, int r, int *first, int *count);
/* The most images any shard can hold: what a rank's work must be sized for. */
int shard_plan_max(const ShardPlan *p);
/* " 120 136\n": each rank's shard size, in rank order. */
void shard_plan_print_sizes(const ShardPlan *p, FILE *f);
/* Collective (every rank, every step) when balancing: this rank's compute seconds for its last
 * shard; the cuts for the next step. Without a margin it returns at once and sends nothing. The
 * first call (the warm-up step: page faults, thread pools) is not used. */
void shard_plan_update(ShardPlan *p, int rank, double seconds);
/* What shard_plan_update does with the exchanged costs (seconds per image of every rank): smooth
 * them and cut. Public for tests, which drive it without MPI. */
void shard_plan_observe(ShardPlan *p, const double *seconds_per_image);

#endif
