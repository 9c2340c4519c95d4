/* The retrieval grid of byol neighbors: one row per query, the query's picture, then its k
 * nearest bank pictures, best first.
 *
 * The query sits in a dark neutral frame and is set apart from its neighbours by a wider gap;
 * each neighbour's frame is green when its label equals the query's and red when not, and there
 * is no frame where a label is missing (unlabelled data). Under each cell, optionally, the class
 * name and the neighbour's cosine similarity (stb_easy_font, no font files).
 *
 * Pictures are drawn as the encoder saw them (the run's un-augmented centred square, before
 * normalization), scaled to `cell` pixels by area sampling: each output pixel is the mean of the
 * source pixels its footprint covers. Enlarging, the usual case (32-px CIFAR at 64), that is
 * nearest-neighbour: every source pixel becomes a sharp block and no colour is invented, which
 * is what a person judging an encoder wants to see; shrinking (224-px images at 64) it is a box
 * filter, which does not alias as nearest would. Gray pictures are drawn gray in an RGB grid (the
 * frames need colour).
 *
 * A grid taller than NEIGHBORS_MAX_HEIGHT wraps into blocks of rows side by side, so that a
 * thousand queries still make a picture a viewer opens; one wider than IMAGE_MAX_SIDE is
 * refused. */
#ifndef BYOL_NEIGHBORS_GRID_H
#define BYOL_NEIGHBORS_GRID_H

#include <stdint.h>

#include "../core/common.h"
#include "features.h"

enum { NEIGHBORS_MAX_HEIGHT = 8192 };

extern const uint8_t NEIGHBORS_MATCH_RGB[3], NEIGHBORS_MISMATCH_RGB[3], NEIGHBORS_QUERY_RGB[3],
    NEIGHBORS_BACKGROUND_RGB[3];

typedef struct {
    int rows, k;              /* queries, neighbours per query */
    int side, channels;       /* the pictures: side x side, HWC uint8, 1 (gray) or 3 channels */
    int cell;                 /* a picture's side in the grid, pixels */
    const uint8_t *query;     /* rows pictures */
    const uint8_t *neighbor;  /* rows * k pictures, query by query */
    const int32_t *query_label, *neighbor_label; /* NULL (unlabelled), or -1 where missing */
    const float *sim;         /* rows * k cosine similarities for the captions, or NULL */
    const char *const *class_names; /* n_classes names for the captions, or NULL */
    int n_classes;
} NeighborsGrid;

typedef struct {
    int w, h;                 /* the whole grid */
    int border, gap, sep;     /* frame width; gap between cells; extra gap after the query */
    int caption_h, text_scale, line_h;
    int slot_w, slot_h;       /* a framed cell with its caption */
    int row_w;                /* one row: the query and its neighbours */
    int rows_per_block, blocks, block_gap, margin;
} NeighborsLayout;

/* The grid's geometry; -1 with e filled when the sizes are out of range or the grid would be
 * wider than a PNG may be. */
int neighbors_layout(const NeighborsGrid *g, NeighborsLayout *L, Err *e);

/* The top-left pixel of the picture (inside its frame) of row `row`, column `col` (0: the query,
 * 1..k: the neighbours, best first). */
void neighbors_cell_origin(const NeighborsLayout *L, int row, int col, int *x, int *y);

/* Draws the grid as RGB (malloc'ed, w * h * 3, xfree it). */
int neighbors_grid_render(const NeighborsGrid *g, uint8_t **rgb, int *w, int *h, Err *e);

/* Draws it and writes it as a PNG at path, atomically (png_write: a temporary, then a rename;
 * nothing is left at path on failure). */
int neighbors_grid_write(const NeighborsGrid *g, const char *path, Err *e);

/* The picture image idx of split s as the encoder sees it under fc (preprocess_eval: the
 * centred square at fc->image_size, or fc->resize's protocol) but before normalization, as
 * HWC uint8 with ds->channels channels (fc->image_size squared of them). */
int neighbors_display_image(uint8_t *out, const Dataset *ds, Split s, int idx, const FeatureConfig *fc, Image *img,
                            AugScratch *scratch, Err *e);

#endif
