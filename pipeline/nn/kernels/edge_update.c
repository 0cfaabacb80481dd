/* Fused CPU kernels for the edge side of an edge-gated graph convolution (see pipeline/nn/fused.py).
 *
 * For an edge e = (src[e] -> dst[e]) with pre-activation row m[e] (d floats):
 *   s_e = sigmoid(m_e);  summed[dst] += s_e * v[src];  denom[dst] += s_e           (gated mean, numerator/denominator)
 *   y_new[e] = y[e] + SiLU(m_e * scale + shift)       (BatchNorm folded into scale/shift, then residual)
 * and the matching backward passes. Eager PyTorch runs each of these as its own pass over a (T, d) tensor
 * (T = edges, up to ~10^5 rows of 256 floats on the line graph), so training is memory-bound; here one pass does
 * what took five to ten, and sigmoid(m) and the BatchNorm output are recomputed instead of stored.
 *
 * No atomics and no dependence on the thread count: sums onto a node (the gated mean onto dst, dL/dv onto src)
 * are gathers, one node row per loop iteration over that node's edges in a fixed order (``order``/``offsets``, a
 * CSR view sorted by that node; ``order`` NULL means edges are already sorted), and per-column sums over edges
 * (BatchNorm statistics) are accumulated per fixed block of rows and then added block by block.
 * Plain C (no torch headers) so that it compiles quickly with any C99 compiler. Called through ctypes: every
 * function's parameters are declared in fused.py (_SIGNATURES); keep the two in step.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* sigmoid's division dominates the elementwise work once the passes over memory are fused: with GCC, let it use the
 * reciprocal estimate + one Newton step (~23 correct bits; rcp14 on AVX-512). These options are set here rather
 * than as -ffast-math on the command line, which would also link crtfastmath.o and switch the whole process
 * (torch included) to flush-to-zero. Finite-math is safe here: exp's argument is clamped, no inf or NaN is made.
 * Associative math stays off: it would fold exp_approx's range reduction away. */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC optimize("unsafe-math-optimizations", "no-associative-math", "finite-math-only", "no-math-errno")
#pragma GCC target("recip")
#endif

/* exp(x) for float x, Cephes expf (Cody-Waite reduction, degree-7 polynomial; ~1 ulp on the clamped range),
 * written branch-free so that compilers vectorise the loops that call it (checked with gcc -fopt-info-vec). */
static inline float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : x; /* ternaries, not fminf/floorf: those block vectorisation without -ffast-math */
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest (1.5 * 2^23 trick) */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = ((int32_t)n + 127) << 23};
    return p * scale.f;
}

static inline float sigmoid_approx(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

/* sigmoid'(x) = s (1 - s) with s = sigmoid(x), written as s^2 e with e = exp(-x) (1 - s = e s): 1 - s cancels
 * catastrophically as s -> 1, so one ulp of s (the reciprocal estimate rounds differently per CPU tuning) would
 * change it by up to 100 % and the SiLU gradient by u times that. Returns s and stores sigmoid'(x). */
static inline float sigmoid_and_grad(float x, float *restrict grad) {
    float e = exp_approx(-x);
    float s = 1.0f / (1.0f + e);
    *grad = s * (e * s);
    return s;
}

/* d SiLU(u) / du = s (1 + u (1 - s)) = s + u sigmoid'(u) with s = sigmoid(u) */
static inline float silu_grad(float u) {
    float ds;
    float s = sigmoid_and_grad(u, &ds);
    return s + u * ds;
}

/* BatchNorm+SiLU backward at one element: gu = g * SiLU'(u) with u = x * scale + shift, and dL/dx from it */
static inline float norm_silu_gu(float x, float g, float scale, float shift) {
    return g * silu_grad(x * scale + shift);
}

static inline float norm_input_grad(float x, float gu, float mean, float invstd, float coef, float gu_mean,
                                    float gux_mean) {
    return coef * (gu - gu_mean - (x - mean) * invstd * gux_mean);
}

static int n_threads(int requested) { return requested > 0 ? requested : 1; }

/* m[e] = src_gate[src[e]] + dst_gate[dst[e]] + bias (gates: rows with stride ld) */
static inline void preactivation_row(int64_t e, int64_t d, int64_t ld, const int64_t *src, const int64_t *dst,
                                     const float *src_gate, const float *dst_gate, const float *bias, float *m) {
    const float *restrict a = src_gate + src[e] * ld;
    const float *restrict b = dst_gate + dst[e] * ld;
    float *restrict me = m + e * d;
#pragma omp simd
    for (int64_t c = 0; c < d; c++) me[c] = a[c] + b[c] + bias[c];
}

/* out = SiLU(x * scale + shift) (+ y when y is not NULL), one row of d */
static inline void norm_silu_row(int64_t d, const float *restrict x, const float *restrict scale,
                                 const float *restrict shift, const float *restrict y, float *restrict out) {
    if (y) {
#pragma omp simd
        for (int64_t c = 0; c < d; c++) {
            float u = x[c] * scale[c] + shift[c];
            out[c] = y[c] + u * sigmoid_approx(u);
        }
    } else {
#pragma omp simd
        for (int64_t c = 0; c < d; c++) {
            float u = x[c] * scale[c] + shift[c];
            out[c] = u * sigmoid_approx(u);
        }
    }
}

static int64_t edge_at(const int64_t *order, int64_t p) { return order ? order[p] : p; }

/* The edge rows that gate_forward reads in destination order defeat the hardware prefetcher at each jump; asking
 * for the row PREFETCH_AHEAD edges ahead made it faster here (the other gathers did not gain). */
#define PREFETCH_AHEAD 2
static inline void prefetch_row(const float *row, int64_t d) {
#if defined(__GNUC__) || defined(__clang__)
    for (int64_t c = 0; c < d; c += 16) __builtin_prefetch(row + c, 0, 1);
#else
    (void)row;
    (void)d;
#endif
}

/* out[c] = sum over blocks b of partial[b * stride + c], for c < width (in block order) */
static void add_blocks(int64_t blocks, int64_t stride, int64_t width, const double *partial, double *out) {
    for (int64_t b = 0; b < blocks; b++)
        for (int64_t c = 0; c < width; c++) out[c] += partial[b * stride + c];
}

/* For each node j, over the edges e -> j with s_e = sigmoid(m[e]):
 *   denom[j] = sum_e s_e + eps,  h[j] = sum_e s_e v[src[e]] / denom[j],  u[j] = self[j] + h[j]
 * (h and denom may be NULL when no backward follows). v and self are rows with stride ld (columns of the node-side
 * projection). With col_stats (2 d doubles, zeroed by the caller): the column sums of m and m^2 over all edges.
 * partial: (N / NODE_BLOCK + 1) * 2 d doubles of scratch (or NULL without col_stats). The sums are taken in float
 * within a block of NODE_BLOCK nodes (half the work of doubles) and in double across blocks, of m - m[0] (row 0 as
 * a shift that keeps the float sums of squares from cancelling when |mean| >> std), and shifted back in double.
 * With x_new (inference with BatchNorm running statistics node_scale/node_shift): u is not written; instead
 * x_new[j] = x[j] + SiLU(u[j] * node_scale + node_shift), the node update, in the same pass (h, denom NULL). */
#define NODE_BLOCK 64
void gate_forward(int64_t n_nodes, int64_t d, int64_t ld, const float *m, const float *v, const float *self,
                  const int64_t *src, const int64_t *dst_order, const int64_t *dst_offsets, float eps, float *h,
                  float *denom, float *u, double *col_stats, double *partial, const float *x,
                  const float *node_scale, const float *node_shift, float *x_new, int threads) {
    int64_t blocks = (n_nodes + NODE_BLOCK - 1) / NODE_BLOCK;
#pragma omp parallel num_threads(n_threads(threads))
    {
        float den_local[d], acc[2 * d];
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            double *restrict ps = col_stats ? partial + b * 2 * d : NULL;
            if (ps)
                for (int64_t c = 0; c < 2 * d; c++) acc[c] = 0.0f;
            int64_t end = (b + 1) * NODE_BLOCK < n_nodes ? (b + 1) * NODE_BLOCK : n_nodes;
            for (int64_t j = b * NODE_BLOCK; j < end; j++) {
                float *uj = x_new ? x_new + j * d : u + j * d;
                float *num = h ? h + j * d : uj; /* the numerator accumulates in the output when h is not kept */
                float *restrict den = denom ? denom + j * d : den_local;
                for (int64_t c = 0; c < d; c++) num[c] = den[c] = 0.0f;
                for (int64_t p = dst_offsets[j]; p < dst_offsets[j + 1]; p++) {
                    int64_t e = edge_at(dst_order, p);
                    if (p + PREFETCH_AHEAD < dst_offsets[end])
                        prefetch_row(m + edge_at(dst_order, p + PREFETCH_AHEAD) * d, d);
                    const float *restrict me = m + e * d;
                    const float *restrict vs = v + src[e] * ld;
#pragma omp simd
                    for (int64_t c = 0; c < d; c++) {
                        float s = sigmoid_approx(me[c]);
                        num[c] += s * vs[c];
                        den[c] += s;
                    }
                    if (ps) {
#pragma omp simd
                        for (int64_t c = 0; c < d; c++) {
                            float x = me[c] - m[c];
                            acc[c] += x;
                            acc[d + c] += x * x;
                        }
                    }
                }
                const float *restrict sj = self + j * ld;
                if (h) {
#pragma omp simd
                    for (int64_t c = 0; c < d; c++) {
                        float dd = den[c] + eps;
                        float hh = num[c] / dd;
                        den[c] = dd;
                        num[c] = hh;
                        uj[c] = sj[c] + hh;
                    }
                } else if (x_new) {
                    const float *restrict xj = x + j * d;
#pragma omp simd
                    for (int64_t c = 0; c < d; c++) {
                        float un = (sj[c] + uj[c] / (den[c] + eps)) * node_scale[c] + node_shift[c];
                        uj[c] = xj[c] + un * sigmoid_approx(un);
                    }
                } else {
#pragma omp simd
                    for (int64_t c = 0; c < d; c++) {
                        float dd = den[c] + eps;
                        den[c] = dd;
                        uj[c] = sj[c] + uj[c] / dd;
                    }
                }
            }
            if (ps)
                for (int64_t c = 0; c < 2 * d; c++) ps[c] = acc[c];
        }
    }
    if (col_stats) {
        add_blocks(blocks, 2 * d, 2 * d, partial, col_stats);
        double t = (double)dst_offsets[n_nodes];
        for (int64_t c = 0; c < d; c++) { /* sums of x from the sums of x - s */
            double shift = m[c], s1 = col_stats[c];
            col_stats[c] = s1 + t * shift;
            col_stats[d + c] += 2.0 * shift * s1 + t * shift * shift;
        }
    }
}

/* With gu = g * SiLU'(u), u = m * scale + shift, xhat = (m - mean) * invstd:
 * sums[0:d] = sum_e gu, sums[d:2d] = sum_e gu * xhat (zeroed by the caller).
 * partial: (T / EDGE_BLOCK + 1) * 2 d doubles of scratch. */
#define EDGE_BLOCK 256
void norm_silu_backward_sums(int64_t T, int64_t d, const float *m, const float *g, const float *scale,
                             const float *shift, const float *mean, const float *invstd, double *sums,
                             double *partial, int threads) {
    int64_t blocks = (T + EDGE_BLOCK - 1) / EDGE_BLOCK;
#pragma omp parallel num_threads(n_threads(threads))
    {
        float acc[2 * d]; /* float sums within a block of EDGE_BLOCK rows, then doubles across blocks */
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            for (int64_t c = 0; c < 2 * d; c++) acc[c] = 0.0f;
            int64_t end = (b + 1) * EDGE_BLOCK < T ? (b + 1) * EDGE_BLOCK : T;
            for (int64_t e = b * EDGE_BLOCK; e < end; e++) {
                const float *restrict me = m + e * d;
                const float *restrict ge = g + e * d;
#pragma omp simd
                for (int64_t c = 0; c < d; c++) {
                    float gu = norm_silu_gu(me[c], ge[c], scale[c], shift[c]);
                    acc[c] += gu;
                    acc[d + c] += gu * (me[c] - mean[c]) * invstd[c];
                }
            }
            double *restrict ps = partial + b * 2 * d;
            for (int64_t c = 0; c < 2 * d; c++) ps[c] = acc[c];
        }
    }
    add_blocks(blocks, 2 * d, 2 * d, partial, sums);
}

/* For every edge e (grad_m[e] written) and every source node i (grad_v[i] written):
 *   grad_m[e] = (g != NULL ? coef * (gu - gu_mean - xhat * gux_mean) : 0)
 *               + (gsum[dst] * v[src] - gh[dst]) * s (1 - s),          s = sigmoid(m[e])
 *   grad_v[i] = sum over the edges e of i of gsum[dst[e]] * s_e,    grad_src[i] = sum over the edges e of i of grad_m[e]
 * where gsum = dL/dh / denom and gh = gsum * h are per destination node, coef = gamma * invstd, and gu_mean,
 * gux_mean the BatchNorm backward terms (zeros in eval mode). Edges are visited by source (src_order/offsets).
 * v, grad_v and grad_src are rows with stride ld (columns of the node-side projection and of its gradient). */
void edge_backward(int64_t n_nodes, int64_t d, int64_t ld, const float *m, const float *g, const float *v,
                   const int64_t *src_order, const int64_t *src_offsets, const int64_t *dst, const float *gsum,
                   const float *gh, const float *scale, const float *shift, const float *mean, const float *invstd,
                   const float *coef, const float *gu_mean, const float *gux_mean, float *grad_m, float *grad_v,
                   float *grad_src, int threads) {
#pragma omp parallel for num_threads(n_threads(threads)) schedule(static)
    for (int64_t i = 0; i < n_nodes; i++) {
        const float *restrict vs = v + i * ld;
        float *restrict gvs = grad_v + i * ld;
        float *restrict gsrc = grad_src + i * ld;
        for (int64_t c = 0; c < d; c++) gvs[c] = gsrc[c] = 0.0f;
        for (int64_t p = src_offsets[i]; p < src_offsets[i + 1]; p++) {
            int64_t e = edge_at(src_order, p);
            const float *restrict me = m + e * d;
            const float *restrict gs = gsum + dst[e] * d;
            const float *restrict ghd = gh + dst[e] * d;
            float *restrict gme = grad_m + e * d;
            if (g) {
                const float *restrict ge = g + e * d;
#pragma omp simd
                for (int64_t c = 0; c < d; c++) {
                    float gu = norm_silu_gu(me[c], ge[c], scale[c], shift[c]);
                    float ds;
                    float s = sigmoid_and_grad(me[c], &ds);
                    float gm = norm_input_grad(me[c], gu, mean[c], invstd[c], coef[c], gu_mean[c], gux_mean[c]) +
                               (gs[c] * vs[c] - ghd[c]) * ds;
                    gme[c] = gm;
                    gsrc[c] += gm;
                    gvs[c] += gs[c] * s;
                }
            } else {
#pragma omp simd
                for (int64_t c = 0; c < d; c++) {
                    float ds;
                    float s = sigmoid_and_grad(me[c], &ds);
                    float gm = (gs[c] * vs[c] - ghd[c]) * ds;
                    gme[c] = gm;
                    gsrc[c] += gm;
                    gvs[c] += gs[c] * s;
                }
            }
        }
    }
}

/* m[e] = dst_gate[dst[e]] + src_gate[src[e]] + bias, every row written (the edge linear map is added after);
 * the gates are rows with stride ld */
void edge_preactivation(int64_t T, int64_t d, int64_t ld, const int64_t *src, const int64_t *dst,
                        const float *src_gate, const float *dst_gate, const float *bias, float *m, int threads) {
#pragma omp parallel for num_threads(n_threads(threads)) schedule(static)
    for (int64_t e = 0; e < T; e++) preactivation_row(e, d, ld, src, dst, src_gate, dst_gate, bias, m);
}

/* The edge linear map W (d x d, row-major as torch.nn.Linear.weight) in blocks of GEMM_ROWS edge rows, each block
 * one single-threaded BLAS sgemm right after (forward) or next to (backward) the row-wise work on the same rows, so
 * the rows are still in cache. Why not torch: its multi-threaded GEMMs on these shapes ((T, 256) x (256, 256) with
 * T ~ 6e4) split dL/dW along the long dimension T and need a separate pass for the residual, whereas row blocks on
 * independent threads do neither (measured: fused vs fused[torch-gemm], benchmarks/results/conv_paths.json).
 * sgemm is BLAS's Fortran sgemm_ (column-major): a row-major (r x c) matrix is its column-major transpose, so
 * row-major C = A B is called as C^T = B^T A^T. set_threads (MKL's mkl_set_num_threads_local, Fortran
 * convention) keeps each sgemm on the calling thread; NULL leaves the BLAS alone. */
typedef void (*sgemm_fn)(const char *, const char *, const int *, const int *, const int *, const float *,
                         const float *, const int *, const float *, const int *, const float *, float *,
                         const int *);
typedef int (*set_threads_fn)(const int *);
#define GEMM_ROWS 512

/* m[e] = src_gate[src[e]] + dst_gate[dst[e]] + bias + W y[e] for every edge (T rows; gates with row stride ld).
 * With y_new (BatchNorm with known statistics, i.e. eval mode): also y_new[e] = y[e] + SiLU(m[e] * scale + shift),
 * while the block of m and y is still in cache (norm_silu's work without its pass over memory). */
void edge_linear_forward(sgemm_fn sgemm, set_threads_fn set_threads, int64_t T, int64_t d, int64_t ld,
                         const int64_t *src, const int64_t *dst, const float *src_gate, const float *dst_gate,
                         const float *bias, const float *y, const float *w, float *m, const float *scale,
                         const float *shift, float *y_new, int threads) {
    int dim = (int)d;
#pragma omp parallel num_threads(n_threads(threads))
    {
        int one = 1, previous = set_threads ? set_threads(&one) : 0;
        const float f_one = 1.0f;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < T; r += GEMM_ROWS) {
            int rows = (int)(T - r < GEMM_ROWS ? T - r : GEMM_ROWS);
            for (int64_t e = r; e < r + rows; e++)
                preactivation_row(e, d, ld, src, dst, src_gate, dst_gate, bias, m);
            /* m^T[:, block] += W y^T[:, block] (column-major view of row-major m[block] += y[block] W^T) */
            sgemm("T", "N", &dim, &rows, &dim, &f_one, w, &dim, y + r * d, &dim, &f_one, m + r * d, &dim);
            for (int64_t e = r; y_new && e < r + rows; e++)
                norm_silu_row(d, m + e * d, scale, shift, y + e * d, y_new + e * d);
        }
        if (set_threads) set_threads(&previous);
    }
}

/* grad_y = residual + grad_m W (residual may be NULL) and grad_w = grad_m^T y, summed in order over `parts` row
 * ranges fixed by T and parts alone (the caller keeps parts independent of the thread count, so dL/dW has the same
 * bits for any number of threads). partial: parts * d * d floats of scratch. */
void edge_linear_backward(sgemm_fn sgemm, set_threads_fn set_threads, int64_t T, int64_t d, const float *grad_m,
                          const float *residual, const float *y, const float *w, float *grad_y, float *grad_w,
                          float *partial, int parts, int threads) {
    int dim = (int)d;
#pragma omp parallel num_threads(n_threads(threads))
    {
        int one = 1, previous = set_threads ? set_threads(&one) : 0;
        const float f_one = 1.0f, f_zero = 0.0f;
#pragma omp for schedule(static)
        for (int part = 0; part < parts; part++) {
            int64_t lo = T * part / parts, hi = T * (part + 1) / parts;
            float *gw = partial + (int64_t)part * d * d;
            for (int64_t c = 0; lo == hi && c < d * d; c++) gw[c] = 0.0f;
            for (int64_t r = lo; r < hi; r += GEMM_ROWS) {
                int rows = (int)(hi - r < GEMM_ROWS ? hi - r : GEMM_ROWS);
                float *restrict gy = grad_y + r * d;
                if (residual) {
                    const float *restrict res = residual + r * d;
#pragma omp simd
                    for (int64_t c = 0; c < rows * d; c++) gy[c] = res[c];
                }
                /* grad_y^T[:, block] (+)= W^T grad_m^T[:, block]; then grad_w^T (+)= y^T[:, block] grad_m[block] */
                sgemm("N", "N", &dim, &rows, &dim, &f_one, w, &dim, grad_m + r * d, &dim,
                      residual ? &f_one : &f_zero, gy, &dim);
                sgemm("N", "T", &dim, &dim, &rows, &f_one, y + r * d, &dim, grad_m + r * d, &dim,
                      r == lo ? &f_zero : &f_one, gw, &dim);
            }
        }
        if (set_threads) set_threads(&previous);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < d * d; c++) {
            float s = 0.0f;
            for (int part = 0; part < parts; part++) s += partial[(int64_t)part * d * d + c];
            grad_w[c] = s;
        }
    }
}

/* out[j] = sum of rows[e] over the edges e of node j (CSR order/offsets as above); every row of out (stride ld)
 * written */
void segment_sum(int64_t n_nodes, int64_t d, int64_t ld, const float *rows, const int64_t *order,
                 const int64_t *offsets, float *out, int threads) {
#pragma omp parallel for num_threads(n_threads(threads)) schedule(static)
    for (int64_t j = 0; j < n_nodes; j++) {
        float *restrict oj = out + j * ld;
        for (int64_t c = 0; c < d; c++) oj[c] = 0.0f;
        for (int64_t p = offsets[j]; p < offsets[j + 1]; p++) {
            const float *restrict r = rows + edge_at(order, p) * d;
#pragma omp simd
            for (int64_t c = 0; c < d; c++) oj[c] += r[c];
        }
    }
}

/* sums[0:d] = column sums of x, sums[d:2d] = column sums of x^2 (zeroed by the caller), per block of rows then
 * block by block; partial: (T / EDGE_BLOCK + 1) * 2 d doubles of scratch */
void column_stats(int64_t T, int64_t d, const float *x, double *sums, double *partial, int threads) {
    int64_t blocks = (T + EDGE_BLOCK - 1) / EDGE_BLOCK;
#pragma omp parallel for num_threads(n_threads(threads)) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        double *restrict ps = partial + b * 2 * d;
        for (int64_t c = 0; c < 2 * d; c++) ps[c] = 0.0;
        int64_t end = (b + 1) * EDGE_BLOCK < T ? (b + 1) * EDGE_BLOCK : T;
        for (int64_t e = b * EDGE_BLOCK; e < end; e++) {
            const float *restrict xe = x + e * d;
#pragma omp simd
            for (int64_t c = 0; c < d; c++) {
                double v = xe[c];
                ps[c] += v;
                ps[d + c] += v * v;
            }
        }
    }
    add_blocks(blocks, 2 * d, 2 * d, partial, sums);
}

/* out[e] = SiLU(x[e] * scale + shift) (+ y[e] when y is not NULL) */
void norm_silu(int64_t T, int64_t d, const float *x, const float *scale, const float *shift, const float *y,
               float *out, int threads) {
#pragma omp parallel for num_threads(n_threads(threads)) schedule(static)
    for (int64_t e = 0; e < T; e++) norm_silu_row(d, x + e * d, scale, shift, y ? y + e * d : NULL, out + e * d);
}

/* grad_x[e] = coef * (gu - gu_mean - xhat * gux_mean), gu = g * SiLU'(x * scale + shift), xhat = (x - mean) invstd */
void norm_silu_backward(int64_t T, int64_t d, const float *x, const float *g, const float *scale,
                        const float *shift, const float *mean, const float *invstd, const float *coef,
                        const float *gu_mean, const float *gux_mean, float *grad_x, int threads) {
#pragma omp parallel for num_threads(n_threads(threads)) schedule(static)
    for (int64_t e = 0; e < T; e++) {
        const float *restrict xe = x + e * d;
        const float *restrict ge = g + e * d;
        float *restrict gx = grad_x + e * d;
#pragma omp simd
        for (int64_t c = 0; c < d; c++) {
            float gu = norm_silu_gu(xe[c], ge[c], scale[c], shift[c]);
            gx[c] = norm_input_grad(xe[c], gu, mean[c], invstd[c], coef[c], gu_mean[c], gux_mean[c]);
        }
    }
}

/* BatchNorm folded into u = x * scale + shift: terms = [scale | shift | mean | invstd] (4 d floats). In training
 * mode (stats = column sums of x and x^2 over T rows, 2 d doubles) the batch statistics are used and the running
 * ones updated as torch.nn.BatchNorm1d does (unbiased variance); with stats NULL the running statistics are used. */
void norm_terms(int64_t d, int64_t T, const double *stats, const float *gamma, const float *beta,
                float *running_mean, float *running_var, double momentum, double eps, float *terms) {
    for (int64_t c = 0; c < d; c++) {
        double mean, var;
        if (stats) {
            mean = stats[c] / (double)T;
            var = stats[d + c] / (double)T - mean * mean;
            var = var > 0.0 ? var : 0.0;
            running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
            running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * var * T / (T - 1.0));
        } else {
            mean = running_mean[c];
            var = running_var[c];
        }
        double invstd = 1.0 / sqrt(var + eps);
        double scale = gamma[c] * invstd;
        terms[c] = (float)scale;
        terms[d + c] = (float)(beta[c] - mean * scale);
        terms[2 * d + c] = (float)mean;
        terms[3 * d + c] = (float)invstd;
    }
}

/* The per-column terms of BatchNorm+SiLU's backward from sums = [sum gu | sum gu xhat] (norm_silu_backward_sums):
 * out = [coef | gu_mean | gux_mean | grad_gamma | grad_beta] (5 d floats). With batch statistics (training) the
 * mean and variance depend on x too; with running statistics coef = scale and the means are zero. */
void norm_backward_terms(int64_t d, int64_t T, const double *sums, const float *gamma, const float *terms,
                         int training, float *out) {
    for (int64_t c = 0; c < d; c++) {
        out[c] = training ? gamma[c] * terms[3 * d + c] : terms[c];
        out[d + c] = training ? (float)(sums[c] / (double)T) : 0.0f;
        out[2 * d + c] = training ? (float)(sums[d + c] / (double)T) : 0.0f;
        out[3 * d + c] = (float)sums[d + c];
        out[4 * d + c] = (float)sums[c];
    }
}
