"""Per-step cost of 8 vectorised learners against 8 model copies stepped in a Python loop.

Both sides run the same steps on the same batches in the same process, single-threaded, on the
"paper" preset's network (digits, 64 -> 30 -> 30 -> 10, no bias, float32, batch 25 per learner):

- vectorised: ``awbench.training.multilearner.Learners.step`` (one (n, P) buffer, batched matmuls,
  explicit backprop, one (n, n) @ (n, P) mixing product);
- loop: 8 ``awbench.nn.mlp.MLP`` copies, each with its own ``torch.optim.SGD``, autograd
  forward/backward per copy; DPSGD then mixes every parameter tensor with the ring matrix,
  SSGD averages the 8 gradients before the optimisers step.

Prints the median per-step time of each over interleaved rounds, the ratio (target >= 3x) and
the largest parameter difference between the two after the same 50 steps in float64 (they
must agree).
Usage: ``python bench/multilearner_speed.py [--steps 200] [--rounds 7] [--learners 8]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import awbench as aw
from awbench.training.multilearner import Learners, mixing_matrix

TARGET = 3.0


def make_batches(data, n: int, b: int, count: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(data.y_train), (count, n, b), generator=gen)
    return [(data.x_train[i], data.y_train[i]) for i in idx]


class LoopLearners:
    """The baseline: n separate models, n optimisers, autograd, a Python loop."""

    def __init__(self, cfg: aw.Config, model: aw.MLP):
        import copy

        self.cfg = cfg
        self.models = [copy.deepcopy(model) for _ in range(cfg.n_learners)]
        self.opts = [torch.optim.SGD(m.parameters(), lr=cfg.lr) for m in self.models]
        self.mixing = mixing_matrix(cfg.topology, cfg.n_learners).to(getattr(torch, cfg.dtype))

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        for i, (m, opt) in enumerate(zip(self.models, self.opts)):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x[i]), y[i]).backward()
        if self.cfg.algorithm == "ssgd":
            with torch.no_grad():
                for ps in zip(*(m.parameters() for m in self.models)):
                    mean = torch.stack([p.grad for p in ps]).mean(0)
                    for p in ps:
                        p.grad.copy_(mean)
        for opt in self.opts:
            opt.step()
        if self.cfg.algorithm == "dpsgd":
            with torch.no_grad():
                for ps in zip(*(m.parameters() for m in self.models)):
                    stacked = torch.stack([p.detach() for p in ps])
                    mixed = (self.mixing @ stacked.reshape(len(ps), -1)).view_as(stacked)
                    for p, new in zip(ps, mixed):
                        p.copy_(new)

    def flat(self) -> torch.Tensor:
        return torch.stack(
            [torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in self.models]
        )


def agreement(cfg: aw.Config, data, model: aw.MLP, batches) -> float:
    """Largest parameter difference of the two implementations after 50 steps in float64."""
    cfg64, model64 = cfg.replace(dtype="float64"), model.double()
    vec, loop = Learners(cfg64, model64), LoopLearners(cfg64, model64)
    for k in range(50):
        x, y = batches[k % len(batches)]
        with torch.no_grad():
            vec.step(x.double(), y)
        loop.step(x.double(), y)
    return float((vec.flat - loop.flat()).abs().max())


def time_steps(step, batches, steps: int) -> float:
    start = time.perf_counter()
    for k in range(steps):
        x, y = batches[k % len(batches)]
        step(x, y)
    return (time.perf_counter() - start) / steps


def bench(algorithm: str, n: int, steps: int, rounds: int) -> float:
    cfg = aw.Config.preset("paper").replace(algorithm=algorithm, n_learners=n, topology="ring")
    data = aw.load_data(cfg)
    model = aw.build_model(cfg, data.n_features, data.n_classes)
    batches = make_batches(data, n, cfg.batch_size, 64)
    vec, loop = Learners(cfg, model), LoopLearners(cfg, model)
    vec_step = vec.step
    with torch.no_grad():
        time_steps(vec_step, batches, 20)  # warm-up
    time_steps(loop.step, batches, 20)
    t_vec, t_loop = [], []
    for _ in range(rounds):
        with torch.no_grad():
            t_vec.append(time_steps(vec_step, batches, steps))
        t_loop.append(time_steps(loop.step, batches, steps))
    diff = agreement(cfg, data, model, batches)
    v, lp = statistics.median(t_vec), statistics.median(t_loop)
    ratio = lp / v
    print(
        f"{algorithm:>6} n={n} b={cfg.batch_size}: vectorised {v * 1e6:8.1f} us/step   "
        f"loop {lp * 1e6:8.1f} us/step   ratio {ratio:5.2f}x "
        f"({'ok' if ratio >= TARGET else 'BELOW'} target {TARGET:g}x)   "
        f"max |param diff| after 50 float64 steps {diff:.1e}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--learners", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, 1 thread, median of {args.rounds} rounds x {args.steps} steps"
    )
    ratios = [bench(alg, args.learners, args.steps, args.rounds) for alg in ("dpsgd", "ssgd")]
    print(f"speed-up (min over algorithms): {min(ratios):.2f}x, target >= {TARGET:g}x")


if __name__ == "__main__":
    main()
