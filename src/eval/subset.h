/* The labelled fraction of the semi-supervised protocol (the paper's 1% and 10% of ImageNet's
 * labels): a class-balanced subset of a split, a fixed function of the seed, shared by byol eval
 * (--label-fraction) and fine-tuning. */
#ifndef BYOL_SUBSET_H
#define BYOL_SUBSET_H

#include <stdint.h>

#include "../core/common.h"

/* 0 when fraction is in (0, 1], else -1 with e set (a line naming the flag). */
int label_fraction_check(double fraction, Err *e);

/* Chooses round(fraction x count) images of each class (at least one) from labels[n] in
 * [0, n_classes), drawn without replacement by a stream keyed (seed, class), and writes their
 * indices, ascending, to idx (room for n). Returns how many, or -1 with e set when fraction is
 * outside (0, 1] or so small that a class gets no image (the class and the smallest
 * fraction that gives it one named). class_names may be NULL. */
int label_subset(const int32_t *labels, int n, int n_classes, double fraction, uint64_t seed,
                 char *const *class_names, int32_t *idx, Err *e);

#endif
