/* The cosine top-k that knn.c and retrieval.c share: L2-normalized copies, then each query's best
 * k bank items by float similarity in a heap whose root is the worst member, so that a full heap
 * is never sorted and a newcomer is compared with one value. */
#ifndef BYOL_TOPK_H
#define BYOL_TOPK_H

#include <math.h>
#include <string.h>

#include "../backend/gemm.h"
#include "../core/common.h"

/* L2-normalized copy of x [n, d] (a zero row stays zero), or NULL with e filled naming the first
 * non-finite row as "who: what feature row i". The norm is summed in double so that the float
 * result does not depend on who computes it (fast path, naive path, tests) nor on the threads. */
static inline float *topk_normalized_copy(const float *x, int n, int d, const char *who, const char *what, Err *e) {
    float *out = xmalloc((size_t)n * d * sizeof(float), what);
    int bad = -1;
#pragma omp parallel for schedule(static) if ((size_t)n * d > 65536)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *oi = out + (size_t)i * d;
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)xi[j] * xi[j];
        if (!isfinite(ss)) {
#pragma omp critical(topk_bad)
            if (bad < 0 || i < bad) bad = i;
            memset(oi, 0, (size_t)d * sizeof(float));
            continue;
        }
        double inv = ss > 0 ? 1.0 / sqrt(ss) : 0.0;
        for (int j = 0; j < d; j++) oi[j] = (float)(xi[j] * inv);
    }
    if (bad >= 0) {
        xfree(out);
        err_set(e, "%s: %s feature row %d is not finite (or overflows)", who, what, bad);
        return NULL;
    }
    return out;
}

/* The tie rule: of equal similarities the higher bank index is worse, since both callers promise
 * ties to the lower index. */
static inline int topk_worse(float sa, int ia, float sb, int ib) { return sa < sb || (sa == sb && ia > ib); }

static inline void topk_sift_down(float *hs, int *hi, int n, int pos) {
    for (;;) {
        int l = 2 * pos + 1, r = l + 1, w = pos;
        if (l < n && topk_worse(hs[l], hi[l], hs[w], hi[w])) w = l;
        if (r < n && topk_worse(hs[r], hi[r], hs[w], hi[w])) w = r;
        if (w == pos) return;
        float ts = hs[w];
        int ti = hi[w];
        hs[w] = hs[pos], hi[w] = hi[pos];
        hs[pos] = ts, hi[pos] = ti;
        pos = w;
    }
}

static inline void topk_push(float *hs, int *hi, int *n, float s, int idx) {
    int pos = (*n)++;
    hs[pos] = s, hi[pos] = idx;
    while (pos > 0) {
        int parent = (pos - 1) / 2;
        if (!topk_worse(hs[pos], hi[pos], hs[parent], hi[parent])) break;
        float ts = hs[parent];
        int ti = hi[parent];
        hs[parent] = hs[pos], hi[parent] = hi[pos];
        hs[pos] = ts, hi[pos] = ti;
        pos = parent;
    }
}

/* Feeds similarities s[0..n) of bank items first..first+n-1 into a heap of capacity k. The
 * indices must increase and exceed every index already fed: a candidate equal to the root then
 * has the higher index, so only a strictly larger similarity can enter a full heap. */
static inline void topk_feed(float *hs, int *hi, int *count, int k, const float *s, int first, int n) {
    int j = 0;
    for (; j < n && *count < k; j++) topk_push(hs, hi, count, s[j], first + j);
    float thr = *count ? hs[0] : 0.0f;
    for (; j < n; j++) {
        if (s[j] > thr) {
            hs[0] = s[j], hi[0] = first + j;
            topk_sift_down(hs, hi, k, 0);
            thr = hs[0];
        }
    }
}

/* topk_feed, passing over bank item skip (-1: none). Splitting the run around it keeps the hot
 * loop free of a per-item test. */
static inline void topk_feed_skip(float *hs, int *hi, int *count, int k, const float *s, int first, int n, int skip) {
    if (skip < first || skip >= first + n) {
        topk_feed(hs, hi, count, k, s, first, n);
        return;
    }
    const int cut = skip - first;
    topk_feed(hs, hi, count, k, s, first, cut);
    topk_feed(hs, hi, count, k, s + cut + 1, first + cut + 1, n - cut - 1);
}

/* The top k of each of nq queries (L2-normalized rows of qn [nq, d]) among the bank bn [n_bank, d]
 * by float cosine similarity, sgemm'd tile bank rows at a time so that the scratch sim
 * [nq, tile] stays bounded whatever the bank size. Heaps: hs, hi [nq, k] and count [nq]. skip
 * (NULL: none) gives each query a bank item to pass over (-1: none). */
static inline void topk_scan(const float *qn, int nq, const float *bn, int n_bank, int d, int tile, int k,
                             const int *skip, float *sim, float *hs, int *hi, int *count) {
    for (int q = 0; q < nq; q++) count[q] = 0;
    for (int b0 = 0; b0 < n_bank; b0 += tile) {
        const int nb = MIN(tile, n_bank - b0);
        /* Inside a parallel region OpenBLAS (OpenMP build) runs this on one thread. */
        sgemm(0, 1, nq, nb, d, 1.0f, qn, d, bn + (size_t)b0 * d, d, 0.0f, sim, nb);
        for (int q = 0; q < nq; q++)
            topk_feed_skip(hs + (size_t)q * k, hi + (size_t)q * k, &count[q], k, sim + (size_t)q * nb, b0, nb,
                           skip ? skip[q] : -1);
    }
}

#endif
