#include "plot.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "monitor.h" /* the collapse thresholds */

/* ---- a growing text buffer ---- */

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static void buf_reserve(Buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) die("out of memory building the SVG plot (%zu bytes)", cap);
    b->p = p;
    b->cap = cap;
}

static void bprintf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(Buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0) die("plot: bad format");
    buf_reserve(b, (size_t)len);
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)len;
}

/* Text for an XML text node or attribute: markup characters escaped; control characters and
 * bytes outside ASCII (which might not be valid UTF-8) become '?'. */
static void bescape(Buf *b, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '&') bprintf(b, "&amp;");
        else if (c == '<') bprintf(b, "&lt;");
        else if (c == '>') bprintf(b, "&gt;");
        else if (c == '"') bprintf(b, "&quot;");
        else if (c < 0x20 || c >= 0x7f) bprintf(b, "?");
        else bprintf(b, "%c", c);
    }
}

/* Our own labels (UTF-8 constants): only markup characters escaped. */
static void btext(Buf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '&') bprintf(b, "&amp;");
        else if (*s == '<') bprintf(b, "&lt;");
        else if (*s == '>') bprintf(b, "&gt;");
        else bprintf(b, "%c", *s);
    }
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* ---- series ---- */

typedef struct {
    double x, y;
    size_t order; /* line number, so equal steps keep file order */
} Pt;

typedef struct {
    Pt *pt;
    size_t n, cap;
} Series;

static void series_push(Series *s, double x, double y, size_t order) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        Pt *p = realloc(s->pt, s->cap * sizeof *p);
        if (!p) die("out of memory reading metrics (%zu points)", s->cap);
        s->pt = p;
    }
    s->pt[s->n++] = (Pt){x, y, order};
}

static int cmp_pt(const void *pa, const void *pb) {
    const Pt *a = pa, *b = pb;
    if (a->x != b->x) return a->x < b->x ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static void series_range(const Series *s, double *lo, double *hi) {
    for (size_t i = 0; i < s->n; i++) {
        if (s->pt[i].y < *lo) *lo = s->pt[i].y;
        if (s->pt[i].y > *hi) *hi = s->pt[i].y;
    }
}

enum { S_LOSS, S_LR, S_KNN, S_STD, S_RANK, S_KNN_TARGET, S_COUNT };
static const char *const KEYS[S_COUNT] = {"loss", "lr", "knn_top1", "proj_std", "eff_rank", "knn_target_top1"};

/* ---- axes ---- */

typedef struct {
    double lo, hi, step;
} Axis;

/* Covers [lo, hi] with round ticks: the step is 1, 2 or 5 times a power of ten, about `target`
 * intervals. An empty or one-point range is widened first. */
static Axis nice_axis(double lo, double hi, int target) {
    if (!(hi > lo)) {
        const double d = lo != 0 ? fabs(lo) * 0.1 : 1.0;
        if (lo == 0) {
            hi = 1;
        } else {
            lo -= d;
            hi += d;
        }
    }
    const double raw = (hi - lo) / target;
    const double mag = pow(10.0, floor(log10(raw)));
    const double f = raw / mag;
    const double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    Axis a = {floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step};
    if (!(a.hi > a.lo)) a.hi = a.lo + step;
    return a;
}

/* Tick k of an axis, with a clean zero. */
static double tick_value(const Axis *a, long k) {
    const double v = k * a->step;
    return fabs(v) < a->step * 1e-6 ? 0.0 : v;
}
static long tick_first(const Axis *a) { return lround(a->lo / a->step); }
static long tick_last(const Axis *a) { return lround(a->hi / a->step); }

/* ---- layout ---- */

#define SVG_W 960.0
#define PLOT_L 80.0
#define PLOT_R 880.0
#define PANEL_H 220.0
#define PANEL_GAP 56.0
#define TOP0 64.0
#define LEGEND_X 250.0 /* legend start, right of the panel titles */
#define FONT "font-family=\"Helvetica, Arial, sans-serif\""

static double map_x(const Axis *a, double x) { return PLOT_L + (x - a->lo) / (a->hi - a->lo) * (PLOT_R - PLOT_L); }
static double map_y(const Axis *a, double y, double top) {
    return top + PANEL_H - (y - a->lo) / (a->hi - a->lo) * PANEL_H;
}

typedef struct {
    const Series *s;
    const char *name;   /* class of the polyline */
    const char *label;  /* legend text */
    const char *color;
    const char *dash;   /* stroke-dasharray, or NULL */
    double opacity;
    int right;          /* drawn on the right axis */
    int markers;        /* circles at the points */
} Trace;

/* A dashed horizontal line at `value` of one axis, in the colour of the curve it is read
 * against and labelled on the line itself at that axis's side: the collapse monitor's two
 * thresholds belong to different axes, and one red line for both read as a threshold for the
 * wrong curve. */
typedef struct {
    double value;
    int right;          /* on the right axis */
    const char *series; /* the curve it belongs to (data-series of the line) */
    const char *color;
    const char *label;
} Threshold;

typedef struct {
    const char *title;
    const char *left_label, *right_label, *right_color;
    Axis left, right;
    int has_right;
    const Threshold *th; /* drawn where their curve has points */
    int n_th;
    const Trace *tr;
    int n_tr;
    int no_legend; /* the figure has one legend for all panels (the lab's) */
} Panel;

static void draw_polyline(Buf *b, const Trace *t, const Axis *xa, const Axis *ya, double top) {
    const Series *s = t->s;
    bprintf(b, "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" stroke-linejoin=\"round\"",
            t->name, t->color);
    if (t->dash) bprintf(b, " stroke-dasharray=\"%s\"", t->dash);
    if (t->opacity < 1) bprintf(b, " stroke-opacity=\"%g\"", t->opacity);
    bprintf(b, " points=\"");
    for (size_t i = 0; i < s->n; i++)
        bprintf(b, "%s%.1f,%.1f", i ? " " : "", map_x(xa, s->pt[i].x), map_y(ya, s->pt[i].y, top));
    bprintf(b, "\"/>\n");
    if (t->markers || s->n == 1)
        for (size_t i = 0; i < s->n; i++)
            bprintf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"%s/>\n", map_x(xa, s->pt[i].x),
                    map_y(ya, s->pt[i].y, top), t->color, t->opacity < 1 ? " fill-opacity=\"0.5\"" : "");
}

static void draw_panel(Buf *b, const Panel *p, const Axis *xa, double top, int x_labels) {
    const double bottom = top + PANEL_H, mid = top + PANEL_H / 2;
    int any = 0;
    for (int i = 0; i < p->n_tr; i++) any |= p->tr[i].s->n > 0;

    bprintf(b, "<g class=\"panel\">\n");
    bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" font-weight=\"bold\">", PLOT_L, top - 10);
    btext(b, p->title);
    bprintf(b, "</text>\n");
    bprintf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ffffff\" stroke=\"none\"/>\n",
            PLOT_L, top, PLOT_R - PLOT_L, PANEL_H);

    /* x grid, and the x tick labels under the bottom panel */
    for (long k = tick_first(xa); k <= tick_last(xa); k++) {
        const double v = tick_value(xa, k), x = map_x(xa, v);
        bprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", x, top, x, bottom);
        bprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#666666\"/>\n", x, bottom, x, bottom + 4);
        if (x_labels)
            bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n", x,
                    bottom + 17, v);
    }

    if (!any) {
        bprintf(b, "<text class=\"nodata\" x=\"%.1f\" y=\"%.1f\" font-size=\"16\" fill=\"#999999\" text-anchor=\"middle\">no data</text>\n",
                (PLOT_L + PLOT_R) / 2, mid + 5);
    } else {
        /* left axis: grid, ticks, labels */
        for (long k = tick_first(&p->left); k <= tick_last(&p->left); k++) {
            const double v = tick_value(&p->left, k), y = map_y(&p->left, v, top);
            bprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", PLOT_L, y, PLOT_R, y);
            bprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#666666\"/>\n", PLOT_L - 4, y, PLOT_L, y);
            bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%g</text>\n", PLOT_L - 7, y + 4, v);
        }
        bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 %.1f %.1f)\">",
                PLOT_L - 52, mid, PLOT_L - 52, mid);
        btext(b, p->left_label);
        bprintf(b, "</text>\n");
        if (p->has_right) {
            for (long k = tick_first(&p->right); k <= tick_last(&p->right); k++) {
                const double v = tick_value(&p->right, k), y = map_y(&p->right, v, top);
                bprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", PLOT_R, y, PLOT_R + 4, y,
                        p->right_color);
                bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"%s\">%g</text>\n", PLOT_R + 7, y + 4,
                        p->right_color, v);
            }
            bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" fill=\"%s\" transform=\"rotate(90 %.1f %.1f)\">",
                    PLOT_R + 56, mid, p->right_color, PLOT_R + 56, mid);
            btext(b, p->right_label);
            bprintf(b, "</text>\n");
        }
        for (int i = 0; i < p->n_th; i++) {
            const Threshold *t = &p->th[i];
            const double y = map_y(t->right ? &p->right : &p->left, t->value, top);
            bprintf(b, "<line class=\"threshold\" data-series=\"%s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                       "stroke=\"%s\" stroke-width=\"1.2\" stroke-dasharray=\"2 4\"/>\n",
                    t->series, PLOT_L, y, PLOT_R, y, t->color);
            /* above the line, or below it near the frame's top; at the end of the line that
             * meets its own axis */
            const double ty = y - 14 < top ? y + 13 : y - 4;
            bprintf(b, "<text class=\"threshold-label\" data-series=\"%s\" x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"%s\" "
                       "text-anchor=\"%s\">",
                    t->series, t->right ? PLOT_R - 6 : PLOT_L + 6, ty, t->color, t->right ? "end" : "start");
            btext(b, t->label);
            bprintf(b, "</text>\n");
        }
        for (int i = 0; i < p->n_tr; i++)
            if (p->tr[i].s->n) draw_polyline(b, &p->tr[i], xa, p->tr[i].right ? &p->right : &p->left, top);

        /* legend, one row above the frame, right of the panel title */
        double lx = PLOT_L + LEGEND_X;
        for (int i = 0; i < p->n_tr && !p->no_legend; i++) {
            if (!p->tr[i].s->n) continue;
            const char *label = p->tr[i].label, *color = p->tr[i].color, *dash = p->tr[i].dash;
            const double opacity = p->tr[i].opacity;
            const double y = top - 10;
            bprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"", lx, y - 4,
                    lx + 24, y - 4, color);
            if (dash) bprintf(b, " stroke-dasharray=\"%s\"", dash);
            if (opacity < 1) bprintf(b, " stroke-opacity=\"%g\"", opacity);
            if (p->tr[i].markers)
                bprintf(b, "/>\n<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"", lx + 12, y - 4, color);
            bprintf(b, "/>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", lx + 30, y);
            btext(b, label);
            bprintf(b, "</text>\n");
            lx += 30 + 6.8 * (double)utf8_chars(label) + 24;
        }
    }
    bprintf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#666666\"/>\n",
            PLOT_L, top, PLOT_R - PLOT_L, PANEL_H);
    bprintf(b, "</g>\n");
}

/* ---- reading metrics.jsonl ---- */

/* Fills the series; returns the number of skipped lines. */
static int read_metrics(char *text, size_t size, Series *s) {
    int skipped = 0;
    size_t line_no = 0;
    char *line = xmalloc(size + 1, "metrics line");
    for (size_t pos = 0; pos < size;) {
        size_t end = pos;
        while (end < size && text[end] != '\n') end++;
        size_t len = end - pos;
        memcpy(line, text + pos, len);
        line[len] = 0;
        pos = end + 1;
        line_no++;
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t')) line[--len] = 0;
        size_t lead = strspn(line, " \t");
        if (line[lead] == 0) continue; /* blank */
        cJSON *obj = cJSON_ParseWithOpts(line + lead, NULL, 1);
        const cJSON *step = obj && cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, "step") : NULL;
        if (!step || !cJSON_IsNumber(step) || !(fabs(step->valuedouble) <= 1e300)) {
            skipped++;
            cJSON_Delete(obj);
            continue;
        }
        for (int k = 0; k < S_COUNT; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, KEYS[k]);
            if (!v || !cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= 1e300)) continue; /* axes stay finite */
            const double y = k == S_KNN || k == S_KNN_TARGET ? 100.0 * v->valuedouble : v->valuedouble;
            series_push(&s[k], step->valuedouble, y, line_no);
        }
        cJSON_Delete(obj);
    }
    xfree(line);
    for (int k = 0; k < S_COUNT; k++)
        if (s[k].n) qsort(s[k].pt, s[k].n, sizeof *s[k].pt, cmp_pt);
    return skipped;
}

/* ---- the figure ---- */

static void build_svg(Buf *b, const char *jsonl_path, const Series *s, int skipped) {
    const double height = TOP0 + 3 * PANEL_H + 2 * PANEL_GAP + 82;
    const char *C_LOSS = "#1f77b4", *C_LR = "#7f7f7f", *C_KNN = "#2ca02c", *C_STD = "#9467bd",
               *C_RANK = "#ff7f0e";

    /* shared x axis */
    double xlo = INFINITY, xhi = -INFINITY;
    for (int k = 0; k < S_COUNT; k++)
        for (size_t i = 0; i < s[k].n; i++) {
            if (s[k].pt[i].x < xlo) xlo = s[k].pt[i].x;
            if (s[k].pt[i].x > xhi) xhi = s[k].pt[i].x;
        }
    if (xlo > xhi) xlo = 0, xhi = 1;
    const Axis xa = nice_axis(xlo, xhi, 8);

    bprintf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    bprintf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\" " FONT ">\n",
            SVG_W, height, SVG_W, height);
    bprintf(b, "<title>BYOL training: ");
    bescape(b, jsonl_path);
    bprintf(b, "</title>\n<rect width=\"100%%\" height=\"100%%\" fill=\"#fafafa\"/>\n");
    bprintf(b, "<text x=\"%.1f\" y=\"30\" font-size=\"18\" font-weight=\"bold\" text-anchor=\"middle\">BYOL training: ",
            SVG_W / 2);
    bescape(b, jsonl_path);
    bprintf(b, "</text>\n");

    /* (a) loss, lr faint on the right */
    {
        double lo = INFINITY, hi = -INFINITY, lrlo = 0, lrhi = 0;
        series_range(&s[S_LOSS], &lo, &hi);
        series_range(&s[S_LR], &lrlo, &lrhi);
        const Trace tr[] = {
            {&s[S_LOSS], "loss", "loss", C_LOSS, NULL, 1, 0, 0},
            {&s[S_LR], "lr", "learning rate (right)", C_LR, "5 3", 0.6, 1, 0},
        };
        const Panel p = {"(a) loss", "loss", "learning rate", C_LR,
                         s[S_LOSS].n ? nice_axis(lo, hi, 5) : nice_axis(0, 1, 5), nice_axis(lrlo, lrhi, 5),
                         s[S_LR].n > 0, NULL, 0, tr, 2, 0};
        draw_panel(b, &p, &xa, TOP0, 0);
    }
    /* (b) kNN top-1 */
    {
        double lo = INFINITY, hi = -INFINITY;
        series_range(&s[S_KNN], &lo, &hi);
        const Trace tr[] = {{&s[S_KNN], "knn_top1", "kNN top-1 (%)", C_KNN, NULL, 1, 0, 1}};
        const Panel p = {"(b) kNN top-1 (%)", "top-1 (%)", NULL, NULL,
                         s[S_KNN].n ? nice_axis(lo, hi, 5) : nice_axis(0, 100, 5), nice_axis(0, 1, 5), 0, NULL,
                         0, tr, 1, 0};
        draw_panel(b, &p, &xa, TOP0 + PANEL_H + PANEL_GAP, 0);
    }
    /* (c) collapse monitor; both axes reach past their thresholds (monitor.h), so a collapsed
     * run's curve is seen below its line */
    {
        double lo = 0, hi = 1.2, rlo = 0, rhi = 2 * COLLAPSE_RANK_MIN;
        series_range(&s[S_STD], &lo, &hi);
        series_range(&s[S_RANK], &rlo, &rhi);
        const Trace tr[] = {
            {&s[S_STD], "proj_std", "std·√D (left)", C_STD, NULL, 1, 0, 0},
            {&s[S_RANK], "eff_rank", "effective rank (right)", C_RANK, NULL, 1, 1, 0},
        };
        char std_label[64], rank_label[64];
        snprintf(std_label, sizeof std_label, "std·√D = %g (collapse)", COLLAPSE_STD_MIN);
        snprintf(rank_label, sizeof rank_label, "effective rank = %g (collapse)", COLLAPSE_RANK_MIN);
        Threshold th[2];
        int n_th = 0;
        if (s[S_STD].n) th[n_th++] = (Threshold){COLLAPSE_STD_MIN, 0, "proj_std", C_STD, std_label};
        if (s[S_RANK].n) th[n_th++] = (Threshold){COLLAPSE_RANK_MIN, 1, "eff_rank", C_RANK, rank_label};
        const Panel p = {"(c) collapse", "projection std·√D", "effective rank", C_RANK, nice_axis(lo, hi, 6),
                         nice_axis(rlo, rhi, 5), s[S_RANK].n > 0, th, n_th, tr, 2, 0};
        draw_panel(b, &p, &xa, TOP0 + 2 * (PANEL_H + PANEL_GAP), 1);
    }

    const double base = TOP0 + 3 * PANEL_H + 2 * PANEL_GAP;
    bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">step</text>\n",
            (PLOT_L + PLOT_R) / 2, base + 36);
    bprintf(b, "<text class=\"note\" x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#666666\">points: loss %zu, lr %zu, "
               "kNN %zu, proj_std %zu, eff_rank %zu; %d line%s skipped (malformed or without a step)</text>\n",
            PLOT_L, base + 62, s[S_LOSS].n, s[S_LR].n, s[S_KNN].n, s[S_STD].n, s[S_RANK].n, skipped,
            skipped == 1 ? "" : "s");
    bprintf(b, "</svg>\n");
}


int plot_metrics_svg(const char *jsonl_path, const char *svg_path, Err *e) {
    size_t size;
    uint8_t *text = read_file(jsonl_path, &size, e);
    if (!text) return -1;
    Series s[S_COUNT];
    memset(s, 0, sizeof s);
    const int skipped = read_metrics((char *)text, size, s);
    free(text);

    Buf b = {0};
    build_svg(&b, jsonl_path, s, skipped);
    for (int k = 0; k < S_COUNT; k++) free(s[k].pt);
    int rc = atomic_write_file(svg_path, b.p, b.n, e);
    free(b.p);
    return rc;
}

/* ---- the collapse lab's figure ---- */

static const char *const PALETTE[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                                      "#e377c2", "#17becf", "#7f7f7f", "#bcbd22", "#000000", "#aec7e8"};

int plot_lab_svg(const char *const *jsonl_paths, const char *const *labels, int n, const char *title,
                 const char *svg_path, Err *e) {
    if (n < 1 || n > LAB_PLOT_MAX) return err_set(e, "plot_lab_svg: %d runs (1..%d)", n, LAB_PLOT_MAX);
    Series(*s)[S_COUNT] = xcalloc((size_t)n, sizeof *s, "lab series");
    for (int r = 0; r < n; r++) {
        size_t size;
        uint8_t *text = read_file(jsonl_paths[r], &size, e);
        if (!text) {
            for (int q = 0; q < r; q++)
                for (int k = 0; k < S_COUNT; k++) free(s[q][k].pt);
            xfree(s);
            return -1;
        }
        read_metrics((char *)text, size, s[r]);
        free(text);
    }
    const int legend_rows = (n + 2) / 3;
    const double top0 = TOP0 + 22.0 * legend_rows, height = top0 + 4 * PANEL_H + 3 * PANEL_GAP + 60;
    double xlo = INFINITY, xhi = -INFINITY;
    double range[4][2] = {{0, 1.2}, {0, 2 * COLLAPSE_RANK_MIN}, {INFINITY, -INFINITY}, {INFINITY, -INFINITY}};
    for (int r = 0; r < n; r++) {
        for (int k = 0; k < S_COUNT; k++)
            for (size_t i = 0; i < s[r][k].n; i++) {
                if (s[r][k].pt[i].x < xlo) xlo = s[r][k].pt[i].x;
                if (s[r][k].pt[i].x > xhi) xhi = s[r][k].pt[i].x;
            }
        series_range(&s[r][S_STD], &range[0][0], &range[0][1]);
        series_range(&s[r][S_RANK], &range[1][0], &range[1][1]);
        series_range(&s[r][S_LOSS], &range[2][0], &range[2][1]);
        series_range(&s[r][S_KNN], &range[3][0], &range[3][1]);
        series_range(&s[r][S_KNN_TARGET], &range[3][0], &range[3][1]);
    }
    if (range[3][0] > range[3][1]) range[3][0] = 0, range[3][1] = 100;
    else range[3][0] = fmax(0, range[3][0] - 5), range[3][1] = fmin(100, range[3][1] + 5); /* the spread, not 0-100 */
    if (xlo > xhi) xlo = 0, xhi = 1;
    if (range[2][0] > range[2][1]) range[2][0] = 0, range[2][1] = 1;
    const Axis xa = nice_axis(xlo, xhi, 8);

    Buf b = {0};
    bprintf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    bprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\" " FONT ">\n",
            SVG_W, height, SVG_W, height);
    bprintf(&b, "<title>");
    bescape(&b, title);
    bprintf(&b, "</title>\n<rect width=\"100%%\" height=\"100%%\" fill=\"#fafafa\"/>\n");
    bprintf(&b, "<text x=\"%.1f\" y=\"30\" font-size=\"18\" font-weight=\"bold\" text-anchor=\"middle\">", SVG_W / 2);
    bescape(&b, title);
    bprintf(&b, "</text>\n");
    for (int r = 0; r < n; r++) { /* one legend: the variants' colours */
        const double lx = PLOT_L + (r % 3) * 270.0, ly = 56.0 + 22.0 * (r / 3);
        bprintf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>\n", lx,
                ly - 4, lx + 24, ly - 4, PALETTE[r % ARRAY_LEN(PALETTE)]);
        bprintf(&b, "<text class=\"variant\" x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", lx + 30, ly);
        btext(&b, labels[r]);
        bprintf(&b, "</text>\n");
    }
    Trace *tr = xcalloc((size_t)2 * n, sizeof *tr, "lab traces");
    const char *titles[4] = {"(a) projection std·√D (collapse: below the dashed line)",
                             "(b) effective rank of the projections", "(c) loss",
                             "(d) kNN top-1 (%): online encoder solid, target encoder dashed"};
    const char *ylabels[4] = {"std·√D", "effective rank", "loss", "top-1 (%)"};
    const int keys[4] = {S_STD, S_RANK, S_LOSS, S_KNN};
    char std_label[64], rank_label[64];
    snprintf(std_label, sizeof std_label, "std·√D = %g (collapse)", COLLAPSE_STD_MIN);
    snprintf(rank_label, sizeof rank_label, "effective rank = %g (collapse)", COLLAPSE_RANK_MIN);
    for (int pnl = 0; pnl < 4; pnl++) {
        int nt = 0;
        for (int r = 0; r < n; r++) {
            tr[nt++] = (Trace){&s[r][keys[pnl]], KEYS[keys[pnl]], labels[r], PALETTE[r % ARRAY_LEN(PALETTE)], NULL, 1, 0, pnl == 3};
            if (pnl == 3) tr[nt++] = (Trace){&s[r][S_KNN_TARGET], "knn_target_top1", labels[r], PALETTE[r % ARRAY_LEN(PALETTE)], "5 3", 0.8, 0, 0};
        }
        Threshold th = {pnl == 0 ? COLLAPSE_STD_MIN : COLLAPSE_RANK_MIN, 0, KEYS[keys[pnl]], "#555555",
                        pnl == 0 ? std_label : rank_label};
        const Panel p = {titles[pnl], ylabels[pnl], NULL, NULL, nice_axis(range[pnl][0], range[pnl][1], 5),
                         nice_axis(0, 1, 5), 0, &th, pnl < 2, tr, nt, 1};
        draw_panel(&b, &p, &xa, top0 + pnl * (PANEL_H + PANEL_GAP), pnl == 3);
    }
    bprintf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">step</text>\n",
            (PLOT_L + PLOT_R) / 2, top0 + 4 * PANEL_H + 3 * PANEL_GAP + 36);
    bprintf(&b, "</svg>\n");
    xfree(tr);
    for (int r = 0; r < n; r++)
        for (int k = 0; k < S_COUNT; k++) free(s[r][k].pt);
    xfree(s);
    int rc = atomic_write_file(svg_path, b.p, b.n, e);
    free(b.p);
    return rc;
}
