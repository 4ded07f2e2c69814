"""Does ``torch.compile`` make the U-Net faster on this machine? (issue 11, section 1)

    python benchmarks/bench_compile.py [--features 16] [--steps 10] [--device cpu]

Times, in one run, a training step (forward, weighted cross-entropy, backward,
SGD) and an inference forward pass of the paper's network on a 572 tile, eager
and compiled with ``torch.compile`` (inductor), in the order eager, compiled,
eager, compiled, so that load on the machine hits both alike. Also prints the
compile time and the largest difference of the outputs (the compiled graph
must compute the same function to about 1e-5). The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time

import torch


def main(argv: list[str] | None = None) -> dict:
    from biounet.device import make_runtime
    from biounet.network.unet import UNet, UNetConfig
    from biounet.training.loss import weighted_cross_entropy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round [10]")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    runtime = make_runtime(args.device)
    torch.manual_seed(0)
    eager = runtime.prepare(UNet(UNetConfig(features=args.features, dropout=0.0)))
    model = copy.deepcopy(eager)
    x = runtime.tensor(torch.rand(1, 1, 572, 572))
    y = torch.randint(0, 2, (1, 388, 388), device=runtime.device)
    w = torch.rand(1, 388, 388, device=runtime.device)

    def train_step(net, optimizer):
        with runtime.autocast():
            loss = weighted_cross_entropy(net(x), y, w)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def forward(net):
        with torch.inference_mode(), runtime.autocast():
            return net(x)

    with torch.no_grad():
        reference = eager.eval()(x)
    t = time.perf_counter()
    compiled = torch.compile(model)
    with torch.no_grad():
        out = compiled.eval()(x)
    forward(compiled)  # inference mode compiles its own graph
    forward(eager)
    compile_forward_s = time.perf_counter() - t
    diff = float((out - reference).abs().max())
    opt_eager = torch.optim.SGD(eager.parameters(), lr=1e-4, momentum=0.99)
    opt_comp = torch.optim.SGD(compiled.parameters(), lr=1e-4, momentum=0.99)
    eager.train(), compiled.train()
    t = time.perf_counter()
    train_step(compiled, opt_comp)
    compile_train_s = time.perf_counter() - t
    train_step(eager, opt_eager)

    def timed(fn) -> float:
        if runtime.is_cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(args.steps):
            fn()
        if runtime.is_cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / args.steps * 1e3

    rounds = {"train_eager": [], "train_compiled": [], "fwd_eager": [], "fwd_compiled": []}
    for _ in range(2):
        eager.train(), compiled.train()
        rounds["train_eager"].append(timed(lambda: train_step(eager, opt_eager)))
        rounds["train_compiled"].append(timed(lambda: train_step(compiled, opt_comp)))
        eager.eval(), compiled.eval()
        rounds["fwd_eager"].append(timed(lambda: forward(eager)))
        rounds["fwd_compiled"].append(timed(lambda: forward(compiled)))
    result = {k: round(statistics.mean(v), 1) for k, v in rounds.items()}
    result.update(
        device=runtime.describe(),
        torch=torch.__version__,
        features=args.features,
        compile_forward_s=round(compile_forward_s, 1),
        compile_train_s=round(compile_train_s, 1),
        max_abs_diff=diff,
        train_speedup=round(result["train_eager"] / result["train_compiled"], 3),
        forward_speedup=round(result["fwd_eager"] / result["fwd_compiled"], 3),
    )
    print(
        f"{runtime.describe()}, features={args.features}, 572 tile: training step "
        f"{result['train_eager']} ms eager, {result['train_compiled']} ms compiled "
        f"(x{result['train_speedup']}); forward {result['fwd_eager']} ms eager, "
        f"{result['fwd_compiled']} ms compiled (x{result['forward_speedup']}); compiling took "
        f"{compile_forward_s:.0f} s + {compile_train_s:.0f} s; max |compiled - eager| = {diff:.1e}"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
