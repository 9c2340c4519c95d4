#include "size_schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* "auto": half the image size for half the run, three quarters for 0.3, the image size for the
 * last 0.2 (16:0.5,24:0.3,32:0.2 at 32 px; 51.6% kNN against 37.6% at 32 px throughout, in 15
 * minutes of CIFAR-10 with --var-cov, docs/results.md). Sizes under 8 px are raised to 8, and a
 * size met twice in a row keeps one phase. */
static void size_schedule_auto(SizeSchedule *s, int image_size) {
    const int size[3] = {MAX(8, (image_size + 1) / 2), MAX(8, (3 * image_size + 2) / 4), image_size};
    const double end[3] = {0.5, 0.8, 1.0};
    for (int i = 0; i < 3; i++) {
        const int sz = MIN(size[i], image_size);
        if (s->n && s->size[s->n - 1] == sz) s->end[s->n - 1] = end[i];
        else s->size[s->n] = sz, s->end[s->n] = end[i], s->n++;
    }
}

int size_schedule_parse(SizeSchedule *s, const char *text, int image_size, Err *e) {
    memset(s, 0, sizeof *s);
    if (!text || !*text) return 0;
    if (strcmp(text, "auto") == 0) {
        size_schedule_auto(s, image_size);
        return 0;
    }
    const char *p = text;
    double sum = 0;
    while (*p) {
        if (s->n == SIZE_SCHEDULE_MAX)
            return err_set(e, "--size-schedule %.128s: at most %d sizes", text, SIZE_SCHEDULE_MAX);
        char *end;
        long size = strtol(p, &end, 10);
        if (end == p || *end != ':')
            return err_set(e, "--size-schedule %.128s: expected SIZE:SHARE pairs separated by commas, as in "
                              "16:0.5,24:0.3,32:0.2", text);
        p = end + 1;
        double share = strtod(p, &end);
        if (end == p || (*end && *end != ','))
            return err_set(e, "--size-schedule %.128s: '%.32s' is not a share of the run (a number above 0, the "
                              "shares adding up to 1)", text, p);
        if (size < 8 || size > image_size)
            return err_set(e, "--size-schedule %.128s: size %ld px: sizes are 8 to the image size (%d px)", text,
                           size, image_size);
        if (!(share > 0 && share <= 1))
            return err_set(e, "--size-schedule %.128s: share %g of %ld px: a share is above 0 and at most 1", text,
                           share, size);
        sum += share;
        s->size[s->n] = (int)size;
        s->end[s->n] = sum;
        s->n++;
        p = *end ? end + 1 : end;
        if (*end && !*p) return err_set(e, "--size-schedule %.128s: a comma ends it", text);
    }
    if (fabs(sum - 1) > 1e-3)
        return err_set(e, "--size-schedule %.128s: the shares add up to %g, not 1", text, sum);
    if (s->size[s->n - 1] != image_size)
        return err_set(e, "--size-schedule %.128s: the last size is %d px, but the run must end at the image size "
                          "(%d px: batch-norm statistics and the evaluation are at it)", text, s->size[s->n - 1],
                       image_size);
    s->end[s->n - 1] = 1.0; /* the rounding of the sum cannot leave the end of the run outside */
    return 0;
}

int size_schedule_phase(const SizeSchedule *s, double frac) {
    int i = 0;
    while (i < s->n - 1 && frac >= s->end[i]) i++;
    return i;
}

int size_schedule_min(const SizeSchedule *s, int image_size) {
    int m = image_size;
    for (int i = 0; i < s->n; i++) m = s->size[i] < m ? s->size[i] : m;
    return m;
}
