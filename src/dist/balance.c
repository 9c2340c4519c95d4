/* Balanced shards: see balance.h. */
#include "balance.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/common.h"
#include "dist.h"

/* Weight of the newest step in the smoothed cost: steps vary by 10-20% on a shared machine, so
 * one step alone would move the cuts back and forth; about four steps' memory follows a core
 * that stays slower within a few steps. */
#define COST_SMOOTHING 0.3

void shard_plan_init(ShardPlan *p, int global, int ranks, int balance) {
    memset(p, 0, sizeof *p);
    if (ranks < 1 || global % ranks != 0) die("shard plan: %d images do not split over %d ranks", global, ranks);
    p->ranks = ranks;
    p->global = global;
    const int equal = global / ranks;
    p->margin = balance && ranks > 1 ? MIN(equal / 4, (equal - 2) / 2) : 0;
    if (p->margin < 0) p->margin = 0;
    p->cut = xmalloc((size_t)(ranks + 1) * sizeof(int), "shard plan");
    p->cost = xcalloc((size_t)ranks, sizeof(double), "shard plan");
    p->sent = xcalloc((size_t)ranks, sizeof(double), "shard plan");
    for (int r = 0; r <= ranks; r++) p->cut[r] = r * equal;
}

void shard_plan_free(ShardPlan *p) {
    xfree(p->cut), xfree(p->cost), xfree(p->sent);
    memset(p, 0, sizeof *p);
}

void shard_plan_reach(const ShardPlan *p, int r, int *first, int *count) {
    const int equal = p->global / p->ranks;
    const int lo = MAX(0, r * equal - (r > 0 ? p->margin : 0));
    const int hi = MIN(p->global, (r + 1) * equal + (r + 1 < p->ranks ? p->margin : 0));
    *first = lo;
    *count = hi - lo;
}

int shard_plan_max(const ShardPlan *p) {
    return p->global / p->ranks + 2 * p->margin; /* a middle rank's reach; margin 0 on one rank */
}

void shard_plan_print_sizes(const ShardPlan *p, FILE *f) {
    for (int r = 0; r < p->ranks; r++) fprintf(f, " %d", p->cut[r + 1] - p->cut[r]);
    fprintf(f, "\n");
}

void shard_plan_observe(ShardPlan *p, const double *seconds_per_image) {
    const int P = p->ranks, equal = p->global / P;
    for (int r = 0; r < P; r++) {
        const double x = seconds_per_image[r];
        if (!(x > 0) || !isfinite(x)) return; /* a clock that did not move: keep the cuts */
    }
    for (int r = 0; r < P; r++)
        p->cost[r] = p->updates == 0 ? seconds_per_image[r]
                                     : (1 - COST_SMOOTHING) * p->cost[r] + COST_SMOOTHING * seconds_per_image[r];
    p->updates++;
    if (p->margin == 0) return;
    /* shares proportional to speed; each boundary rounded, then held within the margin of its
     * equal position (which keeps every shard at >= B/P - 2*margin >= 2 images) */
    double speed_total = 0;
    for (int r = 0; r < P; r++) speed_total += 1.0 / p->cost[r];
    double before = 0;
    for (int r = 1; r < P; r++) {
        before += 1.0 / p->cost[r - 1];
        const int want = (int)lround(p->global * (before / speed_total));
        p->cut[r] = MIN(MAX(want, r * equal - p->margin), r * equal + p->margin);
    }
}

void shard_plan_update(ShardPlan *p, int rank, double seconds) {
    if (p->margin == 0) return; /* equal shards for good (one rank, or no --balance): nothing to send */
    const int n = p->cut[rank + 1] - p->cut[rank];
    memset(p->sent, 0, (size_t)p->ranks * sizeof(double));
    p->sent[rank] = seconds / n; /* one non-zero term per slot: the sums are exact on every rank */
    dist_allreduce_sum_f64(p->sent, p->ranks, "the shard balance");
    if (p->exchanges++ == 0) return; /* the warm-up step */
    shard_plan_observe(p, p->sent);
}
