/* Training curves as a self-contained SVG (no libraries beyond libc and cJSON).
 *
 * Input: a run's metrics.jsonl, one JSON object per line. Logging lines look like
 *   {"step": 120, "epoch": 1.5, "loss": 3.21, "lr": 0.5, "tau": 0.991, "images_per_s": 130.2,
 *    "proj_std": 0.83, "eff_rank": 41.2}
 * and evaluation lines like {"step": 400, "epoch": 5, "knn_top1": 0.612} (a fraction, drawn as
 * a percentage). Any key may be absent; other keys are ignored, as is a key whose value is not a
 * number (or is beyond 1e300). A line that is not a JSON object, or has no numeric "step" (it
 * cannot be placed), is skipped and counted; blank lines are ignored. Points are drawn in step
 * order (equal steps in file order).
 *
 * Output (960 x 918 px): three stacked panels sharing the x axis (step), each with 1-2-5 ticks,
 * axis labels and a legend in one row above the frame:
 *   (a) loss (left axis), learning rate faint and dashed (right axis, from 0);
 *   (b) kNN top-1 accuracy in %, points and a line;
 *   (c) collapse monitor: proj_std (left axis, 0 .. max(1.2, largest value)) and eff_rank
 *       (right axis, 0 .. max(3, largest value)) in their own colours, each with its collapse
 *       threshold (monitor.h: 0.1 and 1.5) as a dashed line of the same colour at that value of
 *       its own axis, labelled on the line at its axis's side ("std·√D = 0.1 (collapse)" left,
 *       "effective rank = 1.5 (collapse)" right). Each such line is <line class="threshold"
 *       data-series="proj_std|eff_rank">.
 * A panel whose series are all empty says "no data". Each series is one <polyline> whose class
 * names it (loss, lr, knn_top1, proj_std, eff_rank); numbers are printed with %g, coordinates
 * with one decimal. The file is written atomically (AtomicFile). */
#ifndef BYOL_PLOT_H
#define BYOL_PLOT_H

#include "../core/common.h"

/* Returns 0 (the number of skipped lines is noted under the plot: "N lines skipped"), or -1 with
 * e filled: the metrics file cannot be read (the message names it), or the SVG cannot be written
 * (no file is left behind). */
int plot_metrics_svg(const char *jsonl_path, const char *svg_path, Err *e);

/* The collapse lab's figure: n runs (at most LAB_PLOT_MAX), each a metrics.jsonl and a label,
 * in four panels against step: (a) std·√D and (b) effective rank, each with its collapse
 * threshold; (c) loss; (d) kNN top-1 of the online encoder (solid, points) and of the target
 * encoder (dashed; "knn_target_top1"). One colour per run, one legend above the panels.
 * 0, or -1 with e set (a file that cannot be read or written; nothing is left behind). */
enum { LAB_PLOT_MAX = 32 };
int plot_lab_svg(const char *const *jsonl_paths, const char *const *labels, int n, const char *title,
                 const char *svg_path, Err *e);

#endif
