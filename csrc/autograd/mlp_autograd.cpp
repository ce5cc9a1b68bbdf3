// Autograd for the MLP ops (schemas in csrc/ops.cpp): none. Their outputs are not
// differentiable (the chains are many steps of Metropolis decisions and noise, and
// mlp_energy_grad's gradient would need the network's Hessian), so a call with grad mode on
// refuses any input that requires grad, the network's weight and bias lists included, instead
// of returning outputs whose backward would silently give no gradient. MLPSpec.op_args()
// passes detached parameters.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <torch/library.h>

#include <string>

namespace torchebm::autograd {
namespace {

bool requires_grad(const c10::IValue& v, std::string& which, const std::string& name) {
  if (v.isTensor()) {
    if (v.toTensor().requires_grad()) {
      which = name;
      return true;
    }
    return false;
  }
  if (v.isTensorList()) {
    const auto list = v.toTensorList();
    for (size_t i = 0; i < list.size(); ++i) {
      if (static_cast<at::Tensor>(list[i]).requires_grad()) {
        which = name + "[" + std::to_string(i) + "]";
        return true;
      }
    }
  }
  return false;
}

void refuse_grad_mlp(const c10::OperatorHandle& op, c10::DispatchKeySet keys,
                     torch::jit::Stack* stack) {
  const auto& args = op.schema().arguments();
  if (at::GradMode::is_enabled()) {
    const auto inputs = torch::jit::last(*stack, args.size());
    const std::string& full = op.schema().name();  // "torchebm::<op>"
    const std::string name = full.substr(full.find("::") + 2);
    for (size_t i = 0; i < args.size(); ++i) {
      std::string which;
      TORCH_CHECK(!requires_grad(inputs[i], which, args[i].name()), name,
                  ": the op is not differentiable, but its argument ", which,
                  " requires grad; pass detached tensors (.detach(), as MLPSpec.op_args() does) "
                  "or call it under torch.no_grad()");
    }
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, Autograd, m) {
  for (const char* name :
       {"mlp_energy_grad", "mlp_langevin_chain", "mlp_mala_chain", "mlp_hmc_chain"}) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&refuse_grad_mlp>());
  }
}

}  // namespace torchebm::autograd
