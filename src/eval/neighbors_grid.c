#include "neighbors_grid.h"

#include <math.h>
#include <string.h>

#include "../data/image.h"
#include "easy_font.h"

const uint8_t NEIGHBORS_MATCH_RGB[3] = {20, 160, 60};
const uint8_t NEIGHBORS_MISMATCH_RGB[3] = {220, 40, 40};
const uint8_t NEIGHBORS_QUERY_RGB[3] = {60, 60, 60};
const uint8_t NEIGHBORS_BACKGROUND_RGB[3] = {255, 255, 255};
static const uint8_t TEXT_RGB[3] = {30, 30, 30};

int neighbors_layout(const NeighborsGrid *g, NeighborsLayout *L, Err *e) {
    if (g->rows < 1 || g->k < 1)
        return err_set(e, "neighbors grid: %d rows of %d neighbours: need at least 1 each", g->rows, g->k);
    if (g->side < 1 || (g->channels != 1 && g->channels != 3))
        return err_set(e, "neighbors grid: %dx%d pictures with %d channels (need 1 or 3)", g->side, g->side,
                       g->channels);
    if (g->cell < 8 || g->cell > 1024) return err_set(e, "neighbors grid: cell %d px is outside [8, 1024]", g->cell);
    memset(L, 0, sizeof *L);
    const int c = g->cell;
    L->border = MAX(2, c / 16);
    L->gap = MAX(3, c / 16);
    L->sep = 3 * L->gap;
    L->margin = 2 * L->gap;
    L->block_gap = 6 * L->gap;
    L->text_scale = MAX(1, c / 64);
    L->line_h = 10 * L->text_scale; /* stb_easy_font's glyphs: 7 px above the baseline, descenders 2 */
    const int lines = (g->class_names != NULL) + (g->sim != NULL);
    L->caption_h = lines ? lines * L->line_h + L->text_scale : 0;
    L->slot_w = c + 2 * L->border;
    L->slot_h = c + 2 * L->border + L->caption_h;
    L->row_w = (1 + g->k) * L->slot_w + g->k * L->gap + L->sep;
    const int64_t fit = (NEIGHBORS_MAX_HEIGHT - 2 * L->margin + L->gap) / (L->slot_h + L->gap);
    const int rpb_max = (int)MAX(1, fit);
    L->blocks = (g->rows + rpb_max - 1) / rpb_max;
    L->rows_per_block = (g->rows + L->blocks - 1) / L->blocks; /* balanced, no short last block */
    const int64_t w = 2 * L->margin + (int64_t)L->blocks * L->row_w + (int64_t)(L->blocks - 1) * L->block_gap;
    const int64_t h = 2 * L->margin + (int64_t)L->rows_per_block * (L->slot_h + L->gap) - L->gap;
    if (w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE || (uint64_t)w * (uint64_t)h > IMAGE_MAX_PIXELS)
        return err_set(e,
                       "%d rows of 1 + %d pictures at %d px make a %lldx%lld-pixel grid, more than a PNG here may be "
                       "(%d a side): give fewer queries, a smaller k or a smaller cell",
                       g->rows, g->k, c, (long long)w, (long long)h, IMAGE_MAX_SIDE);
    L->w = (int)w, L->h = (int)h;
    return 0;
}

/* The slot (frame's top-left) of a cell. */
static void slot_origin(const NeighborsLayout *L, int row, int col, int *x, int *y) {
    const int block = row / L->rows_per_block, r = row % L->rows_per_block;
    *x = L->margin + block * (L->row_w + L->block_gap) + col * (L->slot_w + L->gap) + (col > 0 ? L->sep : 0);
    *y = L->margin + r * (L->slot_h + L->gap);
}

void neighbors_cell_origin(const NeighborsLayout *L, int row, int col, int *x, int *y) {
    slot_origin(L, row, col, x, y);
    *x += L->border, *y += L->border;
}

static void fill(uint8_t *px, int gw, int x0, int y0, int w, int h, const uint8_t rgb[3]) {
    for (int y = y0; y < y0 + h; y++)
        for (int x = x0; x < x0 + w; x++) memcpy(px + ((size_t)y * gw + x) * 3, rgb, 3);
}

/* Area sampling (see the header): output pixel y covers source rows [y*S/cell, (y+1)*S/cell),
 * at least one. */
static void blit(uint8_t *px, int gw, int x0, int y0, const uint8_t *pic, int S, int C, int cell) {
    for (int y = 0; y < cell; y++) {
        const int sy0 = (int)((int64_t)y * S / cell), sy1 = MAX(sy0 + 1, (int)((int64_t)(y + 1) * S / cell));
        for (int x = 0; x < cell; x++) {
            const int sx0 = (int)((int64_t)x * S / cell), sx1 = MAX(sx0 + 1, (int)((int64_t)(x + 1) * S / cell));
            uint32_t sum[3] = {0, 0, 0};
            for (int sy = sy0; sy < sy1; sy++)
                for (int sx = sx0; sx < sx1; sx++)
                    for (int k = 0; k < 3; k++) sum[k] += pic[((size_t)sy * S + sx) * C + (C == 3 ? k : 0)];
            const uint32_t n = (uint32_t)(sy1 - sy0) * (uint32_t)(sx1 - sx0);
            uint8_t *o = px + ((size_t)(y0 + y) * gw + x0 + x) * 3;
            for (int k = 0; k < 3; k++) o[k] = (uint8_t)((sum[k] + n / 2) / n);
        }
    }
}

/* Text centred in [x0, x0 + width) with its top at y0, cut short (with "..") to fit. */
static void text(uint8_t *px, int gw, int gh, int x0, int y0, int width, int scale, const char *s) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    size_t n = strlen(buf);
    while (n > 2 && stb_easy_font_width(buf) * scale > width) {
        buf[--n] = 0;
        buf[n - 1] = buf[n - 2] = '.';
    }
    const int tw = stb_easy_font_width(buf) * scale;
    const int ox = x0 + (width - tw) / 2;
    char vbuf[64 * 300]; /* stb_easy_font takes up to about 270 bytes a character */
    const int quads = stb_easy_font_print(0, 0, buf, NULL, vbuf, sizeof vbuf);
    for (int q = 0; q < quads; q++) {
        /* each vertex: x, y, z (floats) and a colour: 16 bytes; a quad's corners 0 and 2 */
        const float *v0 = (const float *)(vbuf + 16 * (4 * q)), *v2 = (const float *)(vbuf + 16 * (4 * q + 2));
        const int qx0 = ox + (int)lrintf(v0[0] * scale), qy0 = y0 + (int)lrintf(v0[1] * scale);
        const int qx1 = ox + (int)lrintf(v2[0] * scale), qy1 = y0 + (int)lrintf(v2[1] * scale);
        for (int y = MAX(qy0, 0); y < MIN(qy1, gh); y++)
            for (int x = MAX(qx0, 0); x < MIN(qx1, gw); x++) memcpy(px + ((size_t)y * gw + x) * 3, TEXT_RGB, 3);
    }
}

int neighbors_grid_render(const NeighborsGrid *g, uint8_t **rgb, int *w, int *h, Err *e) {
    NeighborsLayout L;
    if (neighbors_layout(g, &L, e)) return -1;
    uint8_t *px = xmalloc((size_t)L.w * L.h * 3, "neighbors grid");
    fill(px, L.w, 0, 0, L.w, L.h, NEIGHBORS_BACKGROUND_RGB);
    const size_t pic = (size_t)g->side * g->side * g->channels;
    for (int r = 0; r < g->rows; r++) {
        const int32_t ql = g->query_label ? g->query_label[r] : -1;
        for (int col = 0; col <= g->k; col++) {
            const int j = col - 1; /* neighbour index; -1: the query */
            const size_t at = (size_t)r * g->k + j;
            int sx, sy;
            slot_origin(&L, r, col, &sx, &sy);
            const int32_t lab = j < 0 ? ql : g->neighbor_label ? g->neighbor_label[at] : -1;
            const uint8_t *frame = j < 0                 ? NEIGHBORS_QUERY_RGB
                                   : ql >= 0 && lab >= 0 ? (lab == ql ? NEIGHBORS_MATCH_RGB : NEIGHBORS_MISMATCH_RGB)
                                                         : NULL;
            if (frame) fill(px, L.w, sx, sy, L.slot_w, L.slot_w, frame);
            blit(px, L.w, sx + L.border, sy + L.border, j < 0 ? g->query + (size_t)r * pic : g->neighbor + at * pic,
                 g->side, g->channels, g->cell);
            int ty = sy + L.slot_w + L.text_scale;
            if (g->class_names) {
                if (lab >= 0 && lab < g->n_classes)
                    text(px, L.w, L.h, sx, ty, L.slot_w, L.text_scale, g->class_names[lab]);
                ty += L.line_h;
            }
            if (g->sim && j >= 0) {
                char s[32];
                snprintf(s, sizeof s, "%.3f", (double)g->sim[at]);
                text(px, L.w, L.h, sx, ty, L.slot_w, L.text_scale, s);
            }
        }
    }
    *rgb = px, *w = L.w, *h = L.h;
    return 0;
}

int neighbors_grid_write(const NeighborsGrid *g, const char *path, Err *e) {
    uint8_t *px;
    int w, h;
    if (neighbors_grid_render(g, &px, &w, &h, e)) return -1;
    const int rc = png_write(path, px, w, h, 3, e);
    xfree(px);
    return rc;
}

int neighbors_display_image(uint8_t *out, const Dataset *ds, Split s, int idx, const FeatureConfig *fc, Image *img,
                            AugScratch *scratch, Err *e) {
    FeatureConfig raw = *fc;
    for (int c = 0; c < 3; c++) raw.mean[c] = 0, raw.std[c] = 1; /* the [0, 1] pixels normalization starts from */
    const int S = fc->image_size, C = ds->channels;
    float *chw = xmalloc((size_t)C * S * S * sizeof(float), "a picture");
    if (preprocess_eval(chw, ds, s, idx, &raw, img, scratch, e)) {
        xfree(chw);
        return -1;
    }
    for (int c = 0; c < C; c++)
        for (int p = 0; p < S * S; p++) {
            const float v = chw[(size_t)c * S * S + p];
            out[(size_t)p * C + c] = (uint8_t)lrintf((v < 0 ? 0 : v > 1 ? 1 : v) * 255.0f);
        }
    xfree(chw);
    return 0;
}
