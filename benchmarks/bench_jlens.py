"""Speed of the Jacobian-lens fit and of applying a J-lens, on the bundled model.

1. Fit time per prompt: logitlens's ``prompt_jacobians`` (one forward per batch of
   prompts, vmapped backward passes over blocks of output dimensions) against a plain
   implementation of the reference estimator written here (the prompt replicated 8
   times, one forward, then one backward pass per block of 8 output dimensions), in
   the same run, interleaved, on the same prompts; and the max abs difference between
   the two ``J``s. Both run in fp32 with the graph starting at the embedding output.
   A full ``J`` needs 576 backward rows per prompt (minutes on 2 CPU cores), so by
   default both compute the first ``--rows`` rows of every layer's ``J``; per-row cost
   is the same for every row, so the ratio carries over.
2. Apply time on W1 (last-position top-10 over all 30 layers, see bench_core.py):
   ``analyze`` with a J-lens against the logit lens, as a median ratio.

Run:  .venv/bin/python benchmarks/bench_jlens.py [--prompts 4] [--rows 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import logitlens
from logitlens.architectures import resolve
from logitlens.lenses import JacobianLens
from logitlens.lenses.files import model_fingerprint
from logitlens.residuals import layer_output
from logitlens.training.corpus import bible_documents, tokenize_documents
from logitlens.training.jacobian import SKIP_FIRST, prompt_jacobians

PUN = "Why do electricians make good swimmers? Because they know the"


class _Stop(Exception):
    pass


def reference_jacobians(
    model: logitlens.LensModel, ids: torch.Tensor, rows: int, dims_per_pass: int = 8
) -> torch.Tensor:
    """The reference estimator, plainly: ``[n_sources, rows, d]`` for one prompt ``[1, S]``."""
    layers = resolve(model.module, model.architecture.layers)
    target = model.n_layers - 1
    captured: list[torch.Tensor] = []

    def leaf(module, args, kwargs):
        hidden = (args[0] if args else kwargs["hidden_states"]).detach().requires_grad_(True)
        captured.append(hidden)
        return (
            ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})
        )

    def keep(module, args, output):
        captured.append(layer_output(output))
        if len(captured) == target + 2:
            raise _Stop

    handles = [layers[0].register_forward_pre_hook(leaf, with_kwargs=True)]
    handles += [layer.register_forward_hook(keep) for layer in layers]
    try:
        with torch.enable_grad():
            model.module(input_ids=ids.expand(dims_per_pass, -1), use_cache=False)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    sources, output = captured[:-1], captured[-1]
    valid = torch.arange(SKIP_FIRST, ids.shape[1] - 1)
    result = torch.empty(len(sources), rows, output.shape[-1], dtype=output.dtype)
    cotangent = torch.zeros_like(output)
    starts = range(0, rows, dims_per_pass)
    for number, start in enumerate(starts):
        count = min(dims_per_pass, rows - start)
        cotangent.zero_()
        for b in range(count):
            cotangent[b, valid, start + b] = 1.0
        grads = torch.autograd.grad(
            output, sources, grad_outputs=cotangent, retain_graph=number < len(starts) - 1
        )
        for slot, grad in enumerate(grads):
            result[slot, start : start + count] = grad[:count, valid].mean(1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--rows", type=int, default=64, help="rows of J per layer (576: all)")
    parser.add_argument("--dims-per-pass", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--apply-rounds", type=int, default=15)
    args = parser.parse_args()

    model = logitlens.load_model()
    model.module.float()
    ids = tokenize_documents(model.tokenizer, bible_documents()[:20], 128)[: args.prompts]
    rows = range(args.rows)

    fast_times, plain_times, max_diff = [], [], 0.0
    for _ in range(args.rounds):
        began = time.perf_counter()
        fast = torch.cat(
            [
                prompt_jacobians(
                    model, ids[i : i + args.batch_size], rows=rows, dims_per_pass=args.dims_per_pass
                )
                for i in range(0, len(ids), args.batch_size)
            ]
        )
        fast_times.append((time.perf_counter() - began) / len(ids))
        began = time.perf_counter()
        plain = torch.stack(
            [reference_jacobians(model, ids[i : i + 1], args.rows) for i in range(len(ids))]
        )
        plain_times.append((time.perf_counter() - began) / len(ids))
        max_diff = max(max_diff, (fast - plain).abs().max().item())
    fast_time, plain_time = statistics.median(fast_times), statistics.median(plain_times)
    # fp32 rounding differs between any two orders of the same sums (J entries reach
    # ~130 here); in float64 the difference shrinks to what transformers' RMSNorm, which
    # computes in float32 whatever the model's dtype, leaves.
    model.module.double()
    fast64 = prompt_jacobians(model, ids[:1], rows=range(8), dims_per_pass=8)
    plain64 = reference_jacobians(model, ids[:1], 8)
    diff64 = (fast64[0] - plain64).abs().max().item()
    model.module.float()
    print(
        f"J-lens fit, bundled SmolLM2-135M fp32, {len(ids)} prompts x 128 tokens, "
        f"{args.rows} of 576 rows per layer, {args.rounds} rounds, "
        f"{torch.get_num_threads()} threads:"
    )
    print(f"  reference estimator (8 dims per backward): {plain_time:.2f} s/prompt")
    print(
        f"  logitlens ({args.dims_per_pass} dims per vmapped backward, {args.batch_size} "
        f"prompts per forward): {fast_time:.2f} s/prompt"
    )
    print(
        f"  speed-up {plain_time / fast_time:.2f}x, max |J diff| = {max_diff:.2e} in fp32 "
        f"(max |J| = {plain.abs().max().item():.1f}); in float64 (8 rows, 1 prompt): "
        f"{diff64:.1e}"
    )
    print(
        f"  full J (576 rows) estimate: {fast_time * 576 / args.rows:.0f} s/prompt "
        f"(reference {plain_time * 576 / args.rows:.0f} s/prompt)"
    )

    fingerprint = model_fingerprint(model)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(31, 576, 576, generator=generator) * 0.01
    lens = JacobianLens.from_jacobians(torch.eye(576) + noise, fingerprint)
    logitlens.analyze(model, PUN, lens=lens)  # warm-up
    logitlens.analyze(model, PUN, lens="logit")
    ratios = []
    for _ in range(args.apply_rounds):
        began = time.perf_counter()
        logitlens.analyze(model, PUN, lens="logit")
        logit_time = time.perf_counter() - began
        began = time.perf_counter()
        logitlens.analyze(model, PUN, lens=lens)
        ratios.append((time.perf_counter() - began) / logit_time)
    print(
        f"J-lens apply on W1 (last-position top-10, all 30 layers): "
        f"{statistics.median(ratios):.2f}x the logit lens "
        f"(median of {args.apply_rounds} interleaved rounds)"
    )


if __name__ == "__main__":
    main()
