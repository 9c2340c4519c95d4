/* Collapse monitor. Nothing in BYOL's loss forbids a constant output; these two figures, taken
 * on a batch of projections Z [B x D] (row-major float) at logging steps, show whether the
 * representation is collapsing.
 *
 *  std_sqrt_d  each row L2-normalized (a zero row stays zero), then the per-dimension standard
 *              deviation over the batch, unbiased (divides by B - 1, as torch.std), averaged
 *              over the D dimensions and multiplied by sqrt(D). About 1 for isotropic outputs
 *              (random Gaussian rows), 0 when every row points the same way. B < 2 gives 0.
 *  eff_rank    effective rank (Roy & Vetterli 2007) of the centered Z (rows minus the column
 *              mean): with s_i its singular values and p_i = s_i / sum s, exp(-sum p_i log p_i)
 *              over p_i > 0. 1 for rank one .. min(B, D) for equal singular values; an all-zero
 *              centered matrix (identical rows, B = 1) gives 0 by definition.
 *
 * The singular values come from the eigenvalues of the smaller of the D x D covariance
 * Zc^T Zc and the B x B Gram matrix Zc Zc^T (the same nonzero spectrum), formed in double:
 * s_i = sqrt(lambda_i). Eigenvalues at or below (B + D) * DBL_EPSILON * lambda_max are the
 * round-off of forming that product and count as zero (they stand for singular values below
 * about 1e-6 of the largest, whose share of the entropy is negligible). The eigenvalues are
 * computed by Householder tridiagonalization and the implicit QL method (sym_eigenvalues): about
 * 5 ms for B = D = 256 where a cyclic Jacobi method took 30-50 ms on the same machine. */
#ifndef BYOL_MONITOR_H
#define BYOL_MONITOR_H

#include <stddef.h>

typedef struct {
    double std_sqrt_d;
    double eff_rank;
} CollapseStats;

/* Scratch size in doubles for collapse_stats: min(B,D) * (B + D) + 4 * max(B, D) or so. */
size_t collapse_work_doubles(int B, int D);

/* Fills *out for Z [B x D]. work holds collapse_work_doubles(B, D) doubles, or is NULL (then it
 * is allocated and freed here). B < 1 or D < 1 gives zeros. A non-finite value in Z gives NaN
 * figures. */
void collapse_stats(const float *z, int B, int D, CollapseStats *out, double *work);

/* Collapse thresholds: a warning when std_sqrt_d < COLLAPSE_STD_MIN (complete collapse: every
 * output the same) or eff_rank < COLLAPSE_RANK_MIN (every output along one direction). The
 * effective rank is not held to a fraction of D: BYOL's projections span few directions while
 * the encoder learns well. Healthy runs settle at 3-5 of 64 to 256 for byol.c and PyTorch alike
 * (CIFAR-10 at 60 minutes: 3.7 of 256 with kNN rising to 43.7%, the encoder's features at 34 of
 * 128; the default Fashion-MNIST run: 3.4 of 64 with kNN 67.5% -> 71.8%), so a 5%-of-D rule warned
 * on every run. A NaN figure warns too (the run has diverged). */
#define COLLAPSE_STD_MIN 0.1
#define COLLAPSE_RANK_MIN 1.5

/* Nonzero when collapse sets in (the thresholds above). */
int collapse_warning(const CollapseStats *s);

/* The trivial solution's other signature, the one the papers report ("the loss reaches -1 at
 * once"): the predictions agree with their targets, mean cosine > COLLAPSE_AGREE_COS (the loss
 * within 5% of its range from its floor), while the projections have shrunk, std x sqrt(D) <
 * COLLAPSE_AGREE_STD. Either alone is not collapse: a healthy run's cosine climbs over a long
 * training while its projections keep their spread (BYOL and SimSiam stay at std x sqrt(D)
 * 0.6-0.95 in the lab; BYOL without head batch norm at cosine 0.91 and std 0.61), and a run can
 * shrink for a while and recover. Measured in the lab (Fashion-MNIST, 2 cores): BYOL without
 * its predictor reaches cosine 0.99 at std 0.16 in 130 steps, 0.997 at 0.11 in 570; SimSiam
 * without its stop-gradient 0.93-0.94 at 0.3-0.4 in 120-260 steps, 0.98 at 0.17 in 560; BYOL
 * itself 0.70-0.85 at 0.6-0.8, SimSiam 0.5-0.73 at 0.85-0.95. A NaN figure gives 0
 * (collapse_warning calls that one). */
#define COLLAPSE_AGREE_COS 0.9
#define COLLAPSE_AGREE_STD 0.5
int collapse_agreement(double mean_cos, double std_sqrt_d);

/* The first sign of collapse that shows, in the order std (below COLLAPSE_STD_MIN, or NaN), rank
 * (below COLLAPSE_RANK_MIN, or NaN), agreement (collapse_agreement; mean_cos NAN: not judged,
 * DINO's case); COLLAPSE_NONE when none does. What byol train warns on and the lab reports. */
typedef enum { COLLAPSE_NONE, COLLAPSE_STD, COLLAPSE_RANK, COLLAPSE_AGREEMENT } CollapseSign;
CollapseSign collapse_sign(const CollapseStats *s, double mean_cos);
const char *collapse_sign_name(CollapseSign sign); /* "std", "rank", "agreement"; "" for none */

/* Eigenvalues of the symmetric matrix a [n x n] (row-major, full storage, both triangles set;
 * destroyed), in descending order into w[n]. work holds 2 * n doubles. Householder reduction to
 * tridiagonal form, then implicit QL with Wilkinson-type shifts; absolute error a few
 * DBL_EPSILON * ||a||. Returns 0, or -1 when some eigenvalue needed more than 60 QL iterations
 * (not seen in practice; w then holds the current approximations, still sorted). */
int sym_eigenvalues(double *a, int n, double *w, double *work);

#endif
