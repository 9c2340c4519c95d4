/* A figure of plot.c (its SVG) as a PNG, for the places that want one (byol lab's lab.png). */
#ifndef BYOL_SVG_PNG_H
#define BYOL_SVG_PNG_H

#include "../core/common.h"

/* Renders svg_path (an SVG plot.c wrote) into png_path at the same size. 0, or -1 with e set (a
 * file that cannot be read, not such an SVG, a PNG that cannot be written). */
int svg_render_png(const char *svg_path, const char *png_path, Err *e);

#endif
