// CPU kernels of hairlib's fused StyleGAN2 epilogues (Python side: styled_act_cpu.py; bindings in
// cpu_ops.cpp).
//
// styled_act_forward(x, dcoef, noise, noise_weight, bias, residual, slope, gain) -> out
//   v = ((x * dcoef[n, c]) + noise_weight * noise[n, h, w]) + bias[c]    (the pre-activation)
//   out = leaky_relu(v, slope) * gain + residual
//   x: [N, C, H, W] float32 or bfloat16, contiguous or channels-last (out has x's dtype and layout);
//   dcoef: [N, C] float32 or empty; noise: [N or 1, 1, H, W] float32 contiguous or empty;
//   bias: [C] float32 or empty; residual: like x or empty; gain > 0. Arithmetic in float32 in the
//   reference's order, so float32 results equal the reference's; bfloat16 is widened on load and
//   rounded once on the store.
//
// styled_act_backward(grad, x, dcoef, noise, noise_weight, bias, slope, gain, want_dcoef)
//     -> (grad_x, grad_dcoef [N, C] or empty, grad_bias_per_sample [N, C], grad_noise_weight_per_sample [N])
//   g = (grad * gain) * (v > 0 ? 1 : slope), v recomputed from x exactly as the forward computed it
//   grad_x = g * dcoef;  grad_dcoef = sum_hw g * x;  grad_bias = sum_hw g;  grad_noise_weight = sum_chw g * noise
//   (the caller sums the per-sample terms over N; the residual's gradient is grad itself).
//
// channel_scale_forward(x, s) -> y = x * s[n, c]   (s: [N, C] float32; y in x's dtype and layout)
// channel_scale_backward(grad, x, s) -> (grad_x, grad_s [N, C] float32)
//   the adjoint of y = x * s[n, c]: grad_x = grad * s, grad_s = sum_hw grad * x.
//
// One pass over the activations each. Samples run in parallel (at::parallel_for: the intra-op
// threads of torch.set_num_threads). The inner loops run along the contiguous axis (C in
// channels-last, H*W in NCHW) with AVX-512 (16 float lanes, bfloat16 widened on load and rounded
// to nearest even on store) when the build machine has it (the library builds with
// -march=native), else as plain loops.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_simd.h"

namespace hairlib_cpu {

namespace {

#ifdef HAIRLIB_AVX512
// leaky_relu(v) * gain, rounded as the reference rounds it (the slope product, then the gain)
inline __m512 act(__m512 v, __m512 slope, __m512 gain) {
  const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
  return _mm512_mul_ps(_mm512_mask_blend_ps(pos, _mm512_mul_ps(v, slope), v), gain);
}
// its gradient for an incoming g at pre-activation v: (g * gain) * (v > 0 ? 1 : slope)
inline __m512 act_grad(__m512 g, __m512 v, __m512 slope, __m512 gain) {
  const __m512 gg = _mm512_mul_ps(g, gain);
  const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
  return _mm512_mask_blend_ps(pos, _mm512_mul_ps(gg, slope), gg);
}
#endif

struct Geometry {
  int64_t n, c, hw;
  bool channels_last;
};

Geometry geometry(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.device().is_cpu(), op, ": x must be a CPU tensor");
  TORCH_CHECK(x.dim() == 4, op, ": x must be [N, C, H, W], got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, op,
              ": x must be float32 or bfloat16, got ", x.scalar_type());
  Geometry g{x.size(0), x.size(1), x.size(2) * x.size(3), false};
  if (x.is_contiguous()) return g;
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast), op, ": x must be contiguous or channels-last");
  g.channels_last = true;
  return g;
}

at::MemoryFormat layout(const Geometry& g) {
  return g.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

const float* optional_f32(const at::Tensor& t, int64_t numel, const char* op, const char* what) {
  if (t.numel() == 0) return nullptr;
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(), op, ": ", what,
              " must be a contiguous float32 CPU tensor");
  TORCH_CHECK(t.numel() == numel, op, ": ", what, " has ", t.numel(), " elements, expected ", numel);
  return t.data_ptr<float>();
}

// noise is [N, 1, H, W] or [1, 1, H, W]: the stride between samples is hw or 0
const float* noise_ptr(const at::Tensor& noise, const Geometry& g, int64_t* sample_stride, const char* op) {
  *sample_stride = 0;
  if (noise.numel() == 0) return nullptr;
  TORCH_CHECK(noise.device().is_cpu() && noise.scalar_type() == at::kFloat && noise.is_contiguous(), op,
              ": noise must be a contiguous float32 CPU tensor");
  TORCH_CHECK(noise.numel() == g.hw || noise.numel() == g.n * g.hw, op, ": noise must be [N or 1, 1, H, W]");
  *sample_stride = noise.numel() == g.hw ? 0 : g.hw;
  return noise.data_ptr<float>();
}

// A tensor like x (dtype and layout), converted if it is not.
at::Tensor like_x(const at::Tensor& t, const at::Tensor& x, const Geometry& g, const char* op, const char* what) {
  TORCH_CHECK(t.sizes() == x.sizes() && t.device().is_cpu(), op, ": ", what, " must have x's shape ", x.sizes());
  if (t.scalar_type() == x.scalar_type() && t.is_contiguous(layout(g))) return t;
  return t.to(x.scalar_type()).contiguous(layout(g));
}

// ---- styled_act ----------------------------------------------------------------------------

// The per-sample operands of one styled_act call.
struct Styled {
  const float* scale;  // [C] demodulation of this sample, or null
  const float* shift;  // [C] bias, or null
  const float* nz;     // [HW] noise of this sample, or null
  float nw;            // noise strength
};

#ifdef HAIRLIB_AVX512
// v for 16 channels c.. of pixel p (channels-last), `add` = nw * noise[p] broadcast
inline __m512 pre_cl(__m512 xv, const Styled& st, __m512 add, int64_t c, __mmask16 m) {
  if (st.scale) xv = _mm512_mul_ps(xv, load16(st.scale + c, m));
  if (st.nz) xv = _mm512_add_ps(xv, add);
  if (st.shift) xv = _mm512_add_ps(xv, load16(st.shift + c, m));
  return xv;
}
// v for 16 pixels p.. of channel c (NCHW), s and b broadcast
inline __m512 pre_nchw(__m512 xv, const Styled& st, __m512 s, __m512 b, __m512 vnw, int64_t p, __mmask16 m) {
  if (st.scale) xv = _mm512_mul_ps(xv, s);
  if (st.nz) xv = _mm512_add_ps(xv, _mm512_mul_ps(vnw, load16(st.nz + p, m)));
  if (st.shift) xv = _mm512_add_ps(xv, b);
  return xv;
}
#endif

inline float pre1(float xv, const Styled& st, int64_t c, int64_t p) {
  if (st.scale) xv = xv * st.scale[c];
  if (st.nz) xv = xv + st.nw * st.nz[p];
  if (st.shift) xv = xv + st.shift[c];
  return xv;
}

template <typename T>
void forward_sample(const T* x, const T* res, T* out, const Styled& st, float slope, float gain, int64_t C, int64_t HW,
                    bool channels_last) {
#ifdef HAIRLIB_AVX512
  const __m512 vg = _mm512_set1_ps(gain), vs = _mm512_set1_ps(slope);
  if (channels_last) {
    for (int64_t p = 0; p < HW; ++p) {
      const __m512 add = _mm512_set1_ps(st.nz ? st.nw * st.nz[p] : 0.0f);
      const int64_t row = p * C;
      for (int64_t c = 0; c < C; c += 16) {
        const __mmask16 m = tail(C - c);
        __m512 y = act(pre_cl(load16(x + row + c, m), st, add, c, m), vs, vg);
        if (res) y = _mm512_add_ps(y, load16(res + row + c, m));
        store16(out + row + c, y, m);
      }
    }
  } else {
    const __m512 vnw = _mm512_set1_ps(st.nw);
    for (int64_t c = 0; c < C; ++c) {
      const __m512 s = _mm512_set1_ps(st.scale ? st.scale[c] : 1.0f), b = _mm512_set1_ps(st.shift ? st.shift[c] : 0.0f);
      const int64_t row = c * HW;
      for (int64_t p = 0; p < HW; p += 16) {
        const __mmask16 m = tail(HW - p);
        __m512 y = act(pre_nchw(load16(x + row + p, m), st, s, b, vnw, p, m), vs, vg);
        if (res) y = _mm512_add_ps(y, load16(res + row + p, m));
        store16(out + row + p, y, m);
      }
    }
  }
#else
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t p = 0; p < HW; ++p) {
      const int64_t i = channels_last ? p * C + c : c * HW + p;
      const float v = pre1(load1(x + i), st, c, p);
      float y = (v > 0.0f ? v : v * slope) * gain;
      if (res) y = y + load1(res + i);
      store1(out + i, y);
    }
  }
#endif
}

template <typename T>
void backward_sample(const T* grad, const T* x, T* grad_x, const Styled& st, float slope, float gain, float* acc_d,
                     float* acc_b, float* acc_n, int64_t C, int64_t HW, bool channels_last) {
  const bool want_d = acc_d != nullptr;
#ifdef HAIRLIB_AVX512
  const __m512 vg = _mm512_set1_ps(gain), vs = _mm512_set1_ps(slope);
  __m512 vn = _mm512_setzero_ps();
  if (channels_last) {
    for (int64_t c = 0; c < C; ++c) acc_b[c] = 0.0f;
    if (want_d)
      for (int64_t c = 0; c < C; ++c) acc_d[c] = 0.0f;
    for (int64_t p = 0; p < HW; ++p) {
      const int64_t row = p * C;
      const __m512 add = _mm512_set1_ps(st.nz ? st.nw * st.nz[p] : 0.0f);
      const __m512 noise = _mm512_set1_ps(st.nz ? st.nz[p] : 0.0f);
      for (int64_t c = 0; c < C; c += 16) {
        const __mmask16 m = tail(C - c);
        const __m512 xv = load16(x + row + c, m);
        const __m512 gp = act_grad(load16(grad + row + c, m), pre_cl(xv, st, add, c, m), vs, vg);
        store16(grad_x + row + c, st.scale ? _mm512_mul_ps(gp, load16(st.scale + c, m)) : gp, m);
        _mm512_mask_storeu_ps(acc_b + c, m, _mm512_add_ps(load16(acc_b + c, m), gp));
        if (want_d) _mm512_mask_storeu_ps(acc_d + c, m, _mm512_fmadd_ps(gp, xv, load16(acc_d + c, m)));
        if (st.nz) vn = _mm512_fmadd_ps(gp, noise, vn);
      }
    }
  } else {
    const __m512 vnw = _mm512_set1_ps(st.nw);
    for (int64_t c = 0; c < C; ++c) {
      const __m512 s = _mm512_set1_ps(st.scale ? st.scale[c] : 1.0f), b = _mm512_set1_ps(st.shift ? st.shift[c] : 0.0f);
      const int64_t row = c * HW;
      __m512 sb = _mm512_setzero_ps(), sd = _mm512_setzero_ps();
      for (int64_t p = 0; p < HW; p += 16) {
        const __mmask16 m = tail(HW - p);
        const __m512 xv = load16(x + row + p, m);
        const __m512 gp = act_grad(load16(grad + row + p, m), pre_nchw(xv, st, s, b, vnw, p, m), vs, vg);
        store16(grad_x + row + p, st.scale ? _mm512_mul_ps(gp, s) : gp, m);
        sb = _mm512_add_ps(sb, gp);
        if (want_d) sd = _mm512_fmadd_ps(gp, xv, sd);
        if (st.nz) vn = _mm512_fmadd_ps(gp, load16(st.nz + p, m), vn);
      }
      acc_b[c] = _mm512_reduce_add_ps(sb);
      if (want_d) acc_d[c] = _mm512_reduce_add_ps(sd);
    }
  }
  *acc_n = _mm512_reduce_add_ps(vn);
#else
  double an = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    float sb = 0.0f, sd = 0.0f;
    for (int64_t p = 0; p < HW; ++p) {
      const int64_t i = channels_last ? p * C + c : c * HW + p;
      const float xv = load1(x + i), v = pre1(xv, st, c, p);
      const float gg = load1(grad + i) * gain;
      const float gp = v > 0.0f ? gg : gg * slope;
      store1(grad_x + i, st.scale ? gp * st.scale[c] : gp);
      sb += gp;
      if (want_d) sd += gp * xv;
      if (st.nz) an += gp * st.nz[p];
    }
    acc_b[c] = sb;
    if (want_d) acc_d[c] = sd;
  }
  *acc_n = static_cast<float>(an);
#endif
}

// ---- channel_scale ---------------------------------------------------------------------------

template <typename T>
void scale_forward_sample(const T* x, const float* s, T* y, int64_t C, int64_t HW, bool channels_last) {
#ifdef HAIRLIB_AVX512
  if (channels_last) {
    for (int64_t p = 0; p < HW; ++p) {
      const int64_t row = p * C;
      for (int64_t c = 0; c < C; c += 16) {
        const __mmask16 m = tail(C - c);
        store16(y + row + c, _mm512_mul_ps(load16(x + row + c, m), load16(s + c, m)), m);
      }
    }
  } else {
    for (int64_t c = 0; c < C; ++c) {
      const __m512 sc = _mm512_set1_ps(s[c]);
      const int64_t row = c * HW;
      for (int64_t p = 0; p < HW; p += 16) {
        const __mmask16 m = tail(HW - p);
        store16(y + row + p, _mm512_mul_ps(load16(x + row + p, m), sc), m);
      }
    }
  }
#else
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t p = 0; p < HW; ++p) {
      const int64_t i = channels_last ? p * C + c : c * HW + p;
      store1(y + i, load1(x + i) * s[c]);
    }
  }
#endif
}

template <typename T>
void scale_backward_sample(const T* grad, const T* x, const float* s, T* grad_x, float* grad_s, int64_t C, int64_t HW,
                           bool channels_last) {
#ifdef HAIRLIB_AVX512
  if (channels_last) {
    for (int64_t c = 0; c < C; ++c) grad_s[c] = 0.0f;
    for (int64_t p = 0; p < HW; ++p) {
      const int64_t row = p * C;
      for (int64_t c = 0; c < C; c += 16) {
        const __mmask16 m = tail(C - c);
        const __m512 gv = load16(grad + row + c, m);
        store16(grad_x + row + c, _mm512_mul_ps(gv, load16(s + c, m)), m);
        _mm512_mask_storeu_ps(grad_s + c, m, _mm512_fmadd_ps(gv, load16(x + row + c, m), load16(grad_s + c, m)));
      }
    }
  } else {
    for (int64_t c = 0; c < C; ++c) {
      const __m512 sc = _mm512_set1_ps(s[c]);
      const int64_t row = c * HW;
      __m512 a = _mm512_setzero_ps();
      for (int64_t p = 0; p < HW; p += 16) {
        const __mmask16 m = tail(HW - p);
        const __m512 gv = load16(grad + row + p, m);
        store16(grad_x + row + p, _mm512_mul_ps(gv, sc), m);
        a = _mm512_fmadd_ps(gv, load16(x + row + p, m), a);
      }
      grad_s[c] = _mm512_reduce_add_ps(a);
    }
  }
#else
  for (int64_t c = 0; c < C; ++c) {
    float a = 0.0f;
    for (int64_t p = 0; p < HW; ++p) {
      const int64_t i = channels_last ? p * C + c : c * HW + p;
      const float gv = load1(grad + i);
      store1(grad_x + i, gv * s[c]);
      a += gv * load1(x + i);
    }
    grad_s[c] = a;
  }
#endif
}

template <typename T>
void forward_all(const at::Tensor& x, const at::Tensor& res, at::Tensor& out, const float* d, const float* nz,
                 int64_t ns, float nw, const float* b, float slope, float gain, const Geometry& g) {
  const T* xp = x.data_ptr<T>();
  const T* rp = res.numel() ? res.data_ptr<T>() : nullptr;
  T* op = out.data_ptr<T>();
  const int64_t CHW = g.c * g.hw;
  at::parallel_for(0, g.n, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const Styled st{d ? d + n * g.c : nullptr, b, nz ? nz + n * ns : nullptr, nw};
      forward_sample(xp + n * CHW, rp ? rp + n * CHW : nullptr, op + n * CHW, st, slope, gain, g.c, g.hw,
                     g.channels_last);
    }
  });
}

template <typename T>
void backward_all(const at::Tensor& grad, const at::Tensor& x, at::Tensor& grad_x, const float* d, const float* nz,
                  int64_t ns, float nw, const float* b, float slope, float gain, float* gd, float* gb, float* gn,
                  const Geometry& g) {
  const T *gp = grad.data_ptr<T>(), *xp = x.data_ptr<T>();
  T* gxp = grad_x.data_ptr<T>();
  const int64_t CHW = g.c * g.hw;
  at::parallel_for(0, g.n, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const Styled st{d ? d + n * g.c : nullptr, b, nz ? nz + n * ns : nullptr, nw};
      backward_sample(gp + n * CHW, xp + n * CHW, gxp + n * CHW, st, slope, gain, gd ? gd + n * g.c : nullptr,
                      gb + n * g.c, gn + n, g.c, g.hw, g.channels_last);
    }
  });
}

}  // namespace

at::Tensor styled_act_forward(const at::Tensor& x, const at::Tensor& dcoef, const at::Tensor& noise,
                              double noise_weight, const at::Tensor& bias, const at::Tensor& residual_in, double slope,
                              double gain) {
  const char* op = "styled_act_forward";
  const Geometry g = geometry(x, op);
  TORCH_CHECK(gain > 0, op, ": gain must be > 0");
  const float* d = optional_f32(dcoef, g.n * g.c, op, "dcoef");
  const float* b = optional_f32(bias, g.c, op, "bias");
  int64_t ns;
  const float* nz = noise_ptr(noise, g, &ns, op);
  const at::Tensor residual = residual_in.numel() ? like_x(residual_in, x, g, op, "residual") : residual_in;
  at::Tensor out = at::empty_like(x, x.options(), layout(g));
  const float nw = static_cast<float>(noise_weight), sl = static_cast<float>(slope), ga = static_cast<float>(gain);
  if (x.scalar_type() == at::kFloat) {
    forward_all<float>(x, residual, out, d, nz, ns, nw, b, sl, ga, g);
  } else {
    forward_all<at::BFloat16>(x, residual, out, d, nz, ns, nw, b, sl, ga, g);
  }
  return out;
}

std::vector<at::Tensor> styled_act_backward(const at::Tensor& grad_in, const at::Tensor& x, const at::Tensor& dcoef,
                                            const at::Tensor& noise, double noise_weight, const at::Tensor& bias,
                                            double slope, double gain, bool want_dcoef) {
  const char* op = "styled_act_backward";
  const Geometry g = geometry(x, op);
  TORCH_CHECK(gain > 0, op, ": gain must be > 0");
  const at::Tensor grad = like_x(grad_in, x, g, op, "grad");
  const float* d = optional_f32(dcoef, g.n * g.c, op, "dcoef");
  const float* b = optional_f32(bias, g.c, op, "bias");
  int64_t ns;
  const float* nz = noise_ptr(noise, g, &ns, op);
  at::Tensor grad_x = at::empty_like(x, x.options(), layout(g));
  auto f32 = x.options().dtype(at::kFloat);
  at::Tensor grad_d = want_dcoef ? at::empty({g.n, g.c}, f32) : at::empty({0}, f32);
  at::Tensor grad_b = at::empty({g.n, g.c}, f32);
  at::Tensor grad_nw = at::empty({g.n}, f32);
  float* gd = want_dcoef ? grad_d.data_ptr<float>() : nullptr;
  const float nw = static_cast<float>(noise_weight), sl = static_cast<float>(slope), ga = static_cast<float>(gain);
  if (x.scalar_type() == at::kFloat) {
    backward_all<float>(grad, x, grad_x, d, nz, ns, nw, b, sl, ga, gd, grad_b.data_ptr<float>(),
                        grad_nw.data_ptr<float>(), g);
  } else {
    backward_all<at::BFloat16>(grad, x, grad_x, d, nz, ns, nw, b, sl, ga, gd, grad_b.data_ptr<float>(),
                               grad_nw.data_ptr<float>(), g);
  }
  return {grad_x, grad_d, grad_b, grad_nw};
}

namespace {

template <typename T>
void scale_forward_all(const at::Tensor& x, const float* s, at::Tensor& y, const Geometry& g) {
  const T* xp = x.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  const int64_t CHW = g.c * g.hw;
  at::parallel_for(0, g.n, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      scale_forward_sample(xp + n * CHW, s + n * g.c, yp + n * CHW, g.c, g.hw, g.channels_last);
    }
  });
}

template <typename T>
void scale_backward_all(const at::Tensor& grad, const at::Tensor& x, const float* s, at::Tensor& grad_x, float* gs,
                        const Geometry& g) {
  const T *gp = grad.data_ptr<T>(), *xp = x.data_ptr<T>();
  T* gxp = grad_x.data_ptr<T>();
  const int64_t CHW = g.c * g.hw;
  at::parallel_for(0, g.n, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      scale_backward_sample(gp + n * CHW, xp + n * CHW, s + n * g.c, gxp + n * CHW, gs + n * g.c, g.c, g.hw,
                            g.channels_last);
    }
  });
}

}  // namespace

at::Tensor channel_scale_forward(const at::Tensor& x, const at::Tensor& s) {
  const char* op = "channel_scale_forward";
  const Geometry g = geometry(x, op);
  const float* sp = optional_f32(s, g.n * g.c, op, "s");
  TORCH_CHECK(sp != nullptr, op, ": s must not be empty");
  at::Tensor y = at::empty_like(x, x.options(), layout(g));
  if (x.scalar_type() == at::kFloat) {
    scale_forward_all<float>(x, sp, y, g);
  } else {
    scale_forward_all<at::BFloat16>(x, sp, y, g);
  }
  return y;
}

std::vector<at::Tensor> channel_scale_backward(const at::Tensor& grad_in, const at::Tensor& x, const at::Tensor& s) {
  const char* op = "channel_scale_backward";
  const Geometry g = geometry(x, op);
  const at::Tensor grad = like_x(grad_in, x, g, op, "grad");
  const float* sp = optional_f32(s, g.n * g.c, op, "s");
  TORCH_CHECK(sp != nullptr, op, ": s must not be empty");
  at::Tensor grad_x = at::empty_like(x, x.options(), layout(g));
  at::Tensor grad_s = at::empty({g.n, g.c}, x.options().dtype(at::kFloat));
  if (x.scalar_type() == at::kFloat) {
    scale_backward_all<float>(grad, x, sp, grad_x, grad_s.data_ptr<float>(), g);
  } else {
    scale_backward_all<at::BFloat16>(grad, x, sp, grad_x, grad_s.data_ptr<float>(), g);
  }
  return {grad_x, grad_s};
}

}  // namespace hairlib_cpu
