/*
 * nnmpc neural-network kernels: the fixed C runtime that generated models call.
 *
 * C99, no malloc, no global state. Matrices are row-major float32. Every function documents
 * its shapes; callers (generated code) guarantee them at compile time.
 *
 * On Thumb-2 cores with a single-precision FPU (Cortex-M4F/M7/M33) built with GCC, the hot
 * loops are inline assembly tuned for the Cortex-M4 pipeline; everywhere else (or with
 * -DNNMPC_NN_PORTABLE) the same functions are plain C loops. Sums may be added in a different
 * order from a naive loop, so results can differ from one in the last bits.
 */
#ifndef NNMPC_NN_H
#define NNMPC_NN_H

#ifdef __cplusplus
extern "C" {
#endif

/** Runtime version; generated files check it with #error so a stale runtime is caught. */
#define NNMPC_NN_VERSION 2

/** Element-wise activation kinds (shared with the compiler's IR names). */
typedef enum {
    NNMPC_ACT_LINEAR = 0,
    NNMPC_ACT_RELU = 1,
    NNMPC_ACT_TANH = 2,
    NNMPC_ACT_SIGMOID = 3
} nnmpc_act_t;

/**
 * y[n_out] = W[n_out x n_in] . x[n_in] + b[n_out], then act applied element-wise.
 * y must not overlap x. Output rows are computed eight at a time.
 */
void nnmpc_dense(const float *W, const float *b, const float *x, float *y,
                 int n_out, int n_in, nnmpc_act_t act);

/**
 * nnmpc_dense with its activation fixed: a model links only the activation code it uses
 * (the generated code calls these).
 */
void nnmpc_dense_linear(const float *W, const float *b, const float *x, float *y, int n_out,
                        int n_in);
void nnmpc_dense_relu(const float *W, const float *b, const float *x, float *y, int n_out,
                      int n_in);
void nnmpc_dense_tanh(const float *W, const float *b, const float *x, float *y, int n_out,
                      int n_in);
void nnmpc_dense_sigmoid(const float *W, const float *b, const float *x, float *y, int n_out,
                         int n_in);

/** y[n] = act(x[n]); y may equal x (in place). */
void nnmpc_activate(const float *x, float *y, int n, nnmpc_act_t act);

/**
 * d[n] = act'(z) written in terms of the activation's output y = act(z), so no pre-activation
 * buffer is needed: tanh' = 1 - y^2, sigmoid' = y (1 - y), relu' = (y > 0) (a relu output
 * that is NaN with the sign bit clear gives 1).
 */
void nnmpc_act_deriv(const float *y, float *d, int n, nnmpc_act_t act);

/**
 * Forward-mode tangent through a dense layer with activation derivative d (NULL for linear):
 * T_out[n_out x k] = diag(d) . W[n_out x n_in] . T_in[n_in x k].
 * With T_in == NULL the input tangent is the identity (k == n_in): T_out = diag(d) . W.
 * Rows with d == 0 and all-zero rows of T_in (units a relu switched off) are skipped, so a
 * relu layer costs about (active outputs x active inputs x k) multiply-adds. Uses up to
 * 512 bytes of stack for the lists of active rows (layers up to 256 wide; wider layers and
 * k < 3 take plain loops).
 */
void nnmpc_dense_tangent(const float *W, const float *d, const float *T_in, float *T_out,
                         int n_out, int n_in, int k);

/**
 * Reverse-mode step of a dense layer (vector-Jacobian product), for `rows` adjoints at once:
 * A_x[r][n_in x m] = W^T . G[r][n_out x m], r < rows (A_x is overwritten; it must not overlap
 * G). Same contract as nnmpc_dense_vjp() in nnmpc_ops.h. Rows of G that are all zero (relu
 * units switched off) are skipped; on Cortex-M4F-class cores with m >= 4 and n_in >= 4 the rest
 * runs in 4 x 4 register blocks (up to 256 B of stack for the list of active rows).
 */
void nnmpc_dense_adjoint(const float *W, const float *G, float *A_x, int rows, int n_out,
                         int n_in, int m);

/**
 * nnmpc_dense_adjoint for one adjoint (rows = 1) followed by the previous layer's activation
 * derivative: A_x = diag(d_in) . W^T . G. Inputs with d_in == 0 (units a relu switched off)
 * and all-zero rows of G are skipped, so a relu layer costs about active outputs x active
 * inputs x m multiply-adds (on Cortex-M4F-class cores: about 700 B of stack).
 */
void nnmpc_dense_adjoint_scaled(const float *W, const float *G, float *A_x, int n_out, int n_in,
                                int m, const float *d_in);

/** T_out[n x k] = diag(d) . T_in, an element-wise layer's tangent; T_out may equal T_in. */
void nnmpc_scale_rows(const float *T_in, const float *d, float *T_out, int n, int k);

/**
 * tanh without libm: expm1(2x) = 2^k (1 + q) - 1 by range reduction and a degree-6 minimax
 * polynomial, then tanh = e / (e + 2) (one division). Relative error a few float ulps
 * everywhere (also near 0); odd; +-1 beyond |x| = 9; NaN in, NaN out.
 */
float nnmpc_tanhf(float x);

/**
 * Logistic sigmoid 1 / (1 + exp(-x)) = 1 / (expm1(-x) + 2), without libm: relative error a
 * few float ulps down to about 1e-38 (|x| is clamped to 87: sigmoid(x < -87) = sigmoid(-87)).
 */
float nnmpc_sigmoidf(float x);

/** exp(x) for float, accurate to about 2 ulps, without libm. Saturates outside [-87.3, 88.7]. */
float nnmpc_expf(float x);

#ifdef __cplusplus
}
#endif

#endif /* NNMPC_NN_H */
