// Shared helpers of hairlib's CPU kernels: float32 / bfloat16 loads and stores, scalar and (where
// the build machine has AVX-512) 16 lanes at a time. bfloat16 is widened exactly on load and
// rounded to nearest even on store (NaN stays NaN), as PyTorch rounds it.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define HAIRLIB_AVX512 1
#endif

namespace hairlib_cpu {
namespace {

inline float load1(const float* p) { return *p; }
inline float load1(const at::BFloat16* p) {
  uint32_t u = static_cast<uint32_t>(*reinterpret_cast<const uint16_t*>(p)) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline void store1(float* p, float v) { *p = v; }
inline void store1(at::BFloat16* p, float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  const uint16_t r = std::isnan(v) ? 0x7fc0u : static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  *reinterpret_cast<uint16_t*>(p) = r;
}

#ifdef HAIRLIB_AVX512
// ---- 16-lane helpers (mask selects the first `count` lanes of a tail) --------------------------

inline __mmask16 tail(int64_t count) { return count >= 16 ? __mmask16(0xffff) : __mmask16((1u << count) - 1u); }

inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(const at::BFloat16* p, __mmask16 m) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline void store16(float* p, __m512 v, __mmask16 m) { _mm512_mask_storeu_ps(p, m, v); }
inline void store16(at::BFloat16* p, __m512 v, __mmask16 m) {
#ifdef __AVX512BF16__
  // one instruction: round to nearest even, NaN kept a NaN
  _mm256_mask_storeu_epi16(p, m, (__m256i)_mm512_cvtneps_pbh(v));
#else
  const __m512i u = _mm512_castps_si512(v);
  __m512i r = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)),
                               _mm512_set1_epi32(0x7fff));
  r = _mm512_srli_epi32(_mm512_add_epi32(r, u), 16);
  r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), _mm512_set1_epi32(0x7fc0), r);
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(r));
#endif
}
#endif

}  // namespace
}  // namespace hairlib_cpu
