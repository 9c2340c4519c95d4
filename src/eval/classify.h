/* A classifier's predictions: class probabilities of a split's images, un-augmented as byol
 * eval makes them (the classifier's image size and normalization, batch norm in evaluation
 * mode, so a batch of one image gets the same answer as in any batch), and top-k accuracy. */
#ifndef BYOL_CLASSIFY_H
#define BYOL_CLASSIFY_H

#include "../data/dataset.h"
#include "../model/classifier.h"

/* probs [n, n_classes] (softmax of the logits) and labels [n] (-1 where none), both malloc'ed,
 * of split s (max_images > 0: an evenly spaced subset). Returns n, or -1 with e set. */
int classifier_predict(const Classifier *c, const Dataset *ds, Split s, int max_images, float **probs,
                       int32_t **labels, Err *e);

/* Top-1 and top-5 accuracy of probs [n, K] against labels (rows without a label skipped; ties by
 * class_rank's rule). Returns how many rows were scored. */
int classify_accuracy(const float *probs, const int32_t *labels, int n, int K, double *top1, double *top5);

/* Softmax of each row of x [rows, K], in place (max subtracted, sums in double). */
void softmax_rows(float *x, int rows, int K);

#endif
