/* Weighted k-nearest-neighbour classifier on frozen features, the protocol of InstDisc (Wu et al.
 * 2018) as used by solo-learn and the BYOL literature.
 *
 * Features are row-major [n, d]. Both sets are L2-normalized (on copies; a zero vector stays
 * zero), so cosine similarity is a dot product, computed with sgemm in tiles of KNN_QUERY_BLOCK
 * queries x KNN_BANK_TILE bank items (memory bounded whatever the sizes). For each query the k
 * most similar bank items are kept (k clamped to n_bank; ties: lower bank index first) by a heap
 * of size k, never a full sort; each votes for its class with weight exp(s / T) (computed as
 * exp((s - s_max) / T), the same votes up to a common factor, which cannot overflow), and the
 * prediction is the class with the largest summed weight (ties: lower class index).
 *
 * Query blocks run in parallel (OpenMP); each block's GEMMs run on its own thread, one block
 * included, and the blocks never depend on each other, so the predictions do not depend on the
 * thread count.
 * Callers' defaults: k = 200, T = 0.1. */
#ifndef BYOL_KNN_H
#define BYOL_KNN_H

#include <stdint.h>

#include "../core/common.h"

#define KNN_DEFAULT_K 200
#define KNN_DEFAULT_T 0.1f

enum { KNN_QUERY_BLOCK = 128, KNN_BANK_TILE = 4096 };

/* The k knn_predict uses: k capped at the bank size (every bank item votes when the bank holds
 * fewer than k), so reports can state the k that was used. */
int knn_effective_k(int k, int n_bank);

/* Writes the predicted class of each query to pred[n_query]. Returns 0, or -1 with e filled on
 * bad input: empty sets, d < 1, n_classes < 2, k < 1, T not positive and finite, a bank label
 * outside [0, n_classes), a non-finite feature. */
int knn_predict(const float *bank, const int32_t *bank_labels, int n_bank, const float *query,
                int n_query, int d, int n_classes, int k, float T, int32_t *pred, Err *e);

/* Top-1 accuracy in [0, 1] of knn_predict against query_labels; -1 with e filled on bad input
 * (as knn_predict, and a query label outside [0, n_classes)). */
double knn_top1(const float *bank, const int32_t *bank_labels, int n_bank, const float *query,
                const int32_t *query_labels, int n_query, int d, int n_classes, int k, float T,
                Err *e);

/* knn_top1, and the top-`top` accuracy into *topk (NULL: not wanted): the fraction of queries
 * whose label is among the `top` classes of largest summed weight (class_rank < top). */
double knn_accuracy(const float *bank, const int32_t *bank_labels, int n_bank, const float *query,
                    const int32_t *query_labels, int n_query, int d, int n_classes, int k, float T, int top,
                    double *topk, Err *e);

/* How many classes rank ahead of `label` by score: a larger score, or an equal one at a lower
 * index (the argmax's tie rule, so rank 0 is the top-1 prediction). */
int class_rank(const double *score, int n_classes, int label);

#endif
