// CPU kernel of upfirdn2d for channels-last tensors and separable filters (Python side:
// upfirdn2d_cpu.py; bindings in cpu_ops.cpp).
//
// fir_channels_last(x, kx, ky, up, down, px0, px1, py0, py1, flip) -> out
//   x: [N, C, H, W] float32 or bfloat16, channels-last; kx: [Kw], ky: [Kh] float32 (the filter is
//   ky[i] * kx[j]); up, down >= 1 (both axes); pads as upfirdn2d's (negative crops).
//   out[n, c, oy, ox] = sum_{i, j} ky'[i] kx'[j] xu[n, c, oy * down + i - py0, ox * down + j - px0]
//   where xu is x upsampled by zero insertion (xu[y, x] = x[y / up, x / up] where both divide,
//   0 elsewhere and outside) and k' is k reversed (a true convolution, as upfirdn2d), or k itself
//   when flip is false (the adjoint, which the backward uses). out: [N, C, OH, OW] channels-last in
//   x's dtype, OH = (H * up + py0 + py1 - Kh) / down + 1 (likewise OW).
//
// Separable: each output row sums the (at most Kh) contributing input rows, weighted, into a
// float32 row buffer, then filters the buffer along W; the inner loops run along C (AVX-512 with
// independent accumulators where the build machine has it). Blocks of output rows run in parallel
// (at::parallel_for); within a block each bfloat16 input row is widened to float32 once.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu_simd.h"

namespace hairlib_cpu {

namespace {

// The taps of output index o: pairs (input index, weight), for a filter k' of length K.
struct Tap {
  int64_t index;
  float weight;
};

std::vector<Tap> taps(int64_t o, const std::vector<float>& k, int64_t in_size, int64_t up, int64_t down, int64_t pad0) {
  std::vector<Tap> t;
  const int64_t K = static_cast<int64_t>(k.size());
  for (int64_t i = 0; i < K; ++i) {
    const int64_t u = o * down + i - pad0;  // coordinate in the upsampled input
    if (u < 0 || u >= in_size * up || u % up != 0) continue;
    t.push_back({u / up, k[i]});
  }
  return t;
}

// dst[i] = float(src[i]), i < n
template <typename T>
void widen_row(const T* src, float* dst, int64_t n) {
#ifdef HAIRLIB_AVX512
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail(n - i);
    _mm512_mask_storeu_ps(dst + i, m, load16(src + i, m));
  }
#else
  for (int64_t i = 0; i < n; ++i) dst[i] = load1(src + i);
#endif
}

// dst[i] = sum_t w[t] * src[t][i], i < n (four independent accumulators: FMA latency hidden)
void weighted_rows(const float* const* src, const float* w, int64_t nt, float* dst, int64_t n) {
  int64_t i = 0;
#ifdef HAIRLIB_AVX512
  for (; i + 64 <= n; i += 64) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t t = 0; t < nt; ++t) {
      const __m512 wt = _mm512_set1_ps(w[t]);
      const float* p = src[t] + i;
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(p), wt, a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(p + 16), wt, a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(p + 32), wt, a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(p + 48), wt, a3);
    }
    _mm512_storeu_ps(dst + i, a0);
    _mm512_storeu_ps(dst + i + 16, a1);
    _mm512_storeu_ps(dst + i + 32, a2);
    _mm512_storeu_ps(dst + i + 48, a3);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail(n - i);
    __m512 a = _mm512_setzero_ps();
    for (int64_t t = 0; t < nt; ++t) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, src[t] + i), _mm512_set1_ps(w[t]), a);
    _mm512_mask_storeu_ps(dst + i, m, a);
  }
#else
  for (; i < n; ++i) {
    float a = 0.0f;
    for (int64_t t = 0; t < nt; ++t) a += w[t] * src[t][i];
    dst[i] = a;
  }
#endif
}

// One output row [OW, C] from the row buffer: out[ox, c] = sum over the taps of column ox of
// weight * buf[index, c].
template <typename T>
void filter_row(const float* buf, const std::vector<std::vector<Tap>>& col_taps, int64_t OW, int64_t C, T* orow) {
  for (int64_t ox = 0; ox < OW; ++ox) {
    const std::vector<Tap>& taps_ox = col_taps[ox];
#ifdef HAIRLIB_AVX512
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 m = tail(C - c);
      __m512 a = _mm512_setzero_ps();
      for (const Tap& t : taps_ox) {
        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, buf + t.index * C + c), _mm512_set1_ps(t.weight), a);
      }
      store16(orow + ox * C + c, a, m);
    }
#else
    for (int64_t c = 0; c < C; ++c) {
      float a = 0.0f;
      for (const Tap& t : taps_ox) a += t.weight * buf[t.index * C + c];
      store1(orow + ox * C + c, a);
    }
#endif
  }
}

// The same without upsampling, where column ox's taps are the consecutive buffer columns
// ox * down - px0 + j (j < K): base = buf - px0 * C, zero margins around buf for the edges.
template <typename T>
void filter_row_direct(const float* base, const float* k, int64_t K, int64_t down, int64_t OW, int64_t C, T* orow) {
#ifdef HAIRLIB_AVX512
  __m512 w[8];
  for (int64_t j = 0; j < K; ++j) w[j] = _mm512_set1_ps(k[j]);
  for (int64_t ox = 0; ox < OW; ++ox) {
    const float* b = base + ox * down * C;
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 m = tail(C - c);
      __m512 a = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, b + c), w[0]);
      for (int64_t j = 1; j < K; ++j) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, b + j * C + c), w[j], a);
      store16(orow + ox * C + c, a, m);
    }
  }
#else
  for (int64_t ox = 0; ox < OW; ++ox) {
    const float* b = base + ox * down * C;
    for (int64_t c = 0; c < C; ++c) {
      float a = 0.0f;
      for (int64_t j = 0; j < K; ++j) a += k[j] * b[j * C + c];
      store1(orow + ox * C + c, a);
    }
  }
#endif
}

template <typename T>
void fir_rows(const T* x, T* out, const std::vector<float>& kx, const std::vector<float>& ky, int64_t N, int64_t C,
              int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t up, int64_t down, int64_t px0, int64_t py0) {
  const int64_t Kw = static_cast<int64_t>(kx.size());
  // Without upsampling (and at most 8 horizontal taps) the horizontal pass reads Kw consecutive
  // buffer columns per output; zero margins around the buffer stand for the padding. Otherwise
  // each output column has its own list of taps.
  const bool direct = up == 1 && Kw <= 8;
  const int64_t pad_l = direct ? std::max<int64_t>(px0, 0) : 0;
  const int64_t pad_r = direct ? std::max<int64_t>(0, (OW - 1) * down + Kw - px0 - W) : 0;
  std::vector<std::vector<Tap>> col_taps;
  if (!direct) {
    col_taps.resize(OW);
    for (int64_t ox = 0; ox < OW; ++ox) col_taps[ox] = taps(ox, kx, W, up, down, px0);
  }
  // Tasks: blocks of consecutive output rows of one sample, so that the input rows they share are
  // widened from bfloat16 once per block (into a small ring of float32 rows), not once per tap.
  constexpr int64_t kRowsPerTask = 8;
  constexpr bool widen = !std::is_same<T, float>::value;
  const int64_t blocks = (OH + kRowsPerTask - 1) / kRowsPerTask;
  const int64_t R = static_cast<int64_t>(ky.size()) + 2;  // a window of Kh rows moves by <= 2 per output row
  at::parallel_for(0, N * blocks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> padded((pad_l + W + pad_r) * C, 0.0f);  // the margins stay zero
    float* buf = padded.data() + pad_l * C;                     // buf[x * C + c], x in [0, W)
    std::vector<float> ring(widen ? R * W * C : 0);
    std::vector<int64_t> held(R, -1);  // the input row (n * H + y) each ring slot holds
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t n = task / blocks, first = (task % blocks) * kRowsPerTask;
      const T* xs = x + n * H * W * C;
      for (int64_t oy = first; oy < std::min(OH, first + kRowsPerTask); ++oy) {
        const std::vector<Tap> rows = taps(oy, ky, H, up, down, py0);  // at most Kh <= 8
        const float* src[8];
        float wt[8];
        for (size_t t = 0; t < rows.size(); ++t) {
          const int64_t y = rows[t].index;
          wt[t] = rows[t].weight;
          if constexpr (widen) {
            float* slot = ring.data() + (y % R) * W * C;
            if (held[y % R] != n * H + y) {
              widen_row(xs + y * W * C, slot, W * C);
              held[y % R] = n * H + y;
            }
            src[t] = slot;
          } else {
            src[t] = reinterpret_cast<const float*>(xs + y * W * C);
          }
        }
        weighted_rows(src, wt, static_cast<int64_t>(rows.size()), buf, W * C);  // vertical pass
        T* orow = out + (n * OH + oy) * OW * C;                                  // horizontal pass
        if (direct) {
          filter_row_direct(buf - px0 * C, kx.data(), Kw, down, OW, C, orow);
        } else {
          filter_row(buf, col_taps, OW, C, orow);
        }
      }
    }
  });
}

std::vector<float> filter(const at::Tensor& k, bool flip, const char* what) {
  TORCH_CHECK(k.dim() == 1 && k.numel() > 0 && k.scalar_type() == at::kFloat && k.device().is_cpu(),
              "fir_channels_last: ", what, " must be a non-empty 1-D float32 CPU tensor");
  const at::Tensor kc = k.contiguous();
  std::vector<float> v(kc.data_ptr<float>(), kc.data_ptr<float>() + kc.numel());
  if (flip) std::reverse(v.begin(), v.end());
  return v;
}

}  // namespace

at::Tensor fir_channels_last(const at::Tensor& x, const at::Tensor& kx_t, const at::Tensor& ky_t, int64_t up,
                             int64_t down, int64_t px0, int64_t px1, int64_t py0, int64_t py1, bool flip) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 4, "fir_channels_last: x must be a 4-D CPU tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "fir_channels_last: x must be float32 or bfloat16, got ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast), "fir_channels_last: x must be channels-last");
  TORCH_CHECK(up >= 1 && down >= 1, "fir_channels_last: up and down must be >= 1");
  const std::vector<float> kx = filter(kx_t, flip, "kx"), ky = filter(ky_t, flip, "ky");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Kh = static_cast<int64_t>(ky.size()), Kw = static_cast<int64_t>(kx.size());
  TORCH_CHECK(Kh <= 8, "fir_channels_last: at most 8 vertical taps, got ", Kh);
  const int64_t OH = (H * up + py0 + py1 - Kh + down) / down, OW = (W * up + px0 + px1 - Kw + down) / down;
  TORCH_CHECK(OH >= 1 && OW >= 1, "fir_channels_last: empty output");
  at::Tensor out = at::empty({N, C, OH, OW}, x.options(), at::MemoryFormat::ChannelsLast);
  if (x.scalar_type() == at::kFloat) {
    fir_rows<float>(x.data_ptr<float>(), out.data_ptr<float>(), kx, ky, N, C, H, W, OH, OW, up, down, px0, py0);
  } else {
    fir_rows<at::BFloat16>(x.data_ptr<at::BFloat16>(), out.data_ptr<at::BFloat16>(), kx, ky, N, C, H, W, OH, OW, up,
                           down, px0, py0);
  }
  return out;
}

}  // namespace hairlib_cpu
