// Python bindings of hairlib's CPU kernels: the fused StyleGAN2 epilogues (styled_act_cpu.cpp)
// and upfirdn2d for channels-last tensors (upfirdn2d_cpu.cpp). Built on first use by
// hairlib.ops._build (with -march=native, OpenMP); see those files for the contracts.

#include <torch/python.h>

#include <vector>

namespace hairlib_cpu {
at::Tensor styled_act_forward(const at::Tensor& x, const at::Tensor& dcoef, const at::Tensor& noise,
                              double noise_weight, const at::Tensor& bias, const at::Tensor& residual, double slope,
                              double gain);
std::vector<at::Tensor> styled_act_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& dcoef,
                                            const at::Tensor& noise, double noise_weight, const at::Tensor& bias,
                                            double slope, double gain, bool want_dcoef);
at::Tensor channel_scale_forward(const at::Tensor& x, const at::Tensor& s);
std::vector<at::Tensor> channel_scale_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& s);
at::Tensor fir_channels_last(const at::Tensor& x, const at::Tensor& kx, const at::Tensor& ky, int64_t up,
                             int64_t down, int64_t px0, int64_t px1, int64_t py0, int64_t py1, bool flip);
}  // namespace hairlib_cpu

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("styled_act_forward", &hairlib_cpu::styled_act_forward,
        "leaky_relu(x * dcoef + noise_weight * noise + bias, slope) * gain + residual");
  m.def("styled_act_backward", &hairlib_cpu::styled_act_backward, "gradients of styled_act_forward");
  m.def("channel_scale_forward", &hairlib_cpu::channel_scale_forward, "x * s[n, c]");
  m.def("channel_scale_backward", &hairlib_cpu::channel_scale_backward, "gradients of x * s[n, c]");
  m.def("fir_channels_last", &hairlib_cpu::fir_channels_last,
        "upfirdn2d with a separable filter on a channels-last tensor");
}
