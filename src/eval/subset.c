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
                              "it one: %.3g)", fraction, name, have, 0.5 / have);
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
