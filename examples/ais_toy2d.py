"""Test log-likelihood of an EBM trained on the 8-Gaussian ring, with annealed importance sampling.

Trains the MLP energy of ``train_toy2d.py`` briefly by persistent CD on ``eight_gaussians``,
then estimates ``log Z`` of ``p(x) = exp(-E(x)) / Z`` by AIS (a Gaussian base fitted to the
training data, MALA transitions along the geometric path) and reports the mean test
log-likelihood ``mean(-E(x_test)) - log Z`` with its standard error (the test set's and AIS's
combined), next to that of the fitted Gaussian base, a baseline the EBM should beat.

    python examples/ais_toy2d.py            # 1500 training steps, 300 temperatures
    python examples/ais_toy2d.py --quick    # a short run (a few seconds)
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from torchebm.datasets import make_toy2d
from torchebm.samplers import MALA, AnnealedImportanceSampler
from torchebm.samplers.annealed_importance import fit_gaussian, gaussian_log_normaliser
from train_toy2d import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    iters, n_temps, n_chains = (150, 50, 200) if args.quick else (1500, 300, 1000)
    device = torch.device("cpu")

    start = time.time()
    model, _, _, _ = train("eight_gaussians", iters, device, args.seed, show_progress=False)
    model.eval()
    trained = time.time() - start

    train_data = make_toy2d("eight_gaussians", 5000, seed=args.seed + 10)
    test_data = make_toy2d("eight_gaussians", 5000, seed=args.seed + 11)
    base = fit_gaussian(train_data)
    ais = AnnealedImportanceSampler(MALA(model, step_size=0.01), n_temps=n_temps, base=base,
                                    n_steps_per_temp=2)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.time()
    result = ais.estimate(n_chains, generator=generator)
    estimated = time.time() - start

    with torch.no_grad():
        neg_energy = -model(test_data).double()
        base_ll = -base(test_data).double() - gaussian_log_normaliser(base)
    ll = float(neg_energy.mean()) - result.log_z
    ll_se = math.hypot(float(neg_energy.std()) / math.sqrt(len(test_data)), result.log_z_se)
    print(f"trained {iters} PCD steps in {trained:.1f} s; AIS with {n_temps} temperatures x "
          f"{n_chains} chains in {estimated:.1f} s (ESS of the weights {result.ess:.0f})")
    print(f"log Z = {result.log_z:.3f} +- {result.log_z_se:.3f} "
          f"(Jensen lower bound {result.lower_bound:.3f})")
    print(f"test log-likelihood: EBM {ll:.3f} +- {ll_se:.3f} nats, "
          f"fitted Gaussian {float(base_ll.mean()):.3f} nats")


if __name__ == "__main__":
    main()
