// upfirdn2d CUDA kernels: upsample by zero insertion, pad (or crop), FIR-filter, downsample.
//
// For every image plane p of x [N*C, H, W] and output pixel (oy, ox) of out [N*C, out_h, out_w]:
//
//   out[p, oy, ox] = sum_{ty < kh, tx < kw} kflip[ty, tx] * U[p, oy*down_y + ty - pad_y0,
//                                                            ox*down_x + tx - pad_x0]
//
// where kflip is the kernel flipped on both axes (a true convolution, as in upfirdn2d_ref) and
// U is the zero-stuffed image: U[p, u, v] = x[p, u / up_y, v / up_x] when u is a multiple of up_y,
// v a multiple of up_x and both lie inside the image, else 0. pad_x1 / pad_y1 only decide the
// output size, which the caller passes in.
//
// Polyphase evaluation: along each axis only every up-th tap lands on a real sample, so an output
// pixel visits ceil(kh / up_y) * ceil(kw / up_x) taps at most, never the inserted zeros. The first
// such tap and its source sample come from first_tap() below.
//
// Two kernels:
//   * tiled:  a block computes a tile of TW x TH output pixels of one plane; it first copies the
//             input samples that tile reads (zero outside the image) and the flipped kernel into
//             shared memory, then every thread sums its taps from shared memory without bounds
//             checks. Used for outputs of at least 16 x 16 when the tile fits in 48 KiB.
//   * direct: one thread per output pixel over a flat grid-stride loop, reading x through the
//             caches; bounds are handled by clipping the tap ranges. Used for small outputs and
//             for kernels or strides too large for a shared-memory tile.
// Accumulation is in at::opmath_type<scalar_t> (float for half, else the type itself).

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

// Geometry of one call (pad_x1 / pad_y1 are folded into out_h / out_w).
struct Geometry {
  int64_t planes;  // N * C
  int in_h, in_w;
  int out_h, out_w;
  int kh, kw;
  int up_x, up_y;
  int down_x, down_y;
  int pad_x0, pad_y0;
};

// floor(a / b) for b > 0 and any sign of a (C++ division truncates towards zero).
__host__ __device__ __forceinline__ int floor_div(int a, int b) {
  const int q = a / b;
  return (q * b > a) ? q - 1 : q;
}

// Along one axis: output index o reads the zero-stuffed coordinates o*down - pad0 + t for taps
// t = 0 .. k-1. The first tap that lands on a real sample (a multiple of up) is `tap`, and that
// sample is input index `src`; the following ones are tap + j*up <-> src + j.
struct FirstTap {
  int tap;  // in [0, up)
  int src;  // may lie outside [0, in) (then U is 0 there)
};

__host__ __device__ __forceinline__ FirstTap first_tap(int o, int down, int up, int pad0) {
  const int base = o * down - pad0;             // zero-stuffed coordinate of tap 0
  const int src = floor_div(base + up - 1, up);  // ceil(base / up): first sample at or after base
  return {src * up - base, src};
}

// ----------------------------------------------------------------------------------------------
// Direct kernel: one output pixel per thread, grid-stride over all planes * out_h * out_w pixels.
// x: [planes, in_h, in_w]; k: [kh, kw] (unflipped); out: [planes, out_h, out_w].

// Clip the taps of one axis to those whose source sample lies in [0, in):
// taps are t = *t0, *t0 + up, ... < *t1, sources *s0, *s0 + 1, ...
__host__ __device__ __forceinline__ void clip_taps(FirstTap f, int k, int up, int in, int* t0, int* t1,
                                                   int* s0) {
  int tap = f.tap, src = f.src;
  if (src < 0) {  // skip the taps before the image start
    tap += -src * up;
    src = 0;
  }
  const int avail = in - src;  // samples left in the image (<= 0: none)
  *t0 = tap;
  *s0 = src;
  const int end = avail > 0 ? tap + avail * up : tap;  // one past the last in-image tap
  *t1 = end < k ? end : k;
}

template <typename scalar_t, typename acc_t>
__host__ __device__ __forceinline__ acc_t direct_pixel(const scalar_t* __restrict__ plane,  // [in_h, in_w]
                                                       const scalar_t* __restrict__ k,      // [kh, kw]
                                                       const Geometry& g, int oy, int ox) {
  int ty0, ty1, sy0, tx0, tx1, sx0;
  clip_taps(first_tap(oy, g.down_y, g.up_y, g.pad_y0), g.kh, g.up_y, g.in_h, &ty0, &ty1, &sy0);
  clip_taps(first_tap(ox, g.down_x, g.up_x, g.pad_x0), g.kw, g.up_x, g.in_w, &tx0, &tx1, &sx0);
  const int last = g.kh * g.kw - 1;  // kflip[ty, tx] = k[last - (ty*kw + tx)]
  acc_t acc = 0;
  for (int ty = ty0, sy = sy0; ty < ty1; ty += g.up_y, ++sy) {
    const scalar_t* row = plane + static_cast<int64_t>(sy) * g.in_w;
    for (int tx = tx0, sx = sx0; tx < tx1; tx += g.up_x, ++sx) {
      acc += static_cast<acc_t>(row[sx]) * static_cast<acc_t>(k[last - (ty * g.kw + tx)]);
    }
  }
  return acc;
}

// index_t: int32_t when planes * out_h * out_w fits (cheaper divisions), else int64_t.
template <typename scalar_t, typename acc_t, typename index_t>
__global__ void upfirdn2d_direct_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ k,
                                        scalar_t* __restrict__ out, Geometry g) {
  const index_t plane_out = static_cast<index_t>(g.out_h) * g.out_w;
  const int64_t plane_in = static_cast<int64_t>(g.in_h) * g.in_w;
  const index_t total = static_cast<index_t>(g.planes) * plane_out;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const index_t p = i / plane_out;
    const int rem = static_cast<int>(i - p * plane_out);
    const int oy = rem / g.out_w, ox = rem - oy * g.out_w;
    out[i] = static_cast<scalar_t>(direct_pixel<scalar_t, acc_t>(x + p * plane_in, k, g, oy, ox));
  }
}

// ----------------------------------------------------------------------------------------------
// Tiled kernel. Block (blockIdx.x, blockIdx.y) covers output pixels [oy0, oy0 + tile_h) x
// [ox0, ox0 + tile_w) of plane blockIdx.z; y tiles and planes loop with stride gridDim.y / .z so
// that more than 65535 of either work. Dynamic shared memory holds, as acc_t:
//   kflip [kh * kw]                 the flipped kernel
//   tile  [in_tile_h * in_tile_w]   input rows s_lo .. s_lo + in_tile_h - 1 and columns
//                                   t_lo .. t_lo + in_tile_w - 1 (0 outside the image)
// with s_lo = first_tap(oy0).src: the first sample any pixel of the tile reads. in_tile_h bounds
// the number of samples the tile reads, see tile_extent().

// Samples (multiples of up) inside a window of (tile - 1) * down + k consecutive zero-stuffed
// coordinates: at most floor(((tile - 1) * down + k - 1) / up) + 1 of them.
__host__ __device__ __forceinline__ int tile_extent(int tile, int down, int k, int up) {
  return ((tile - 1) * down + k - 1) / up + 1;
}

struct TileShape {
  int tile_w, tile_h;        // output pixels per block
  int in_tile_w, in_tile_h;  // input samples per block
};

// One output pixel from the shared tile (no bounds checks: the tile is zero-padded).
// kflip: [kh, kw]; tile: [in_tile_h, in_tile_w]; (s_lo, t_lo): sample at tile[0, 0].
template <typename acc_t>
__host__ __device__ __forceinline__ acc_t tiled_pixel(const acc_t* kflip, const acc_t* tile, const Geometry& g,
                                                      const TileShape& ts, int s_lo, int t_lo, int oy, int ox) {
  const FirstTap fy = first_tap(oy, g.down_y, g.up_y, g.pad_y0);
  const FirstTap fx = first_tap(ox, g.down_x, g.up_x, g.pad_x0);
  acc_t acc = 0;
  for (int ty = fy.tap, r = fy.src - s_lo; ty < g.kh; ty += g.up_y, ++r) {
    const acc_t* trow = tile + r * ts.in_tile_w;
    const acc_t* krow = kflip + ty * g.kw;
    for (int tx = fx.tap, c = fx.src - t_lo; tx < g.kw; tx += g.up_x, ++c) {
      acc += trow[c] * krow[tx];
    }
  }
  return acc;
}

// Element idx of the shared input tile of the block whose first sample is (s_lo, t_lo).
template <typename scalar_t, typename acc_t>
__host__ __device__ __forceinline__ acc_t tile_element(const scalar_t* __restrict__ plane, const Geometry& g,
                                                       const TileShape& ts, int s_lo, int t_lo, int idx) {
  const int r = idx / ts.in_tile_w;
  const int s = s_lo + r, t = t_lo + (idx - r * ts.in_tile_w);
  if (s < 0 || s >= g.in_h || t < 0 || t >= g.in_w) return acc_t(0);
  return static_cast<acc_t>(plane[static_cast<int64_t>(s) * g.in_w + t]);
}

template <typename scalar_t, typename acc_t>
__global__ void upfirdn2d_tiled_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ k,
                                       scalar_t* __restrict__ out, Geometry g, TileShape ts) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* kflip = reinterpret_cast<acc_t*>(smem_raw);  // [kh * kw]
  acc_t* tile = kflip + g.kh * g.kw;                  // [in_tile_h * in_tile_w]

  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  const int nthreads = blockDim.x * blockDim.y;
  const int ktaps = g.kh * g.kw;
  for (int j = tid; j < ktaps; j += nthreads) kflip[j] = static_cast<acc_t>(k[ktaps - 1 - j]);

  const int tiles_y = (g.out_h + ts.tile_h - 1) / ts.tile_h;
  const int tile_elems = ts.in_tile_h * ts.in_tile_w;
  const int64_t plane_in = static_cast<int64_t>(g.in_h) * g.in_w;
  const int64_t plane_out = static_cast<int64_t>(g.out_h) * g.out_w;
  const int ox0 = blockIdx.x * ts.tile_w;
  const int t_lo = first_tap(ox0, g.down_x, g.up_x, g.pad_x0).src;

  // Both loops are uniform across the block, so the barriers inside are safe.
  for (int64_t p = blockIdx.z; p < g.planes; p += gridDim.z) {
    const scalar_t* plane = x + p * plane_in;
    scalar_t* out_plane = out + p * plane_out;
    for (int tyi = blockIdx.y; tyi < tiles_y; tyi += gridDim.y) {
      const int oy0 = tyi * ts.tile_h;
      const int s_lo = first_tap(oy0, g.down_y, g.up_y, g.pad_y0).src;
      __syncthreads();  // every thread is done with the previous tile before it is overwritten
      for (int idx = tid; idx < tile_elems; idx += nthreads) {
        tile[idx] = tile_element<scalar_t, acc_t>(plane, g, ts, s_lo, t_lo, idx);
      }
      __syncthreads();  // tile and kflip are complete
      for (int ly = threadIdx.y; ly < ts.tile_h; ly += blockDim.y) {
        const int oy = oy0 + ly;
        if (oy >= g.out_h) break;
        for (int lx = threadIdx.x; lx < ts.tile_w; lx += blockDim.x) {
          const int ox = ox0 + lx;
          if (ox >= g.out_w) break;
          out_plane[static_cast<int64_t>(oy) * g.out_w + ox] =
              static_cast<scalar_t>(tiled_pixel<acc_t>(kflip, tile, g, ts, s_lo, t_lo, oy, ox));
        }
      }
    }
  }
}

constexpr int kThreads = 256;

// Streaming multiprocessors of the current device (sizes the grid-stride loops).
int multiprocessor_count() {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, c10::cuda::current_device()));
  return count;
}

constexpr size_t kSharedLimit = 48 * 1024;  // usable without opting in, on every architecture
constexpr int kGridYZLimit = 65535;

// Tile for the tiled kernel, or false when it should not / cannot be used.
bool choose_tile(const Geometry& g, size_t acc_size, TileShape* ts, size_t* smem) {
  if (g.out_w < 16 || g.out_h < 16) return false;
  // Large strides or kernels never fit in 48 KiB; reject them before the extents can overflow.
  if (g.down_x > 64 || g.down_y > 64 || g.kh > 4096 || g.kw > 4096) return false;
  ts->tile_w = g.out_w >= 32 ? 32 : 16;
  for (int th = g.out_h >= 32 ? 32 : 16; th >= 8; th /= 2) {
    ts->tile_h = th;
    ts->in_tile_w = tile_extent(ts->tile_w, g.down_x, g.kw, g.up_x);
    ts->in_tile_h = tile_extent(ts->tile_h, g.down_y, g.kh, g.up_y);
    *smem = (static_cast<size_t>(g.kh) * g.kw + static_cast<size_t>(ts->in_tile_w) * ts->in_tile_h) * acc_size;
    if (*smem <= kSharedLimit) return true;
  }
  return false;
}

}  // namespace

// Launch on the current stream. x: [N, C, H, W] contiguous; kernel: [kh, kw] contiguous, same
// dtype and device; out: [N, C, out_h, out_w] contiguous, allocated by the caller.
// path: 0 = choose, 1 = direct kernel, 2 = tiled kernel (error if its tile does not fit).
void upfirdn2d_launch(const at::Tensor& x, const at::Tensor& kernel, at::Tensor& out, int up_x, int up_y,
                      int down_x, int down_y, int pad_x0, int pad_y0, int64_t path) {
  Geometry g;
  g.planes = x.size(0) * x.size(1);
  g.in_h = static_cast<int>(x.size(2));
  g.in_w = static_cast<int>(x.size(3));
  g.out_h = static_cast<int>(out.size(2));
  g.out_w = static_cast<int>(out.size(3));
  g.kh = static_cast<int>(kernel.size(0));
  g.kw = static_cast<int>(kernel.size(1));
  g.up_x = up_x;
  g.up_y = up_y;
  g.down_x = down_x;
  g.down_y = down_y;
  g.pad_x0 = pad_x0;
  g.pad_y0 = pad_y0;
  if (out.numel() == 0) return;

  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(x.scalar_type(), "upfirdn2d_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    TileShape ts;
    size_t smem = 0;
    const bool tiled_fits = choose_tile(g, sizeof(acc_t), &ts, &smem);
    TORCH_CHECK(path != 2 || tiled_fits, "upfirdn2d: the tiled kernel cannot run this configuration");
    if (tiled_fits && path != 1) {
      const dim3 block(ts.tile_w, kThreads / ts.tile_w);
      const int tiles_y = (g.out_h + ts.tile_h - 1) / ts.tile_h;
      const dim3 grid((g.out_w + ts.tile_w - 1) / ts.tile_w, std::min(tiles_y, kGridYZLimit),
                      static_cast<unsigned>(std::min<int64_t>(g.planes, kGridYZLimit)));
      upfirdn2d_tiled_kernel<scalar_t, acc_t><<<grid, block, smem, stream>>>(
          x.data_ptr<scalar_t>(), kernel.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), g, ts);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      const int64_t total = out.numel();
      const int64_t max_blocks = static_cast<int64_t>(multiprocessor_count()) * 32;
      const int blocks = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, max_blocks));
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* kp = kernel.data_ptr<scalar_t>();
      scalar_t* op = out.data_ptr<scalar_t>();
      // total + stride must not overflow the index type either
      if (total + static_cast<int64_t>(blocks) * kThreads <= INT32_MAX) {
        upfirdn2d_direct_kernel<scalar_t, acc_t, int32_t><<<blocks, kThreads, 0, stream>>>(xp, kp, op, g);
      } else {
        upfirdn2d_direct_kernel<scalar_t, acc_t, int64_t><<<blocks, kThreads, 0, stream>>>(xp, kp, op, g);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
}
