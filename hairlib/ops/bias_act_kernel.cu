// Fused bias + leaky ReLU + gain, and its gradient, as one elementwise CUDA kernel.
//
// Tensors are viewed as [N, C, inner] (inner = product of the dims after 1; 1 for [N, C]) and a
// per-channel bias b[C] is broadcast over N and inner. For every element i with channel c:
//
//   u      = a[i] + a_bias[c]                       (a_bias optional: 0 when absent)
//   m      = ref ? ref[i] + ref_bias[c] : u         (the value whose sign picks the branch)
//   out[i] = (m > 0 ? u : u * slope) * scale
//
// which gives, with the same kernel:
//   forward:  a = x, a_bias = b, no ref:
//             y = leaky_relu(x + b) * scale
//   gradient: a = g_y, a_bias = none or g_b2, ref = x, ref_bias = b:
//             g_x = (g_y + g_b2) * scale * (x + b > 0 ? 1 : slope)
// The second bias g_b2 serves the double backward, where the gradient flowing into the bias
// gradient (a [C] tensor) is broadcast and added to the one flowing into g_x.
// The mask is recomputed from x and b (in float for half: the sum of two halves is never rounded
// to zero or across zero, so its sign is the reference's), hence equals the reference's branch
// exactly, x + b == 0 taking the slope side in both. One exception: the build's --use_fast_math
// flushes float32 subnormals, so an x + b of magnitude < 1.2e-38 counts as 0 here.
//
// Vectorised: when inner is a multiple of the pack width (16 bytes: 4 floats, 2 doubles, 8 halves)
// and every pointer is 16-byte aligned, each thread moves whole packs, which share one channel.
// Arithmetic is in at::opmath_type<scalar_t> (float for half).

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <climits>
#include <cstdint>

namespace {

template <typename scalar_t, int VEC>
struct alignas(sizeof(scalar_t) * VEC) Pack {
  scalar_t v[VEC];
};

// a, ref, out: [numel] viewed as [N, C, inner]; a_bias, ref_bias: [C] or nullptr; ref may be nullptr.
// index_t: int32_t when every index fits (cheaper divisions), else int64_t. VEC divides inner.
template <typename scalar_t, typename acc_t, typename index_t, int VEC>
__global__ void bias_act_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ a_bias,
                                const scalar_t* __restrict__ ref, const scalar_t* __restrict__ ref_bias,
                                scalar_t* __restrict__ out, index_t packs, index_t inner, index_t channels,
                                acc_t slope, acc_t scale) {
  using P = Pack<scalar_t, VEC>;
  const bool per_channel = a_bias != nullptr || ref_bias != nullptr;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t pk = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; pk < packs; pk += stride) {
    const index_t i0 = pk * VEC;
    const index_t c = per_channel ? (i0 / inner) % channels : 0;  // one channel for the whole pack
    const acc_t ab = a_bias ? static_cast<acc_t>(a_bias[c]) : acc_t(0);
    const acc_t rb = ref_bias ? static_cast<acc_t>(ref_bias[c]) : acc_t(0);
    const P av = *reinterpret_cast<const P*>(a + i0);
    const P rv = ref ? *reinterpret_cast<const P*>(ref + i0) : av;
    P ov;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const acc_t u = static_cast<acc_t>(av.v[j]) + ab;
      const acc_t m = ref ? static_cast<acc_t>(rv.v[j]) + rb : u;
      ov.v[j] = static_cast<scalar_t>((m > acc_t(0) ? u : u * slope) * scale);
    }
    *reinterpret_cast<P*>(out + i0) = ov;
  }
}

constexpr int kThreads = 256;

// Streaming multiprocessors of the current device (sizes the grid-stride loops).
int multiprocessor_count() {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, c10::cuda::current_device()));
  return count;
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

const void* ptr_or_null(const at::Tensor& t) { return t.defined() && t.numel() > 0 ? t.data_ptr() : nullptr; }

template <typename scalar_t, int VEC>
void launch_vec(const at::Tensor& a, const at::Tensor& a_bias, const at::Tensor& ref, const at::Tensor& ref_bias,
                at::Tensor& out, int64_t inner, int64_t channels, double slope, double scale) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t packs = a.numel() / VEC;
  const int64_t max_blocks = static_cast<int64_t>(multiprocessor_count()) * 32;
  const int64_t wanted = (packs + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wanted, max_blocks)));
  const auto* ap = static_cast<const scalar_t*>(ptr_or_null(a));
  const auto* abp = static_cast<const scalar_t*>(ptr_or_null(a_bias));
  const auto* rp = static_cast<const scalar_t*>(ptr_or_null(ref));
  const auto* rbp = static_cast<const scalar_t*>(ptr_or_null(ref_bias));
  auto* op = static_cast<scalar_t*>(out.data_ptr());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  // a.numel() (an element index) plus one grid stride must fit the index type
  if (a.numel() + static_cast<int64_t>(blocks) * kThreads * VEC <= INT32_MAX) {
    bias_act_kernel<scalar_t, acc_t, int32_t, VEC><<<blocks, kThreads, 0, stream>>>(
        ap, abp, rp, rbp, op, static_cast<int32_t>(packs), static_cast<int32_t>(inner),
        static_cast<int32_t>(channels), static_cast<acc_t>(slope), static_cast<acc_t>(scale));
  } else {
    bias_act_kernel<scalar_t, acc_t, int64_t, VEC><<<blocks, kThreads, 0, stream>>>(
        ap, abp, rp, rbp, op, packs, inner, channels, static_cast<acc_t>(slope), static_cast<acc_t>(scale));
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

// out = (m > 0 ? u : u * slope) * scale with u = a + a_bias[c], m = ref + ref_bias[c] (or u when
// ref is undefined). a, ref, out: same shape, dtype, device, contiguous; biases [C] or empty;
// inner = product of a's dims after 1, channels = a.size(1) (both 1 for 1-D a).
void bias_act_launch(const at::Tensor& a, const at::Tensor& a_bias, const at::Tensor& ref, const at::Tensor& ref_bias,
                     at::Tensor& out, int64_t inner, int64_t channels, double slope, double scale) {
  if (a.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(a.scalar_type(), "bias_act_cuda", [&] {
    constexpr int kVec = 16 / sizeof(scalar_t);
    const bool vectorise = inner % kVec == 0 && aligned16(ptr_or_null(a)) && aligned16(ptr_or_null(ref)) &&
                           aligned16(out.data_ptr());
    if (vectorise) {
      launch_vec<scalar_t, kVec>(a, a_bias, ref, ref_bias, out, inner, channels, slope, scale);
    } else {
      launch_vec<scalar_t, 1>(a, a_bias, ref, ref_bias, out, inner, channels, slope, scale);
    }
  });
}
