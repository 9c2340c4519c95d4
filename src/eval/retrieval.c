#include "retrieval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"
#include "topk.h"

/* The similarity both paths report: float products are exact in double, and the fixed order of
 * the sum makes it reproducible. */
static double dot_d(const float *a, const float *b, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)a[j] * b[j];
    return s;
}

typedef struct {
    double s;
    int i;
} Pair;

static int pair_cmp(const void *pa, const void *pb) {
    const Pair *a = pa, *b = pb;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

static int check_args(int n_bank, int n_query, int d, int k, const int *exclude, Err *e) {
    if (n_bank < 1 || n_query < 1) return err_set(e, "retrieval: empty %s set", n_bank < 1 ? "bank" : "query");
    if (d < 1) return err_set(e, "retrieval: feature dimension %d must be at least 1", d);
    if (k < 1) return err_set(e, "retrieval: k = %d must be at least 1", k);
    for (int q = 0; q < n_query; q++) {
        const int avail = n_bank - (exclude && exclude[q] >= 0 && exclude[q] < n_bank);
        if (k > avail)
            return err_set(e, "retrieval: k = %d is more than the %d bank rows query %d may return", k, avail, q);
    }
    return 0;
}

/* Both entry points' checks and normalized copies: 0 with *bn and *qn to free, or -1 with e
 * filled and nothing to free. */
static int prepare(const float *bank, int n_bank, const float *query, int n_query, int d, int k, const int *exclude,
                   float **bn, float **qn, Err *e) {
    if (check_args(n_bank, n_query, d, k, exclude, e)) return -1;
    *bn = topk_normalized_copy(bank, n_bank, d, "retrieval", "bank", e);
    if (!*bn) return -1;
    *qn = topk_normalized_copy(query, n_query, d, "retrieval", "query", e);
    if (!*qn) {
        xfree(*bn);
        return -1;
    }
    return 0;
}

/* One query against the whole bank in double, fully sorted: the reference, and the fast path's
 * fallback. pairs: n_bank scratch. */
static void scan_one(const float *qn, const float *bn, int n_bank, int d, int k, int skip, Pair *pairs, int *idx,
                     float *sim) {
    int m = 0;
    for (int b = 0; b < n_bank; b++)
        if (b != skip) pairs[m++] = (Pair){dot_d(qn, bn + (size_t)b * d, d), b};
    qsort(pairs, (size_t)m, sizeof *pairs, pair_cmp);
    for (int j = 0; j < k; j++) idx[j] = pairs[j].i, sim[j] = (float)pairs[j].s;
}

int retrieval_topk_naive(const float *bank, int n_bank, const float *query, int n_query, int d, int k,
                         const int *exclude, int *idx, float *sim, Err *e) {
    float *bn, *qn;
    if (prepare(bank, n_bank, query, n_query, d, k, exclude, &bn, &qn, e)) return -1;
    Pair *pairs = xmalloc((size_t)n_bank * sizeof *pairs, "retrieval similarities");
    for (int q = 0; q < n_query; q++)
        scan_one(qn + (size_t)q * d, bn, n_bank, d, k, exclude ? exclude[q] : -1, pairs, idx + (size_t)q * k,
                 sim + (size_t)q * k);
    xfree(pairs), xfree(qn), xfree(bn);
    return 0;
}

int retrieval_topk(const float *bank, int n_bank, const float *query, int n_query, int d, int k, const int *exclude,
                   int *idx, float *sim, Err *e) {
    float *bn, *qn;
    if (prepare(bank, n_bank, query, n_query, d, k, exclude, &bn, &qn, e)) return -1;
    /* Slack beyond k, so that the certificate below nearly always holds without a rescan. */
    const int m_max = MIN(n_bank, 2 * k + 16);
    const double bound = (d + 4) * ldexp(1.0, -23);
    const int n_blocks = (n_query + RETRIEVAL_QUERY_BLOCK - 1) / RETRIEVAL_QUERY_BLOCK;
    const int tile = MIN(RETRIEVAL_BANK_TILE, n_bank);
#pragma omp parallel if (n_blocks > 1)
    {
        float *s = xmalloc((size_t)RETRIEVAL_QUERY_BLOCK * tile * sizeof(float), "retrieval similarities");
        float *hs = xmalloc((size_t)RETRIEVAL_QUERY_BLOCK * m_max * sizeof(float), "retrieval candidates");
        int *hi = xmalloc((size_t)RETRIEVAL_QUERY_BLOCK * m_max * sizeof(int), "retrieval candidates");
        Pair *pairs = NULL; /* the rescan's, allocated when a query needs one */
        Pair *cp = xmalloc((size_t)m_max * sizeof(Pair), "retrieval candidates");
        int count[RETRIEVAL_QUERY_BLOCK];
#pragma omp for schedule(dynamic, 1)
        for (int blk = 0; blk < n_blocks; blk++) {
            const int q0 = blk * RETRIEVAL_QUERY_BLOCK, nq = MIN(RETRIEVAL_QUERY_BLOCK, n_query - q0);
            topk_scan(qn + (size_t)q0 * d, nq, bn, n_bank, d, tile, m_max, exclude ? exclude + q0 : NULL, s, hs, hi,
                      count);
            for (int q = 0; q < nq; q++) {
                const int gq = q0 + q, skip = exclude ? exclude[gq] : -1, m = count[q];
                const float *qrow = qn + (size_t)gq * d;
                const float *fs = hs + (size_t)q * m_max;
                const int *fi = hi + (size_t)q * m_max;
                for (int j = 0; j < m; j++) cp[j] = (Pair){dot_d(qrow, bn + (size_t)fi[j] * d, d), fi[j]};
                qsort(cp, (size_t)m, sizeof *cp, pair_cmp);
                const int avail = n_bank - (skip >= 0 && skip < n_bank);
                /* fs[0] is the heap's root: the weakest candidate kept by float similarity. */
                if (m < avail && !(cp[k - 1].s > (double)fs[0] + bound)) {
                    if (!pairs) pairs = xmalloc((size_t)n_bank * sizeof *pairs, "retrieval similarities");
                    scan_one(qrow, bn, n_bank, d, k, skip, pairs, idx + (size_t)gq * k, sim + (size_t)gq * k);
                    continue;
                }
                for (int j = 0; j < k; j++) idx[(size_t)gq * k + j] = cp[j].i, sim[(size_t)gq * k + j] = (float)cp[j].s;
            }
        }
        xfree(cp), xfree(pairs), xfree(hi), xfree(hs), xfree(s);
    }
    xfree(qn), xfree(bn);
    return 0;
}

double retrieval_precision(const int *idx, int n_query, int k, const int32_t *bank_labels,
                           const int32_t *query_labels) {
    if (!bank_labels || !query_labels || n_query < 1 || k < 1) return -1;
    long same = 0;
    for (int q = 0; q < n_query; q++) {
        if (query_labels[q] < 0) return -1;
        for (int j = 0; j < k; j++) {
            const int32_t l = bank_labels[idx[(size_t)q * k + j]];
            if (l < 0) return -1;
            same += l == query_labels[q];
        }
    }
    return (double)same / ((double)n_query * k);
}

void retrieval_pick(int n, int count, uint64_t seed, int *out) {
    int *perm = xmalloc((size_t)n * sizeof(int), "query indices");
    for (int i = 0; i < n; i++) perm[i] = i;
    /* The key's second word sets this stream apart from the loader's and augmentations'. */
    Rng r = rng_keyed(seed, 0x6e65696768626f72ULL, 0, 0);
    for (int i = 0; i < count; i++) {
        const int j = i + (int)rng_below(&r, (uint64_t)(n - i));
        const int t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    /* Counting sort over the chosen: they are distinct and below n. */
    char *chosen = xcalloc((size_t)n, 1, "query indices");
    for (int i = 0; i < count; i++) chosen[perm[i]] = 1;
    for (int i = 0, c = 0; i < n; i++)
        if (chosen[i]) out[c++] = i;
    xfree(chosen), xfree(perm);
}
