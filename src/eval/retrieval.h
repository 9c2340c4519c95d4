/* Nearest-neighbour retrieval by cosine similarity: for each query the k most similar rows of a
 * bank of features, as byol neighbors shows them.
 *
 * Exact and deterministic: both sets are L2-normalized in float (a zero row stays zero) and the
 * reported similarity of a pair is the dot product of the normalized rows summed in double, so
 * it does not depend on how a GEMM orders its sums (threads, tiles, the BLAS at hand). Order:
 * higher similarity first; equal similarities by the lower bank index.
 *
 * retrieval_topk finds candidates with sgemm in tiles like knn.c (RETRIEVAL_QUERY_BLOCK queries x
 * RETRIEVAL_BANK_TILE bank rows, memory bounded whatever the sizes), keeping the best k + slack
 * by float similarity per query, then rescores those in double. A float dot product of unit
 * vectors, summed in any order, is within about d * 2^-24 of the exact one; a row that was not
 * kept has a float similarity at most the weakest kept candidate's, so when the k-th rescored
 * similarity exceeds that by more than the bound (taken as (d + 4) * 2^-23), no discarded row can
 * belong to the top k. Otherwise that query is scanned again in double over the whole bank (rare:
 * many near-equal rows, e.g. duplicate images). The result is therefore identical to
 * retrieval_topk_naive, bit for bit. */
#ifndef BYOL_RETRIEVAL_H
#define BYOL_RETRIEVAL_H

#include <stdint.h>

#include "../core/common.h"

enum { RETRIEVAL_QUERY_BLOCK = 64, RETRIEVAL_BANK_TILE = 4096 };

/* Writes query q's neighbours to idx[q * k + j] and their similarities to sim[q * k + j],
 * j = 0 .. k-1, best first. exclude (NULL: none) gives per query a bank row it must never return
 * (-1: none), e.g. itself when queries are drawn from the bank. Returns 0, or -1 with e filled:
 * empty sets, d < 1, k < 1, k more than the bank rows a query may return, a non-finite feature. */
int retrieval_topk(const float *bank, int n_bank, const float *query, int n_query, int d, int k,
                   const int *exclude, int *idx, float *sim, Err *e);

/* The same by the plain method (every similarity in double, a full sort), for tests. */
int retrieval_topk_naive(const float *bank, int n_bank, const float *query, int n_query, int d, int k,
                         const int *exclude, int *idx, float *sim, Err *e);

/* The share of the n_query * k neighbours whose bank label equals their query's label; -1 when a
 * label is missing (negative) anywhere, as for unlabelled data. */
double retrieval_precision(const int *idx, int n_query, int k, const int32_t *bank_labels,
                           const int32_t *query_labels);

/* `count` distinct indices of [0, n), sorted increasing, a pure function of seed (a partial
 * Fisher-Yates shuffle), so that a retrieval grid can be drawn again. 1 <= count <= n. */
void retrieval_pick(int n, int count, uint64_t seed, int *out);

#endif
