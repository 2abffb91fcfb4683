// Fused CPU kernels for the sparse normalisers: sparsemax (and sparsegen-lin through a scale),
// entmax-1.5 and alpha-entmax with one alpha per row. Registered as torch.ops.fairseq_sparse.*;
// fairseq_sparse/normalizers/_common.py calls them and falls back to its eager PyTorch code
// when this library is not built.
//
// Every op takes a contiguous (rows, n) float32/float64 tensor and works row by row inside
// at::parallel_for, so a call is one parallel region (torch.softmax is one too). Per row:
//   1. one pass for the row maximum m (a row of -inf gives zeros and stops here);
//   2. one pass copying the candidates x > m - 1 into a row-sized scratch buffer:
//      the threshold tau is never below m - 1 (the largest entry alone would already carry
//      mass >= 1), so nothing else can be in the support;
//   3. the threshold search on that buffer only, dropping entries that fall to tau or below
//      (tau only grows, so they never return);
//   4. one pass writing the output.
// Backward passes use only the saved output: with s = p^(2 - alpha) on the support,
// dz = s * (g - sum(s g) / sum(s)) (two passes per row).
#include <Python.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;

// The row kernels are inlined into functions compiled twice (target_clones): for x86-64-v3
// (AVX2 + FMA, 8 floats a vector) and the baseline (SSE2); the loader picks one for the CPU.
#define FS_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FS_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FS_MULTIVERSION
#endif

constexpr int64_t kGrainElements = 1 << 15;  // elements per parallel task, at least

int64_t grain_rows(int64_t n) { return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(n, 1)); }

// log2 and exp2 for float32 that the compiler vectorises (plain code, no libm calls), accurate
// to a few ulps: alpha-entmax spends its time in x^y = exp2(y log2 x) on float rows. Inputs:
// log2 takes x > 0 (clamped to 1e-30, below which every use here gives ~0), exp2 takes y <= 0
// (clamped to -125; the result is then < 1e-37).
FS_INLINE float fast_log2(float x) {
  x = x > 1e-30f ? x : 1e-30f;
  const uint32_t bits = __builtin_bit_cast(uint32_t, x);
  float e = static_cast<float>(static_cast<int32_t>(bits >> 23) - 127);
  float m = __builtin_bit_cast(float, (bits & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  const bool big = m > 1.41421356f;
  m = big ? 0.5f * m : m;  // [0.707, 1.414)
  e = big ? e + 1.0f : e;
  const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;  // |t| <= 0.172
  // log(m) = 2 atanh(t) = 2 (t + t^3/3 + t^5/5 + t^7/7 + t^9/9), error < 4e-10
  const float series = t * (2.0f + t2 * (2.0f / 3 + t2 * (2.0f / 5 + t2 * (2.0f / 7 + t2 * (2.0f / 9)))));
  return e + series * 1.44269504f;
}

FS_INLINE float fast_exp2(float y) {
  y = y > -125.0f ? y : -125.0f;
  // round to nearest by truncating a positive number (floorf is not vectorised below SSE4.1)
  const float i = static_cast<float>(static_cast<int32_t>(y + 128.5f) - 128);
  const float f = (y - i) * 0.693147181f;  // |f| <= 0.347: exp(f) by Taylor to f^7, error < 5e-9
  const float ef = 1.0f + f * (1.0f + f * (0.5f + f * (1.0f / 6 + f * (1.0f / 24 + f * (1.0f / 120 + f * (1.0f / 720 + f * (1.0f / 5040)))))));
  const uint32_t scale = static_cast<uint32_t>(static_cast<int32_t>(i) + 127) << 23;
  return ef * __builtin_bit_cast(float, scale);
}

// x^y for x > 0, y >= 0 (x <= 1 where it is fast): exact libm for double, fast_* for float.
FS_INLINE double pow_pos(double x, double y) { return std::pow(x, y); }
FS_INLINE float pow_pos(float x, float y) { return fast_exp2(y * fast_log2(x)); }
FS_INLINE double log_pos(double x) { return std::log(x); }
FS_INLINE float log_pos(float x) { return fast_log2(x) * 0.693147181f; }

void check_rows(const Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor, got ", t.device());
  TORCH_CHECK(t.dim() == 2, name, ": expected a (rows, n) tensor, got ", t.dim(), " dims");
  TORCH_CHECK(t.is_contiguous(), name, ": expected a contiguous tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              ": expected float32 or float64, got ", t.scalar_type());
}

template <typename T>
FS_INLINE T row_max(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// buf <- {scale * x_j : scale * x_j > lo}; returns the count. The product is rounded to T, as
// the output pass computes it, so that the threshold is exact for the values written out.
template <typename T>
FS_INLINE int64_t gather_candidates(const T* x, int64_t n, T scale, double lo, double* buf) {
  int64_t k = 0;
  for (int64_t j = 0; j < n; ++j) {
    const double v = static_cast<double>(scale * x[j]);
    buf[k] = v;
    k += v > lo;
  }
  return k;
}

// Keep the entries of buf above tau; returns the new count.
FS_INLINE int64_t shrink(double* buf, int64_t k, double tau) {
  int64_t m = 0;
  for (int64_t i = 0; i < k; ++i) {
    buf[m] = buf[i];
    m += buf[i] > tau;
  }
  return m;
}

// sparsemax(scale * x): Michelot's support shrinking. On a superset S of the support,
// tau_S = (sum_S x - 1) / |S| lies left of the true threshold, so every entry at or below it
// is off the support; drop those and repeat until nothing drops. Exact after a few passes.
template <typename T>
FS_INLINE double sparsemax_threshold(const T* x, int64_t n, T scale, double m, double* buf) {
  int64_t k = gather_candidates(x, n, scale, m - 1.0, buf);
  double tau = m - 1.0;
  while (true) {
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < k; ++i) sum += buf[i];
    tau = (sum - 1.0) / static_cast<double>(k);
    const int64_t kept = shrink(buf, k, tau);
    if (kept == k || kept == 0) return tau;
    k = kept;
  }
}

// entmax-1.5 of x (x = z / 2): p = max(x - tau, 0)^2 with sum(p) = 1. Newton steps on the
// convex, decreasing sqrt(sum (x - tau)_+^2) - 1 from tau = m - 1 climb to the root without
// overshooting. On the current candidates S (k entries) the root of sum_S (x - tau)^2 = 1 is
// tau = mean_S(x) - sqrt(1/k - var_S(x)); it is accepted once no entry of S lies below it,
// which makes the result exact.
template <typename T>
FS_INLINE double entmax15_threshold(const T* x, int64_t n, double m, double* buf) {
  int64_t k = gather_candidates(x, n, T(0.5), m - 1.0, buf);
  double tau = m - 1.0;
  for (int it = 0; it < 200 && k > 0; ++it) {
    double s1 = 0, s2 = 0, lo = std::numeric_limits<double>::infinity();
#pragma omp simd reduction(+ : s1, s2) reduction(min : lo)
    for (int64_t i = 0; i < k; ++i) {
      const double d = buf[i] - tau;
      s1 += d;
      s2 += d * d;
      lo = std::min(lo, d);
    }
    const double kd = static_cast<double>(k);
    const double mean = s1 / kd;
    const double disc = 1.0 / kd - (s2 / kd - mean * mean);
    if (disc >= 0) {
      const double shift = mean - std::sqrt(disc);  // >= 0: tau is left of the root
      if (shift <= lo) return tau + shift;
    }
    const double root = std::sqrt(s2);  // Newton on sqrt(f) - 1: see entmax_alpha_row
    const double step = (root - 1.0) * root / s1;
    if (!(step > 4 * std::numeric_limits<double>::epsilon() * (std::abs(tau) + 1.0))) return tau;
    tau += step;
    k = shrink(buf, k, tau);
  }
  return tau;
}

template <typename T>
FS_INLINE void zero_row(T* p, int64_t n) { std::fill(p, p + n, T(0)); }

// alpha-entmax of one row, p = max(x - tau, 0)^beta with x = (alpha - 1) z, beta = 1 / (alpha - 1).
// Newton on the convex decreasing f(tau) = sum (x - tau)_+^beta - 1 from tau = m - 1; stops
// when the row sums to 1 within tol or the step is a few ulps of tau; the row is then
// renormalised. The candidates (value, column) are kept in T: float rows take the vectorised
// fast pow, and only the support is written besides zeros.
template <typename T>
FS_INLINE void entmax_alpha_row(const T* x, T* p, int64_t n, T am1, double tol, int64_t n_iter, T* buf, int64_t* idx) {
  const T m = am1 * row_max(x, n);
  if (!(m > -std::numeric_limits<T>::infinity())) { zero_row(p, n); return; }
  const T beta = T(1) / am1, bm1 = beta - T(1);
  T tau = m - T(1);
  int64_t k = 0;
  for (int64_t j = 0; j < n; ++j) {
    buf[k] = am1 * x[j];
    idx[k] = j;
    k += buf[k] > tau;
  }
  for (int64_t it = 0; it < n_iter && k > 0; ++it) {
    // entries of buf at or below tau are dead: masked here, dropped below once they are many
    T mass = 0, slope = 0, live = 0;
#pragma omp simd reduction(+ : mass, slope, live)
    for (int64_t i = 0; i < k; ++i) {
      const T d = buf[i] - tau;
      const bool on = d > 0;
      const T pw = pow_pos(on ? d : T(1), bm1);  // computed for all lanes, then selected
      const T dp = on ? pw : T(0);
      slope += dp;
      mass += dp * (on ? d : T(0));
      live += on ? T(1) : T(0);
    }
    const T excess = mass - T(1);
    if (std::abs(excess) <= tol) break;
    // Newton on g = f^(1/beta) - 1 = ||(x - tau)_+||_beta - 1: convex and decreasing too (a norm of
    // convex functions), so still monotone from the left, and nearly linear where f is far above 1
    // (dense rows): a few steps instead of a dozen. f^(1/beta - 1) = mass / root.
    const T root = std::pow(mass, T(1) / beta);
    const T step = (root - T(1)) * (mass / root) / slope;
    if (!(std::abs(step) > 4 * std::numeric_limits<T>::epsilon() * (std::abs(tau) + T(1)))) break;
    tau += step;
    if (4 * live < T(3 * k)) {  // compacting costs a scalar pass: only when it drops a quarter or more
      int64_t kept = 0;
      for (int64_t i = 0; i < k; ++i) {
        buf[kept] = buf[i];
        idx[kept] = idx[i];
        kept += buf[i] > tau;
      }
      k = kept;
    }
  }
  zero_row(p, n);
  T total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t i = 0; i < k; ++i) {
    const T d = buf[i] - tau;
    const T pw = pow_pos(d > 0 ? d : T(1), beta);
    buf[i] = d > 0 ? pw : T(0);
    total += buf[i];
  }
  const T inv = T(1) / std::max(total, std::numeric_limits<T>::min());
  for (int64_t i = 0; i < k; ++i) p[idx[i]] = buf[i] * inv;
}

// ---- one row each; kept out of the AT_DISPATCH lambdas so that the `omp simd` pragmas apply.

template <typename T>
FS_INLINE void sparsemax_row(const T* x, T* p, int64_t n, double scale, double* buf) {
  const double m = static_cast<double>(static_cast<T>(scale) * row_max(x, n));
  if (!(m > -std::numeric_limits<double>::infinity())) { zero_row(p, n); return; }
  const T s = static_cast<T>(scale);
  const double tau = sparsemax_threshold(x, n, s, m, buf);
  // tau as hi + lo in T: v - hi is exact for v near tau, so the support sums to 1 to T's precision
  const T hi = static_cast<T>(tau), lo = static_cast<T>(tau - static_cast<double>(hi));
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) p[j] = std::max((s * x[j] - hi) - lo, T(0));
}

template <typename T>
FS_INLINE void entmax15_row(const T* x, T* p, int64_t n, double* buf) {
  const double m = 0.5 * static_cast<double>(row_max(x, n));
  if (!(m > -std::numeric_limits<double>::infinity())) { zero_row(p, n); return; }
  const double tau = entmax15_threshold(x, n, m, buf);
  const T hi = static_cast<T>(tau), lo = static_cast<T>(tau - static_cast<double>(hi));  // as in sparsemax_row
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T d = std::max((T(0.5) * x[j] - hi) - lo, T(0));
    p[j] = d * d;
  }
}

// Backward of the family from the saved output p. kind 0: sparsemax (s = 1 on the support,
// result times scale), 1: entmax-1.5 (s = sqrt(p)), 2: alpha-entmax (s = p^(2 - alpha)).
// dz = s * (g - sum(s g) / sum(s)). For kind 2 also d loss / d alpha of the row (into *ga when
// given): dp/dalpha = (p - s_hat) / (alpha-1)^2 - (p log p - s_hat H) / (alpha-1), with
// s_hat = s / sum(s), H = sum(p log p).
template <typename T>
FS_INLINE void backward_row(const T* p, const T* g, T* dz, int64_t n, int kind, T scale, T alpha, T* ga) {
  T ss = 0, sg = 0;
  if (kind == 0) {
#pragma omp simd reduction(+ : ss, sg)
    for (int64_t j = 0; j < n; ++j) {
      const T s = p[j] > 0 ? T(1) : T(0);
      ss += s;
      sg += s * g[j];
    }
    const T q = sg / std::max(ss, T(1));
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) dz[j] = p[j] > 0 ? scale * (g[j] - q) : T(0);
    return;
  }
  if (kind == 1) {
#pragma omp simd reduction(+ : ss, sg)
    for (int64_t j = 0; j < n; ++j) {
      const T s = std::sqrt(p[j]);
      ss += s;
      sg += s * g[j];
    }
    const T q = sg / std::max(ss, std::numeric_limits<T>::min());
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) dz[j] = std::sqrt(p[j]) * (g[j] - q);
    return;
  }
  // s kept in dz between the passes. The sums are in double: d alpha divides their differences
  // by (alpha - 1)^2, which float32 sums of a few hundred terms do not survive near alpha = 1.
  const T e = T(2) - alpha;
  double ssd = 0, sgd = 0, h = 0, gpsum = 0, gplogp = 0;
#pragma omp simd reduction(+ : ssd, sgd, h, gpsum, gplogp)
  for (int64_t j = 0; j < n; ++j) {
    const bool on = p[j] > 0;
    const T safe = on ? p[j] : T(1);
    const T pow_e = pow_pos(safe, e), log_p = log_pos(safe);  // no branches: vectorised
    const T s = on ? pow_e : T(0);
    const T pl = p[j] * log_p;  // 0 off the support (p = 0, log 1 = 0)
    dz[j] = s;
    ssd += s;
    sgd += s * g[j];
    h += pl;
    gpsum += g[j] * p[j];
    gplogp += g[j] * pl;
  }
  const double qd = sgd / std::max(ssd, static_cast<double>(std::numeric_limits<T>::min()));  // sum_j g_j s_hat_j
  const T q = static_cast<T>(qd);
  if (ga != nullptr) {
    const double am1 = static_cast<double>(alpha) - 1.0;
    *ga = static_cast<T>((gpsum - qd) / (am1 * am1) - (gplogp - qd * h) / am1);
  }
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dz[j] = dz[j] * (g[j] - q);
}

// ---- row ranges, one multiversioned function per op and dtype

#define FS_ROWS(T)                                                                                            \
  FS_MULTIVERSION void sparsemax_rows(const T* x, T* p, int64_t r0, int64_t r1, int64_t n, double scale) {   \
    std::vector<double> buf(n);                                                                               \
    for (int64_t r = r0; r < r1; ++r) sparsemax_row(x + r * n, p + r * n, n, scale, buf.data());            \
  }                                                                                                           \
  FS_MULTIVERSION void entmax15_rows(const T* x, T* p, int64_t r0, int64_t r1, int64_t n) {                  \
    std::vector<double> buf(n);                                                                               \
    for (int64_t r = r0; r < r1; ++r) entmax15_row(x + r * n, p + r * n, n, buf.data());                    \
  }                                                                                                           \
  FS_MULTIVERSION void entmax_alpha_rows(const T* x, T* p, const T* alpha, int64_t r0, int64_t r1, int64_t n, \
                                         double tol, int64_t n_iter) {                                        \
    std::vector<T> buf(n);                                                                                    \
    std::vector<int64_t> idx(n);                                                                              \
    for (int64_t r = r0; r < r1; ++r)                                                                         \
      entmax_alpha_row(x + r * n, p + r * n, n, alpha[r] - T(1), tol, n_iter, buf.data(), idx.data());      \
  }                                                                                                           \
  FS_MULTIVERSION void backward_rows(const T* p, const T* g, T* dz, const T* alpha, T* ga, int64_t r0,       \
                                     int64_t r1, int64_t n, int kind, T scale) {                              \
    for (int64_t r = r0; r < r1; ++r)                                                                         \
      backward_row(p + r * n, g + r * n, dz + r * n, n, kind, scale, alpha ? alpha[r] : T(2),                \
                   ga ? ga + r : nullptr);                                                                    \
  }
FS_ROWS(float)
FS_ROWS(double)

// ---- the ops

Tensor sparsemax_forward(const Tensor& x, double scale) {
  check_rows(x, "sparsemax_forward");
  TORCH_CHECK(scale > 0, "sparsemax_forward: scale must be > 0, got ", scale);
  Tensor out = at::empty_like(x);
  const int64_t rows = x.size(0), n = x.size(1);
  if (rows == 0 || n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sparsemax_forward", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain_rows(n), [&](int64_t begin, int64_t end) {
      sparsemax_rows(xp, op, begin, end, n, scale);
    });
  });
  return out;
}

Tensor entmax15_forward(const Tensor& x) {
  check_rows(x, "entmax15_forward");
  Tensor out = at::empty_like(x);
  const int64_t rows = x.size(0), n = x.size(1);
  if (rows == 0 || n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "entmax15_forward", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain_rows(n), [&](int64_t begin, int64_t end) {
      entmax15_rows(xp, op, begin, end, n);
    });
  });
  return out;
}

// alpha: (rows,) in x's dtype, each in (1, 2].
Tensor entmax_alpha_forward(const Tensor& x, const Tensor& alpha, int64_t n_iter) {
  check_rows(x, "entmax_alpha_forward");
  TORCH_CHECK(alpha.dim() == 1 && alpha.size(0) == x.size(0) && alpha.is_contiguous() &&
                  alpha.scalar_type() == x.scalar_type(),
              "entmax_alpha_forward: alpha must be a contiguous (rows,) tensor of x's dtype");
  TORCH_CHECK(n_iter >= 1, "entmax_alpha_forward: n_iter must be >= 1, got ", n_iter);
  Tensor out = at::empty_like(x);
  const int64_t rows = x.size(0), n = x.size(1);
  if (rows == 0 || n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "entmax_alpha_forward", [&] {
    const double tol = std::is_same<scalar_t, double>::value ? 1e-12 : 1e-6;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* ap = alpha.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain_rows(n), [&](int64_t begin, int64_t end) {
      entmax_alpha_rows(xp, op, ap, begin, end, n, tol, n_iter);
    });
  });
  return out;
}

// kind: the mode ids of fairseq_sparse/normalizers/registry.py: 0 sparsemax (gradient times scale),
// 1 entmax-1.5, 2 alpha-entmax (alpha: (rows,));
// returns (d loss / d z, d loss / d alpha per row if want_alpha else an empty tensor).
std::tuple<Tensor, Tensor> family_backward(const Tensor& p, const Tensor& grad, int64_t kind, double scale,
                                           const std::optional<Tensor>& alpha, bool want_alpha) {
  check_rows(p, "family_backward");
  TORCH_CHECK(grad.sizes() == p.sizes() && grad.is_contiguous() && grad.scalar_type() == p.scalar_type(),
              "family_backward: grad must be contiguous with p's shape and dtype");
  TORCH_CHECK(kind >= 0 && kind <= 2, "family_backward: kind must be 0, 1 or 2, got ", kind);
  TORCH_CHECK(kind != 2 || (alpha.has_value() && alpha->dim() == 1 && alpha->size(0) == p.size(0) &&
                            alpha->is_contiguous() && alpha->scalar_type() == p.scalar_type()),
              "family_backward: kind 2 needs a contiguous (rows,) alpha of p's dtype");
  TORCH_CHECK(!want_alpha || kind == 2, "family_backward: want_alpha needs kind 2");
  const int64_t rows = p.size(0), n = p.size(1);
  Tensor gz = at::empty_like(p);
  Tensor ga = at::empty({want_alpha ? rows : 0}, p.options());
  if (rows == 0 || n == 0) {
    if (want_alpha) ga.zero_();
    return {gz, ga};
  }
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "family_backward", [&] {
    const scalar_t* pp = p.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    const scalar_t* ap = kind == 2 ? alpha->const_data_ptr<scalar_t>() : nullptr;
    scalar_t* zp = gz.mutable_data_ptr<scalar_t>();
    scalar_t* gap = want_alpha ? ga.mutable_data_ptr<scalar_t>() : nullptr;
    const scalar_t sc = static_cast<scalar_t>(scale);
    at::parallel_for(0, rows, grain_rows(n), [&](int64_t begin, int64_t end) {
      backward_rows(pp, gp, zp, ap, gap, begin, end, n, static_cast<int>(kind), sc);
    });
  });
  return {gz, ga};
}

}  // namespace

TORCH_LIBRARY(fairseq_sparse, m) {
  m.def("sparsemax_forward(Tensor x, float scale) -> Tensor");
  m.def("entmax15_forward(Tensor x) -> Tensor");
  m.def("entmax_alpha_forward(Tensor x, Tensor alpha, int n_iter) -> Tensor");
  m.def("family_backward(Tensor p, Tensor grad, int kind, float scale, Tensor? alpha, bool want_alpha) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fairseq_sparse, CPU, m) {
  m.impl("sparsemax_forward", &sparsemax_forward);
  m.impl("entmax15_forward", &entmax15_forward);
  m.impl("entmax_alpha_forward", &entmax_alpha_forward);
  m.impl("family_backward", &family_backward);
}

// A plain Python module, so `from fairseq_sparse import _C` loads the library and registers
// the ops above.
static struct PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_C", "Fused CPU sparse normalisers (torch.ops.fairseq_sparse)", -1,
                                     nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&kModule); }
