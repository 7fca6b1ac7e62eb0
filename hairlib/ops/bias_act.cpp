// Python binding of the fused bias + leaky ReLU + gain CUDA op (kernel in bias_act_kernel.cu).
//
// fused_bias_act(x, bias, slope, scale) -> y
//   x: [N, C, ...] (or any shape when bias is empty); bias: [C] or empty (numel 0) for none.
//   y = leaky_relu(x + bias[c], slope) * scale, shaped like x.
//
// fused_bias_act_grad(grad, grad_bias, x, bias, slope, scale) -> grad_x
//   grad, x: shaped like the forward's x; bias: the forward's bias (or empty);
//   grad_bias: [C] or empty, an extra per-channel term added to grad (the double backward's).
//   grad_x = (grad + grad_bias[c]) * scale * (x + bias[c] > 0 ? 1 : slope).
//
// All tensors: CUDA, one device, one dtype (float32 / float64 / float16), contiguous.

#include <torch/extension.h>

#include <c10/cuda/CUDAGuard.h>

#include <cstdint>

void bias_act_launch(const at::Tensor& a, const at::Tensor& a_bias, const at::Tensor& ref, const at::Tensor& ref_bias,
                     at::Tensor& out, int64_t inner, int64_t channels, double slope, double scale);

namespace {

void check_tensor(const at::Tensor& t, const at::Tensor& like, const char* what) {
  TORCH_CHECK(t.is_cuda(), "fused_bias_act: ", what, " must be a CUDA tensor, got one on ", t.device());
  TORCH_CHECK(t.device() == like.device(), "fused_bias_act: ", what, " is on ", t.device(), ", expected ",
              like.device());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "fused_bias_act: ", what, " has dtype ", t.scalar_type(),
              ", expected ", like.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "fused_bias_act: ", what, " must be contiguous");
}

// A bias is "absent" when it has no elements; otherwise it must be [C] with C = x.size(1).
void check_bias(const at::Tensor& b, const at::Tensor& x, const char* what) {
  if (b.numel() == 0) return;
  check_tensor(b, x, what);
  TORCH_CHECK(x.dim() >= 2 && b.dim() == 1 && b.size(0) == x.size(1), "fused_bias_act: ", what, " ", b.sizes(),
              " must be [C] for x ", x.sizes(), " (C = dim 1)");
}

// [N, C, inner] view of x's shape: (inner, channels)
std::pair<int64_t, int64_t> inner_and_channels(const at::Tensor& x) {
  if (x.dim() < 2) return {1, 1};
  const int64_t channels = x.size(1);
  const int64_t outer = x.size(0) * channels;
  return {outer == 0 ? 1 : x.numel() / outer, channels == 0 ? 1 : channels};
}

}  // namespace

at::Tensor fused_bias_act(const at::Tensor& x, const at::Tensor& bias, double slope, double scale) {
  check_tensor(x, x, "x");
  check_bias(bias, x, "bias");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty(x.sizes(), x.options());  // contiguous
  const auto [inner, channels] = inner_and_channels(x);
  bias_act_launch(x, bias, at::Tensor(), at::Tensor(), y, inner, channels, slope, scale);
  return y;
}

at::Tensor fused_bias_act_grad(const at::Tensor& grad, const at::Tensor& grad_bias, const at::Tensor& x,
                               const at::Tensor& bias, double slope, double scale) {
  check_tensor(x, x, "x");
  check_tensor(grad, x, "grad");
  TORCH_CHECK(grad.sizes() == x.sizes(), "fused_bias_act_grad: grad ", grad.sizes(), " must be shaped like x ",
              x.sizes());
  check_bias(bias, x, "bias");
  check_bias(grad_bias, x, "grad_bias");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor grad_x = at::empty(x.sizes(), x.options());  // contiguous
  const auto [inner, channels] = inner_and_channels(x);
  bias_act_launch(grad, grad_bias, x, bias, grad_x, inner, channels, slope, scale);
  return grad_x;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "hairlib fused bias + leaky ReLU + gain (CUDA)";
  m.def("fused_bias_act", &fused_bias_act, "y = leaky_relu(x + bias[c], slope) * scale", py::arg("x"),
        py::arg("bias"), py::arg("slope"), py::arg("scale"));
  m.def("fused_bias_act_grad", &fused_bias_act_grad,
        "grad_x = (grad + grad_bias[c]) * scale * (x + bias[c] > 0 ? 1 : slope)", py::arg("grad"),
        py::arg("grad_bias"), py::arg("x"), py::arg("bias"), py::arg("slope"), py::arg("scale"));
}
