/* The figure of byol map: a 2-D map of points coloured by class, as SVG and, through
 * svg_render_png, as PNG.
 *
 * The map keeps its aspect ratio (distances in a PCA or t-SNE map mean the same along both
 * axes) inside a square frame; points are circles of radius 2 px at opacity 0.7, drawn in a
 * fixed pseudo-random order so that no class is always painted over the others. Colours:
 * Tableau 10 (chosen to stay distinguishable under the common colour-vision deficiencies) for
 * classes 0-9, then hues spaced by the golden angle at three lightnesses. The legend (a box to
 * the right, in as many columns as it needs) names each class present; points without a label
 * are grey and listed as "no label". A map without labels has one colour and no legend. Only the
 * elements and attributes svg_png.c reads are used. */
#ifndef BYOL_MAP_PLOT_H
#define BYOL_MAP_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"

typedef struct {
    const float *xy;                /* [n][2] */
    int n;
    const int32_t *labels;          /* [n], -1 where none; NULL: no labels */
    int n_classes;
    const char *const *class_names; /* [n_classes]; NULL: the class numbers */
    const char *title;              /* bold, first line */
    const char *subtitle;           /* smaller, second line (NULL: none) */
    const char *x_label, *y_label;  /* under and beside the frame (NULL: none) */
} MapPlot;

/* Class c's colour as "#rrggbb". */
void map_color(int c, char hex[8]);

/* The SVG as a malloc'ed string (its length in *len when non-NULL). */
char *map_plot_svg(const MapPlot *m, size_t *len);

/* Whether a file can be written at path (its folder exists and is writable, and it is not a
 * folder itself), checked before the work so that a typo costs no minutes. 0, or -1 with e
 * naming the path and what to do. */
int map_output_check(const char *path, Err *e);

/* Writes the SVG and its PNG rendering: both, or (on any failure) neither, with e set. */
int map_plot_write(const MapPlot *m, const char *png_path, const char *svg_path, Err *e);

#endif
