#include "knn.h"

#include <math.h>

#include "topk.h"

int knn_effective_k(int k, int n_bank) { return k > n_bank ? n_bank : k; }

int class_rank(const double *score, int n_classes, int label) {
    int ahead = 0;
    for (int c = 0; c < n_classes; c++) ahead += score[c] > score[label] || (score[c] == score[label] && c < label);
    return ahead;
}

/* knn_predict, and with query_labels each label's rank among the classes into label_rank. */
static int knn_run(const float *bank, const int32_t *bank_labels, int n_bank, const float *query, int n_query, int d,
                   int n_classes, int k, float T, const int32_t *query_labels, int32_t *pred, int32_t *label_rank,
                   Err *e) {
    if (n_bank < 1 || n_query < 1) return err_set(e, "knn: empty %s set", n_bank < 1 ? "bank" : "query");
    if (d < 1) return err_set(e, "knn: feature dimension %d must be at least 1", d);
    if (n_classes < 2) return err_set(e, "knn: %d classes, need at least 2", n_classes);
    if (k < 1) return err_set(e, "knn: k = %d must be at least 1", k);
    if (!(T > 0) || !isfinite(T)) return err_set(e, "knn: temperature %g must be positive and finite", (double)T);
    for (int i = 0; i < n_bank; i++)
        if (bank_labels[i] < 0 || bank_labels[i] >= n_classes)
            return err_set(e, "knn: bank label %d at row %d is outside [0, %d)", (int)bank_labels[i], i, n_classes);
    k = knn_effective_k(k, n_bank);

    float *bn = topk_normalized_copy(bank, n_bank, d, "knn", "knn bank", e);
    if (!bn) return -1;
    float *qn = topk_normalized_copy(query, n_query, d, "knn", "knn query", e);
    if (!qn) {
        xfree(bn);
        return -1;
    }

    const int n_blocks = (n_query + KNN_QUERY_BLOCK - 1) / KNN_QUERY_BLOCK;
    const int tile = MIN(KNN_BANK_TILE, n_bank);
    const double inv_t = 1.0 / (double)T;
    /* Always a parallel region, even for one block: inside it OpenBLAS runs each GEMM on the
     * calling thread, so a block's similarities (and the ties among them) are the same bits at
     * any thread count; outside it a single block's GEMM would be split by the thread count. */
#pragma omp parallel
    {
        float *sim = xmalloc((size_t)KNN_QUERY_BLOCK * tile * sizeof(float), "knn similarities");
        float *hs = xmalloc((size_t)KNN_QUERY_BLOCK * k * sizeof(float), "knn heaps");
        int *hi = xmalloc((size_t)KNN_QUERY_BLOCK * k * sizeof(int), "knn heaps");
        double *score = xmalloc((size_t)n_classes * sizeof(double), "knn class scores");
        int count[KNN_QUERY_BLOCK];
#pragma omp for schedule(dynamic, 1)
        for (int blk = 0; blk < n_blocks; blk++) {
            const int q0 = blk * KNN_QUERY_BLOCK, nq = MIN(KNN_QUERY_BLOCK, n_query - q0);
            topk_scan(qn + (size_t)q0 * d, nq, bn, n_bank, d, tile, k, NULL, sim, hs, hi, count);
            for (int q = 0; q < nq; q++) {
                const float *s = hs + (size_t)q * k;
                const int *idx = hi + (size_t)q * k;
                /* exp(s/T) scaled by exp(-s_max/T), which leaves the argmax and cannot overflow. */
                float smax = s[0];
                for (int j = 1; j < k; j++) smax = s[j] > smax ? s[j] : smax;
                for (int c = 0; c < n_classes; c++) score[c] = 0;
                for (int j = 0; j < k; j++) score[bank_labels[idx[j]]] += exp(((double)s[j] - smax) * inv_t);
                int best = 0;
                for (int c = 1; c < n_classes; c++)
                    if (score[c] > score[best]) best = c;
                pred[q0 + q] = best;
                if (label_rank) label_rank[q0 + q] = class_rank(score, n_classes, query_labels[q0 + q]);
            }
        }
        xfree(score);
        xfree(hi);
        xfree(hs);
        xfree(sim);
    }
    xfree(qn);
    xfree(bn);
    return 0;
}

int knn_predict(const float *bank, const int32_t *bank_labels, int n_bank, const float *query,
                int n_query, int d, int n_classes, int k, float T, int32_t *pred, Err *e) {
    return knn_run(bank, bank_labels, n_bank, query, n_query, d, n_classes, k, T, NULL, pred, NULL, e);
}

double knn_top1(const float *bank, const int32_t *bank_labels, int n_bank, const float *query,
                const int32_t *query_labels, int n_query, int d, int n_classes, int k, float T,
                Err *e) {
    return knn_accuracy(bank, bank_labels, n_bank, query, query_labels, n_query, d, n_classes, k, T, 1, NULL, e);
}

double knn_accuracy(const float *bank, const int32_t *bank_labels, int n_bank, const float *query,
                    const int32_t *query_labels, int n_query, int d, int n_classes, int k, float T, int top,
                    double *topk, Err *e) {
    if (n_classes < 2) {
        err_set(e, "knn: %d classes, need at least 2", n_classes);
        return -1.0;
    }
    for (int i = 0; i < n_query; i++)
        if (query_labels[i] < 0 || query_labels[i] >= n_classes) {
            err_set(e, "knn: query label %d at row %d is outside [0, %d)", (int)query_labels[i], i, n_classes);
            return -1.0;
        }
    int32_t *pred = xmalloc(2 * (size_t)(n_query > 0 ? n_query : 1) * sizeof(int32_t), "knn predictions");
    int32_t *rank = pred + (n_query > 0 ? n_query : 1);
    if (knn_run(bank, bank_labels, n_bank, query, n_query, d, n_classes, k, T, query_labels, pred, rank, e) != 0) {
        xfree(pred);
        return -1.0;
    }
    long correct = 0, in_top = 0;
    for (int i = 0; i < n_query; i++) correct += pred[i] == query_labels[i], in_top += rank[i] < top;
    xfree(pred);
    if (topk) *topk = (double)in_top / n_query;
    return (double)correct / n_query;
}
