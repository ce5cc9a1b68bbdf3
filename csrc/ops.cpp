// Every torchebm op schema, in one place. Back ends register their kernels with
// TORCH_LIBRARY_IMPL in csrc/cpu/ and csrc/cuda/; Python fake kernels live in
// python/torchebm/kernels/ops.py.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import torchebm._C` loads this library, and with it the op registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(torchebm, m) {
  // x' = clamp(x - a * clip(grad) + b * xi). `noise` gives xi; when it is None, xi is drawn
  // in-kernel from Philox4x32-10 keyed by `seed` with counter (element index, step).
  m.def(
      "langevin_update(Tensor x, Tensor grad, Tensor? noise, float a, float b, "
      "float? clamp_min, float? clamp_max, float? grad_clip, int seed, int step) -> Tensor");
}
