// Python binding of the upfirdn2d CUDA op (kernels in upfirdn2d_kernel.cu).
//
// upfirdn2d(x, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, path=0) -> out
//   x:      [N, C, H, W] contiguous CUDA tensor, float32 / float64 / float16
//   kernel: [kh, kw] contiguous, same dtype and device as x (ops/upfirdn2d_cuda.py converts it)
//   out:    [N, C, out_h, out_w], out_h = (H*up_y + pad_y0 + pad_y1 - kh + down_y) // down_y,
//           out_w likewise: zero-insertion upsampling, pad (negative: crop), convolution with
//           `kernel` (i.e. correlation with the flipped kernel), keep every down-th sample --
//           exactly ops.upfirdn2d.upfirdn2d_ref.
//   path:   0 picks the kernel; 1 forces the direct kernel, 2 the shared-memory tiled one (tests).

#include <torch/extension.h>

#include <c10/cuda/CUDAGuard.h>

#include <climits>
#include <cstdint>
#include <cstdlib>

void upfirdn2d_launch(const at::Tensor& x, const at::Tensor& kernel, at::Tensor& out, int up_x, int up_y,
                      int down_x, int down_y, int pad_x0, int pad_y0, int64_t path);

namespace {

// floor(a / b) for b > 0
int64_t floor_div64(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (q * b > a) ? q - 1 : q;
}

}  // namespace

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& kernel, int64_t up_x, int64_t up_y, int64_t down_x,
                     int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1, int64_t path) {
  TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be a CUDA tensor, got one on ", x.device());
  TORCH_CHECK(kernel.device() == x.device(), "upfirdn2d: kernel is on ", kernel.device(), " but x is on ",
              x.device());
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W], got ", x.sizes());
  TORCH_CHECK(kernel.dim() == 2, "upfirdn2d: kernel must be [kh, kw], got ", kernel.sizes());
  TORCH_CHECK(kernel.scalar_type() == x.scalar_type(), "upfirdn2d: kernel dtype ", kernel.scalar_type(),
              " differs from x dtype ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous(), "upfirdn2d: x must be contiguous");
  TORCH_CHECK(kernel.is_contiguous(), "upfirdn2d: kernel must be contiguous");
  TORCH_CHECK(kernel.numel() > 0, "upfirdn2d: empty kernel");
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1,
              "upfirdn2d: up and down factors must be >= 1, got up=(", up_x, ", ", up_y, ") down=(", down_x, ", ",
              down_y, ")");
  TORCH_CHECK(path >= 0 && path <= 2, "upfirdn2d: path must be 0, 1 or 2");

  const int64_t n = x.size(0), c = x.size(1), in_h = x.size(2), in_w = x.size(3);
  const int64_t kh = kernel.size(0), kw = kernel.size(1);
  TORCH_CHECK(in_h > 0 && in_w > 0, "upfirdn2d: empty image ", x.sizes());
  const int64_t out_h = floor_div64(in_h * up_y + pad_y0 + pad_y1 - kh + down_y, down_y);
  const int64_t out_w = floor_div64(in_w * up_x + pad_x0 + pad_x1 - kw + down_x, down_x);
  TORCH_CHECK(out_h >= 1 && out_w >= 1, "upfirdn2d: empty output (", out_h, "x", out_w, ") for input ", x.sizes(),
              ", kernel ", kernel.sizes(), ", up=(", up_x, ", ", up_y, "), down=(", down_x, ", ", down_y,
              "), pad=(", pad_x0, ", ", pad_x1, ", ", pad_y0, ", ", pad_y1, ")");
  // The kernels index within a plane, and along the zero-stuffed axes, with 32-bit integers: every
  // coordinate they form is a sum of at most three of these terms, each kept below 2^29.
  const int64_t lim = int64_t(1) << 29;
  TORCH_CHECK(in_h * in_w <= INT_MAX && out_h * out_w <= INT_MAX, "upfirdn2d: image plane too large");
  TORCH_CHECK(in_h * up_y < lim && in_w * up_x < lim && out_h * down_y < lim && out_w * down_x < lim && kh < lim &&
                  kw < lim && kh * kw <= INT_MAX && std::abs(pad_x0) < lim && std::abs(pad_y0) < lim,
              "upfirdn2d: sizes, factors or pads too large for 32-bit indexing");

  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty({n, c, out_h, out_w}, x.options());
  upfirdn2d_launch(x, kernel, out, static_cast<int>(up_x), static_cast<int>(up_y), static_cast<int>(down_x),
                   static_cast<int>(down_y), static_cast<int>(pad_x0), static_cast<int>(pad_y0), path);
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "hairlib upfirdn2d: upsample, pad, FIR-filter, downsample (CUDA)";
  m.def("upfirdn2d", &upfirdn2d, "upfirdn2d forward; x [N, C, H, W], kernel [kh, kw] -> [N, C, out_h, out_w]",
        py::arg("x"), py::arg("kernel"), py::arg("up_x"), py::arg("up_y"), py::arg("down_x"), py::arg("down_y"),
        py::arg("pad_x0"), py::arg("pad_x1"), py::arg("pad_y0"), py::arg("pad_y1"), py::arg("path") = 0);
}
