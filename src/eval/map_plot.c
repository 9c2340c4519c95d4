/* The figure of byol map: see map_plot.h. */
#include "map_plot.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/rng.h"
#include "svg_png.h"

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static void bprintf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(Buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        const int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) die("map figure: formatting failed");
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        b->cap = 2 * (b->cap + (size_t)k + 4096);
        b->p = realloc(b->p, b->cap);
        if (!b->p) die("out of memory (the map's SVG)");
    }
}

/* Text as XML character data. */
static void put_text(Buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': bprintf(b, "&amp;"); break;
        case '<': bprintf(b, "&lt;"); break;
        case '>': bprintf(b, "&gt;"); break;
        case '"': bprintf(b, "&quot;"); break;
        default: bprintf(b, "%c", *s);
        }
    }
}

/* svg_png draws text with stb_easy_font, wider than a browser's Helvetica: about 6 px per
 * character at scale 1 (font-size 9). Layout assumes the wider of the two. */
static double text_width(size_t chars, double font_size) { return chars * 6.0 * font_size / 9.0; }

/* The tail of s that fits in `width` px, with "..." in front when cut (paths keep their ends). */
static void fit_text(char *out, size_t cap, const char *s, double width, double font_size) {
    const size_t len = strlen(s), fits = (size_t)fmax(4, width / text_width(1, font_size));
    if (len <= fits)
        snprintf(out, cap, "%s", s);
    else
        snprintf(out, cap, "...%s", s + len - (fits - 3));
}

static const char *const TABLEAU10[10] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                          "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

static void hsl_hex(double h, double s, double l, char hex[8]) {
    const double c = (1 - fabs(2 * l - 1)) * s, hp = fmod(h, 360) / 60, x = c * (1 - fabs(fmod(hp, 2) - 1));
    double r = 0, g = 0, b = 0;
    if (hp < 1) r = c, g = x;
    else if (hp < 2) r = x, g = c;
    else if (hp < 3) g = c, b = x;
    else if (hp < 4) g = x, b = c;
    else if (hp < 5) r = x, b = c;
    else r = c, b = x;
    const double m = l - c / 2;
    snprintf(hex, 8, "#%02x%02x%02x", (int)lround((r + m) * 255), (int)lround((g + m) * 255), (int)lround((b + m) * 255));
}

void map_color(int c, char hex[8]) {
    if (c >= 0 && c < 10) {
        memcpy(hex, TABLEAU10[c], 8);
        return;
    }
    /* Golden-angle hues never repeat and stay far apart for neighbouring class numbers; the
     * lightness steps separate classes whose hues come close. */
    const int k = c - 10;
    static const double light[3] = {0.42, 0.58, 0.32};
    hsl_hex(20 + k * 137.50776405, 0.62, light[(k / 7) % 3], hex);
}

enum { PLOT = 720, LEFT = 44, TOP = 72, BOTTOM = 44, ROW = 18, LEGEND_GAP = 20, RIGHT = 20 };
#define LEGEND_FONT 13.0

typedef struct {
    uint64_t key;
    int i;
} Order;

static int order_cmp(const void *a, const void *b) {
    const Order *x = a, *y = b;
    return x->key != y->key ? (x->key > y->key) - (x->key < y->key) : x->i - y->i;
}

char *map_plot_svg(const MapPlot *m, size_t *len) {
    const int n = m->n;
    int labelled = 0, unlabelled = 0;
    int *count = calloc((size_t)(m->n_classes > 0 ? m->n_classes : 1), sizeof(int));
    if (!count) die("out of memory (the map's legend)");
    for (int i = 0; i < n; i++) {
        const int l = m->labels ? m->labels[i] : -1;
        if (l >= 0 && l < m->n_classes)
            count[l]++, labelled++;
        else
            unlabelled++;
    }
    /* the legend: each class present, then "no label" for the rest of a labelled map */
    int entries = 0;
    size_t longest = 8;
    char numbuf[32];
    for (int c = 0; c < m->n_classes && labelled; c++)
        if (count[c]) {
            entries++;
            const char *name = m->class_names ? m->class_names[c] : (snprintf(numbuf, sizeof numbuf, "%d", c), numbuf);
            longest = MAX(longest, strlen(name));
        }
    if (labelled && unlabelled) entries++;
    const int legend = labelled > 0;
    const int per_col = (PLOT - 16) / ROW, cols = legend ? (entries + per_col - 1) / per_col : 0;
    const double name_w = fmin(text_width(longest, LEGEND_FONT), 260);
    const double col_w = 26 + name_w + 12;
    const double W = LEFT + PLOT + (legend ? LEGEND_GAP + cols * col_w : 0) + RIGHT, H = TOP + PLOT + BOTTOM;

    Buf b = {NULL, 0, 0};
    bprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\" "
                "font-family=\"Helvetica, Arial, sans-serif\">\n<title>",
            ceil(W), (double)H, ceil(W), (double)H);
    put_text(&b, m->title ? m->title : "map");
    bprintf(&b, "</title>\n<rect width=\"100%%\" height=\"100%%\" fill=\"#fafafa\"/>\n");
    char fitted[1024];
    if (m->title) {
        fit_text(fitted, sizeof fitted, m->title, W - 2 * RIGHT, 16);
        bprintf(&b, "<text x=\"%d\" y=\"30\" font-size=\"16\" font-weight=\"bold\">", RIGHT);
        put_text(&b, fitted);
        bprintf(&b, "</text>\n");
    }
    if (m->subtitle) {
        fit_text(fitted, sizeof fitted, m->subtitle, W - 2 * RIGHT, 12);
        bprintf(&b, "<text x=\"%d\" y=\"52\" font-size=\"12\" fill=\"#555555\">", RIGHT);
        put_text(&b, fitted);
        bprintf(&b, "</text>\n");
    }
    bprintf(&b, "<rect class=\"frame\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#ffffff\" stroke=\"#cccccc\"/>\n",
            LEFT, TOP, PLOT, PLOT);
    if (m->x_label) {
        bprintf(&b, "<text x=\"%g\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">", LEFT + PLOT / 2.0, TOP + PLOT + 26);
        put_text(&b, m->x_label);
        bprintf(&b, "</text>\n");
    }
    if (m->y_label) {
        const double x = LEFT - 14, y = TOP + PLOT / 2.0;
        bprintf(&b, "<text x=\"%g\" y=\"%g\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 %g %g)\">", x,
                y, x, y);
        put_text(&b, m->y_label);
        bprintf(&b, "</text>\n");
    }

    /* one scale for both axes, the points' box centred with a 3% margin */
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(m->xy[2 * i]) && isfinite(m->xy[2 * i + 1])) {
            x0 = fmin(x0, m->xy[2 * i]), x1 = fmax(x1, m->xy[2 * i]);
            y0 = fmin(y0, m->xy[2 * i + 1]), y1 = fmax(y1, m->xy[2 * i + 1]);
        }
    double span = fmax(x1 - x0, y1 - y0) * 1.06;
    if (!(span > 0) || !isfinite(span)) span = 1;
    const double cx = isfinite(x0) ? (x0 + x1) / 2 : 0, cy = isfinite(y0) ? (y0 + y1) / 2 : 0;
    Order *ord = malloc(sizeof(Order) * (size_t)(n > 0 ? n : 1));
    if (!ord) die("out of memory (the map's drawing order)");
    for (int i = 0; i < n; i++) ord[i] = (Order){rng_mix64((uint64_t)i + 0x6d6170ULL), i};
    qsort(ord, (size_t)n, sizeof(Order), order_cmp);
    char col[8];
    for (int t = 0; t < n; t++) {
        const int i = ord[t].i;
        if (!isfinite(m->xy[2 * i]) || !isfinite(m->xy[2 * i + 1])) continue;
        const int l = m->labels ? m->labels[i] : -1;
        if (!legend)
            memcpy(col, TABLEAU10[0], 8);
        else if (l >= 0 && l < m->n_classes)
            map_color(l, col);
        else
            memcpy(col, "#9d9d9d", 8);
        const double px = LEFT + PLOT / 2.0 + (m->xy[2 * i] - cx) / span * PLOT;
        const double py = TOP + PLOT / 2.0 - (m->xy[2 * i + 1] - cy) / span * PLOT;
        bprintf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\" fill=\"%s\" fill-opacity=\"0.7\"/>\n", px, py, col);
    }
    free(ord);

    if (legend) {
        const double lx = LEFT + PLOT + LEGEND_GAP;
        const int rows = MIN(entries, per_col);
        bprintf(&b, "<rect class=\"legend\" x=\"%g\" y=\"%d\" width=\"%g\" height=\"%d\" fill=\"#ffffff\" stroke=\"#bbbbbb\"/>\n",
                lx, TOP, cols * col_w, rows * ROW + 12);
        int e = 0;
        for (int c = 0; c <= m->n_classes; c++) {
            const char *name;
            if (c < m->n_classes) {
                if (!count[c]) continue;
                map_color(c, col);
                name = m->class_names ? m->class_names[c] : (snprintf(numbuf, sizeof numbuf, "%d", c), numbuf);
            } else {
                if (!unlabelled) break;
                memcpy(col, "#9d9d9d", 8);
                name = "no label";
            }
            const double ex = lx + (e / per_col) * col_w + 14, ey = TOP + 6 + (e % per_col) * ROW + ROW / 2.0;
            bprintf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>\n", ex, ey, col);
            char shown[300];
            const size_t fits = (size_t)(name_w / text_width(1, LEGEND_FONT));
            if (strlen(name) > fits && fits > 3)
                snprintf(shown, sizeof shown, "%.*s...", (int)(fits - 3), name);
            else
                snprintf(shown, sizeof shown, "%s", name);
            bprintf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%g\">", ex + 12, ey + 4.5, LEGEND_FONT);
            put_text(&b, shown);
            bprintf(&b, "</text>\n");
            e++;
        }
    }
    bprintf(&b, "</svg>\n");
    free(count);
    if (len) *len = b.n;
    return b.p;
}

int map_output_check(const char *path, Err *e) {
    struct stat st;
    if (!*path) return err_set(e, "an empty path: give a file name such as map.png");
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return err_set(e, "%s is a folder: give a file name inside it, such as %s/map.png", path, path);
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return err_set(e, "%s: the folder %s does not exist (create it first)", path, dir);
    if (access(dir, W_OK) != 0) return err_set(e, "%s: the folder %s is not writable (%s)", path, dir, strerror(errno));
    return 0;
}

int map_plot_write(const MapPlot *m, const char *png_path, const char *svg_path, Err *e) {
    size_t len;
    char *svg = map_plot_svg(m, &len);
    char tsvg[4200], tpng[4200];
    snprintf(tsvg, sizeof tsvg, "%s.part%ld.svg", svg_path, (long)getpid());
    snprintf(tpng, sizeof tpng, "%s.part%ld.png", png_path, (long)getpid());
    int rc = atomic_write_file(tsvg, svg, len, e);
    free(svg);
    if (rc) return -1;
    /* the PNG is rendered from the very SVG written, so the two cannot disagree */
    if (svg_render_png(tsvg, tpng, e)) {
        unlink(tsvg);
        return -1;
    }
    if (rename(tpng, png_path) != 0) {
        err_set(e, "%s: cannot write (%s)", png_path, strerror(errno));
        unlink(tpng), unlink(tsvg);
        return -1;
    }
    if (rename(tsvg, svg_path) != 0) {
        err_set(e, "%s: cannot write (%s)", svg_path, strerror(errno));
        unlink(tsvg), unlink(png_path);
        return -1;
    }
    return 0;
}
