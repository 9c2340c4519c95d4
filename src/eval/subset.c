#include "subset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"

int label_fraction_check(double fraction, Err *e) {
    if (!(fraction > 0 && fraction <= 1))
        return err_set(e, "--label-fraction %g: a fraction in (0, 1] (0.01 for 1%% of the labels)", fraction);
    return 0;
}

/* The smallest fraction, to 3 significant digits, that keeps one of `count` images: 0.5 / count,
 * rounded up where fraction x count would round to 0 once the flag is read as a float (1e-4 of
 * 5000: 0.0001f x 5000 is 0.49999...). */
static double smallest_fraction(int count) {
    const double f = 0.5 / count, unit = pow(10, floor(log10(f)) - 2);
    double g = ceil(f / unit - 1e-9) * unit;
    while ((int)floor((double)(float)g * count + 0.5) < 1) g += unit;
    return g;
}

int label_subset(const int32_t *labels, int n, int n_classes, double fraction, uint64_t seed,
                 char *const *class_names, int32_t *idx, Err *e) {
    if (label_fraction_check(fraction, e)) return -1;
    int *count = xcalloc((size_t)n_classes, sizeof *count, "label counts");
    for (int i = 0; i < n; i++)
        if (labels[i] >= 0 && labels[i] < n_classes) count[labels[i]]++;
    for (int c = 0; c < n_classes; c++) {
        if (count[c] && (int)floor(fraction * count[c] + 0.5) < 1) {
            char name[64];
            if (class_names) snprintf(name, sizeof name, "'%.48s'", class_names[c]);
            else snprintf(name, sizeof name, "%d", c);
            const int have = count[c];
            xfree(count);
            return err_set(e, "--label-fraction %g: class %s gets no image of its %d (the smallest fraction that gives "
                              "it one: %.3g)", fraction, name, have, smallest_fraction(have));
        }
    }
    /* each class's members in order, then a Fisher-Yates shuffle keyed by (seed, class) of
     * which the first round(fraction x count) are kept */
    int32_t *members = xmalloc((size_t)(n ? n : 1) * sizeof *members, "class members");
    char *keep = xcalloc((size_t)(n ? n : 1), 1, "subset marks");
    for (int c = 0; c < n_classes; c++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (labels[i] == c) members[m++] = i;
        Rng r = rng_keyed(seed, 0x5ab5e7u, (uint64_t)c, 0);
        for (int i = m - 1; i > 0; i--) {
            const int j = (int)(rng_u01(&r) * (i + 1));
            const int32_t t = members[i];
            members[i] = members[j], members[j] = t;
        }
        const int take = (int)floor(fraction * m + 0.5);
        for (int i = 0; i < take; i++) keep[members[i]] = 1;
    }
    int k = 0;
    for (int i = 0; i < n; i++)
        if (keep[i]) idx[k++] = i;
    xfree(keep), xfree(members), xfree(count);
    return k;
}
