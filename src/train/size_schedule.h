/* A resolution schedule (--size-schedule 16:0.5,24:0.3,32:0.2): the share of the run spent at
 * each view size, in order. With the CIFAR stem a step costs about its pixels, so a run that
 * spends half its budget at 16 px sees about twice the images it would at 32 px; it ends at
 * the image size, so the batch-norm statistics and the evaluation are at the size the encoder
 * is used at. The shares are of the time budget, or of the steps of an epoch run. */
#ifndef BYOL_SIZE_SCHEDULE_H
#define BYOL_SIZE_SCHEDULE_H

#include "../core/common.h"

enum { SIZE_SCHEDULE_MAX = 8 };

typedef struct {
    int n;                          /* phases; 0: no schedule (the image size throughout) */
    int size[SIZE_SCHEDULE_MAX];    /* view side in px */
    double end[SIZE_SCHEDULE_MAX];  /* where each phase ends, a fraction of the run (the last 1) */
} SizeSchedule;

/* Parses "SIZE:SHARE,SIZE:SHARE,..." for images of image_size px: sizes from 8 to image_size,
 * the last one image_size, shares above 0 adding up to 1 (within 0.001). NULL or "" is no
 * schedule; "auto" is half the image size for 0.5 of the run, three quarters for 0.3, the image
 * size for 0.2 (16:0.5,24:0.3,32:0.2 at 32 px). 0, or -1 with e set (naming the flag, the value and what is wrong). */
int size_schedule_parse(SizeSchedule *s, const char *text, int image_size, Err *e);
/* The phase in effect at progress frac in [0, 1) (0 without a schedule). */
int size_schedule_phase(const SizeSchedule *s, double frac);
/* The smallest size of the schedule (image_size without one). */
int size_schedule_min(const SizeSchedule *s, int image_size);

#endif
