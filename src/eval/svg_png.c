/* The SVG that plot.c writes, rendered to a PNG (svg_png.h). A reader for that subset only:
 * <svg width height>, <rect>, <line>, <polyline>, <circle> and <text> with the attributes
 * plot.c uses (stroke, stroke-width, stroke-dasharray, stroke-opacity, fill, fill-opacity,
 * font-size, font-weight, text-anchor, transform="rotate(a x y)"); anything else is skipped.
 * Shapes are drawn at SS times the size and box-filtered down (anti-aliasing); text is
 * stb_easy_font's quads (libstb-dev, already a dependency: no font files), ASCII, with the
 * figures' few other characters spelled out (·, √). */
#include "svg_png.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../data/image.h"
#include "easy_font.h"

enum { SS = 3 }; /* supersampling factor per axis */

typedef struct {
    int w, h; /* in supersampled pixels */
    float *px; /* RGB, 0..1 */
} Canvas;

static void blend(Canvas *c, int x, int y, const float rgb[3], float a) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h || a <= 0) return;
    float *p = c->px + 3 * ((size_t)y * c->w + x);
    for (int k = 0; k < 3; k++) p[k] += (rgb[k] - p[k]) * (a > 1 ? 1 : a);
}

static void fill_rect(Canvas *c, double x0, double y0, double x1, double y1, const float rgb[3], float a) {
    const int ix0 = (int)floor(x0 * SS), iy0 = (int)floor(y0 * SS), ix1 = (int)ceil(x1 * SS), iy1 = (int)ceil(y1 * SS);
    for (int y = iy0; y < iy1; y++)
        for (int x = ix0; x < ix1; x++) blend(c, x, y, rgb, a);
}

/* A segment of width w (figure pixels), with an optional dash pattern (on, off) that starts at
 * `phase` along the polyline; returns the phase at its end. */
static double segment(Canvas *c, double x0, double y0, double x1, double y1, double w, const double *dash,
                      double phase, const float rgb[3], float a) {
    const double len = hypot(x1 - x0, y1 - y0), r = w * SS / 2;
    x0 *= SS, y0 *= SS, x1 *= SS, y1 *= SS;
    const double dx = x1 - x0, dy = y1 - y0, l2 = dx * dx + dy * dy;
    const int bx0 = (int)floor(fmin(x0, x1) - r), bx1 = (int)ceil(fmax(x0, x1) + r);
    const int by0 = (int)floor(fmin(y0, y1) - r), by1 = (int)ceil(fmax(y0, y1) + r);
    for (int y = by0 < 0 ? 0 : by0; y <= by1 && y < c->h; y++)
        for (int x = bx0 < 0 ? 0 : bx0; x <= bx1 && x < c->w; x++) {
            const double px = x + 0.5 - x0, py = y + 0.5 - y0;
            double t = l2 > 0 ? (px * dx + py * dy) / l2 : 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            const double ex = px - t * dx, ey = py - t * dy;
            if (ex * ex + ey * ey > r * r) continue;
            if (dash) {
                const double along = fmod(phase + t * len, dash[0] + dash[1]);
                if (along >= dash[0]) continue;
            }
            blend(c, x, y, rgb, a);
        }
    return phase + len;
}

static void disk(Canvas *c, double cx, double cy, double rad, const float rgb[3], float a) {
    const double r = rad * SS;
    cx *= SS, cy *= SS;
    for (int y = (int)floor(cy - r); y <= (int)ceil(cy + r); y++)
        for (int x = (int)floor(cx - r); x <= (int)ceil(cx + r); x++) {
            const double ex = x + 0.5 - cx, ey = y + 0.5 - cy;
            if (ex * ex + ey * ey <= r * r) blend(c, x, y, rgb, a);
        }
}

/* ---- the SVG subset ---- */

/* The value of attribute `name` in the tag text [tag, end) into buf; 0 when absent. */
static int attr(const char *tag, const char *end, const char *name, char *buf, size_t cap) {
    const size_t n = strlen(name);
    for (const char *p = tag; p + n + 2 < end; p++) {
        if ((p == tag || p[-1] == ' ' || p[-1] == '\n') && !strncmp(p, name, n) && p[n] == '=' && p[n + 1] == '"') {
            const char *v = p + n + 2, *q = memchr(v, '"', (size_t)(end - v));
            if (!q) return 0;
            snprintf(buf, cap, "%.*s", (int)(q - v), v);
            return 1;
        }
    }
    return 0;
}

static double attr_num(const char *tag, const char *end, const char *name, double dflt) {
    char b[64];
    return attr(tag, end, name, b, sizeof b) ? atof(b) : dflt;
}

/* "#rrggbb" into rgb; 0 for "none" or an absent attribute. */
static int attr_color(const char *tag, const char *end, const char *name, float rgb[3]) {
    char b[32];
    if (!attr(tag, end, name, b, sizeof b) || b[0] != '#' || strlen(b) != 7) return 0;
    const long v = strtol(b + 1, NULL, 16);
    rgb[0] = (float)((v >> 16) & 255) / 255, rgb[1] = (float)((v >> 8) & 255) / 255, rgb[2] = (float)(v & 255) / 255;
    return 1;
}

/* Text content: entities decoded, the figures' non-ASCII characters spelled out. */
static void text_content(const char *s, const char *end, char *out, size_t cap) {
    size_t n = 0;
    while (s < end && n + 5 < cap) {
        if (*s == '&') {
            const char *semi = memchr(s, ';', (size_t)(end - s));
            char ch = '?';
            if (semi) {
                if (!strncmp(s, "&amp;", 5)) ch = '&';
                else if (!strncmp(s, "&lt;", 4)) ch = '<';
                else if (!strncmp(s, "&gt;", 4)) ch = '>';
                else if (!strncmp(s, "&quot;", 6)) ch = '"';
                s = semi + 1;
            } else {
                s++;
            }
            out[n++] = ch;
        } else if ((unsigned char)*s < 128) {
            out[n++] = *s++;
        } else if (!strncmp(s, "\xc2\xb7", 2)) { /* · */
            out[n++] = ' ', out[n++] = 'x', out[n++] = ' ', s += 2;
        } else if (!strncmp(s, "\xe2\x88\x9a", 3)) { /* √ */
            memcpy(out + n, "sqrt", 4), n += 4, s += 3;
        } else {
            out[n++] = '?';
            s++;
            while (s < end && ((unsigned char)*s & 0xc0) == 0x80) s++;
        }
    }
    out[n] = 0;
}

/* stb_easy_font's glyphs are about 7 pixels tall above the baseline at scale 1. */
static void draw_text(Canvas *c, const char *tag, const char *end, const char *content) {
    float rgb[3] = {0, 0, 0};
    attr_color(tag, end, "fill", rgb);
    const double size = attr_num(tag, end, "font-size", 12), scale = size / 9.0;
    const double x = attr_num(tag, end, "x", 0), y = attr_num(tag, end, "y", 0);
    char anchor[16] = "start", rot[128] = "", weight[16] = "";
    attr(tag, end, "text-anchor", anchor, sizeof anchor);
    attr(tag, end, "font-weight", weight, sizeof weight);
    double angle = 0, rx = x, ry = y;
    if (attr(tag, end, "transform", rot, sizeof rot)) sscanf(rot, "rotate(%lf %lf %lf)", &angle, &rx, &ry);
    static char vbuf[200000];
    char text[1024];
    snprintf(text, sizeof text, "%s", content);
    const double width = stb_easy_font_width(text) * scale;
    const double ox = !strcmp(anchor, "middle") ? -width / 2 : !strcmp(anchor, "end") ? -width : 0;
    const int quads = stb_easy_font_print(0, 0, text, NULL, vbuf, sizeof vbuf);
    const double ca = cos(angle * M_PI / 180), sa = sin(angle * M_PI / 180);
    const int bold = !strcmp(weight, "bold");
    for (int q = 0; q < quads; q++) {
        const float *v0 = (const float *)(vbuf + 16 * 4 * q), *v2 = (const float *)(vbuf + 16 * (4 * q + 2));
        /* the quad in figure coordinates, before the rotation */
        double qx0 = x + ox + v0[0] * scale, qy0 = y - 7 * scale + v0[1] * scale;
        double qx1 = x + ox + (v2[0] + bold * 0.5) * scale, qy1 = y - 7 * scale + v2[1] * scale;
        if (angle == 0) {
            fill_rect(c, qx0, qy0, qx1, qy1, rgb, 1);
            continue;
        }
        double px[2], py[2]; /* a quarter turn keeps rectangles rectangles */
        for (int k = 0; k < 2; k++) {
            const double dx = (k ? qx1 : qx0) - rx, dy = (k ? qy1 : qy0) - ry;
            px[k] = rx + dx * ca - dy * sa;
            py[k] = ry + dx * sa + dy * ca;
        }
        fill_rect(c, fmin(px[0], px[1]), fmin(py[0], py[1]), fmax(px[0], px[1]), fmax(py[0], py[1]), rgb, 1);
    }
}

static void draw_shape(Canvas *c, const char *name, const char *tag, const char *end) {
    float stroke[3] = {0, 0, 0}, fill[3] = {0, 0, 0};
    const int has_stroke = attr_color(tag, end, "stroke", stroke), has_fill = attr_color(tag, end, "fill", fill);
    const float so = (float)attr_num(tag, end, "stroke-opacity", 1), fo = (float)attr_num(tag, end, "fill-opacity", 1);
    const double sw = attr_num(tag, end, "stroke-width", 1);
    char dash_s[64];
    double dash[2] = {0, 0};
    const int dashed = attr(tag, end, "stroke-dasharray", dash_s, sizeof dash_s) && sscanf(dash_s, "%lf %lf", &dash[0], &dash[1]) == 2;
    if (!strcmp(name, "rect")) {
        const double x = attr_num(tag, end, "x", 0), y = attr_num(tag, end, "y", 0);
        char wb[32];
        const double w = attr(tag, end, "width", wb, sizeof wb) && strchr(wb, '%') ? c->w / (double)SS : atof(wb);
        const double h = attr(tag, end, "height", wb, sizeof wb) && strchr(wb, '%') ? c->h / (double)SS : atof(wb);
        if (has_fill) fill_rect(c, x, y, x + w, y + h, fill, fo);
        if (has_stroke) {
            segment(c, x, y, x + w, y, sw, NULL, 0, stroke, so);
            segment(c, x + w, y, x + w, y + h, sw, NULL, 0, stroke, so);
            segment(c, x + w, y + h, x, y + h, sw, NULL, 0, stroke, so);
            segment(c, x, y + h, x, y, sw, NULL, 0, stroke, so);
        }
    } else if (!strcmp(name, "line") && has_stroke) {
        segment(c, attr_num(tag, end, "x1", 0), attr_num(tag, end, "y1", 0), attr_num(tag, end, "x2", 0),
                attr_num(tag, end, "y2", 0), sw, dashed ? dash : NULL, 0, stroke, so);
    } else if (!strcmp(name, "circle")) {
        if (has_fill) disk(c, attr_num(tag, end, "cx", 0), attr_num(tag, end, "cy", 0), attr_num(tag, end, "r", 1), fill, fo);
    } else if (!strcmp(name, "polyline") && has_stroke) {
        const char *p = strstr(tag, " points=\"");
        if (!p || p > end) return;
        p += 9;
        double x0 = 0, y0 = 0, phase = 0;
        int first = 1;
        while (p < end && *p != '"') {
            char *q;
            const double x = strtod(p, &q);
            if (q == p || *q != ',') break;
            const double y = strtod(q + 1, &q);
            if (!first) phase = segment(c, x0, y0, x, y, sw, dashed ? dash : NULL, phase, stroke, so);
            x0 = x, y0 = y, first = 0;
            p = q;
            while (*p == ' ') p++;
        }
    }
}

int svg_render_png(const char *svg_path, const char *png_path, Err *e) {
    size_t size;
    uint8_t *raw = read_file(svg_path, &size, e);
    if (!raw) return -1;
    char *svg = xmalloc(size + 1, "the SVG");
    memcpy(svg, raw, size);
    svg[size] = 0;
    free(raw);
    const char *root = strstr(svg, "<svg ");
    const char *root_end = root ? strchr(root, '>') : NULL;
    const double W = root_end ? attr_num(root, root_end, "width", 0) : 0, H = root_end ? attr_num(root, root_end, "height", 0) : 0;
    if (!(W >= 1 && H >= 1 && W <= 8192 && H <= 8192)) {
        xfree(svg);
        return err_set(e, "%s: not an SVG of byol's (no <svg width height> of 1..8192 px)", svg_path);
    }
    Canvas c = {(int)ceil(W) * SS, (int)ceil(H) * SS, NULL};
    c.px = xmalloc((size_t)c.w * c.h * 3 * sizeof(float), "the rendered figure");
    for (size_t i = 0; i < (size_t)c.w * c.h * 3; i++) c.px[i] = 1.0f;
    for (const char *p = root_end + 1; (p = strchr(p, '<')) != NULL;) {
        const char *end = strchr(p, '>');
        if (!end) break;
        char name[16];
        int n = 0;
        while (n < 15 && p[1 + n] && p[1 + n] != ' ' && p[1 + n] != '>' && p[1 + n] != '/') name[n] = p[1 + n], n++;
        name[n] = 0;
        if (!strcmp(name, "text")) {
            const char *close = strstr(end, "</text>");
            if (!close) break;
            char content[1024];
            text_content(end + 1, close, content, sizeof content);
            draw_text(&c, p, end, content);
            p = close + 7;
            continue;
        }
        if (!strcmp(name, "title")) { /* not drawn */
            const char *close = strstr(end, "</title>");
            p = close ? close + 8 : end + 1;
            continue;
        }
        draw_shape(&c, name, p, end);
        p = end + 1;
    }
    xfree(svg);
    /* down to the figure's size: the mean of each SS x SS block */
    const int w = c.w / SS, h = c.h / SS;
    uint8_t *out = xmalloc((size_t)w * h * 3, "the PNG's pixels");
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < 3; k++) {
                float s = 0;
                for (int dy = 0; dy < SS; dy++)
                    for (int dx = 0; dx < SS; dx++) s += c.px[3 * ((size_t)(y * SS + dy) * c.w + x * SS + dx) + k];
                const float v = s / (SS * SS);
                out[3 * ((size_t)y * w + x) + k] = (uint8_t)lrintf(v < 0 ? 0 : v > 1 ? 255 : v * 255);
            }
    xfree(c.px);
    const int rc = png_write(png_path, out, w, h, 3, e);
    xfree(out);
    return rc;
}
