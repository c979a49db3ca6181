"""Speed of the Jacobian-lens fit and of applying a J-lens, on the bundled model.

1. Fit time per prompt: logitlens's ``prompt_jacobians`` against a plain implementation
   of the reference estimator written here (the prompt replicated 8 times, one forward
   with frozen weights, the graph retained, then one backward pass per block of 8
   output dimensions, grads w.r.t. all source layers at once), in the same process,
   interleaved round by round, medians; plus the max abs and max relative difference
   between the two ``J``s in fp32, and of each against a float64 run (the model in
   float64, RMSNorm kept in float64) with the same estimator.
   ``--rows 576`` (the default) is the full ``J``; fewer rows are quicker, but the
   reference's forward then weighs more and flatters the ratio.
2. Apply time on W1 (last-position top-10 over all 30 layers, see bench_core.py):
   ``analyze`` with a J-lens against the logit lens, as a median ratio.

Run:  .venv/bin/python benchmarks/bench_jlens.py [--prompts 1] [--rows 576] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.overrides import TorchFunctionMode

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
    weights = list(model.module.parameters())
    for weight in weights:
        weight.requires_grad_(False)
    try:
        with torch.enable_grad():
            model.module(input_ids=ids.expand(dims_per_pass, -1), use_cache=False)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
        for weight in weights:
            weight.requires_grad_(True)
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


def _differences(ours: torch.Tensor, theirs: torch.Tensor) -> str:
    gap = (ours.double() - theirs.double()).abs()
    size = theirs.double().abs()
    relative = (gap / size)[size >= 0.1].max().item()
    return f"max abs {gap.max().item():.1e}, max rel {relative:.1e} (entries >= 0.1)"


def _rms_norm_float64(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """LlamaRMSNorm without its cast to float32, for the float64 check only."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


class _SoftmaxInInputDtype(TorchFunctionMode):
    """Eager attention's softmax without its cast to float32, for the float64 check only."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.softmax and kwargs.get("dtype") == torch.float32:
            kwargs = {**kwargs, "dtype": args[0].dtype}
        return func(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1)
    parser.add_argument("--rows", type=int, default=576, help="rows of J per layer (576: all)")
    parser.add_argument("--dims-per-pass", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--check-rows", type=int, default=16, help="rows for the float64 check")
    parser.add_argument("--apply-rounds", type=int, default=15)
    args = parser.parse_args()

    model = logitlens.load_model()
    model.module.float()
    ids = tokenize_documents(model.tokenizer, bible_documents()[:20], 128)[: args.prompts]
    rows = range(args.rows)

    def ours() -> torch.Tensor:
        return torch.cat(
            [
                prompt_jacobians(
                    model, ids[i : i + args.batch_size], rows=rows, dims_per_pass=args.dims_per_pass
                )
                for i in range(0, len(ids), args.batch_size)
            ]
        )

    def reference() -> torch.Tensor:
        return torch.stack(
            [reference_jacobians(model, ids[i : i + 1], args.rows) for i in range(len(ids))]
        )

    fast_times, plain_times = [], []
    for number in range(args.rounds):
        for method in (reference, ours) if number % 2 == 0 else (ours, reference):
            began = time.perf_counter()
            if method is reference:
                plain = reference()
                plain_times.append((time.perf_counter() - began) / len(ids))
            else:
                fast = ours()
                fast_times.append((time.perf_counter() - began) / len(ids))
        print(f"  round: reference {plain_times[-1]:.1f} s, logitlens {fast_times[-1]:.1f} s")
    fast_time, plain_time = statistics.median(fast_times), statistics.median(plain_times)

    # Agreement: fp32 against fp32, and each against float64 truth (RMSNorm and eager
    # attention's softmax kept in float64: transformers casts both to float32).
    check = range(args.check_rows)
    first = ids[:1]
    fast32 = prompt_jacobians(model, first, rows=check)[0]
    plain32 = reference_jacobians(model, first, args.check_rows)
    from transformers.models.llama import modeling_llama

    original_norm = modeling_llama.LlamaRMSNorm.forward
    modeling_llama.LlamaRMSNorm.forward = _rms_norm_float64
    model.module.double()
    try:
        with _SoftmaxInInputDtype():
            fast64 = prompt_jacobians(model, first, rows=check)[0]
            plain64 = reference_jacobians(model, first, args.check_rows)
    finally:
        modeling_llama.LlamaRMSNorm.forward = original_norm
        model.module.float()
    print(
        f"J-lens fit, bundled SmolLM2-135M fp32, {len(ids)} prompt(s) x 128 tokens, "
        f"{args.rows} of 576 rows per layer, {args.rounds} interleaved rounds, "
        f"{torch.get_num_threads()} threads:"
    )
    print(f"  reference estimator (8 dims per backward): {plain_time:.1f} s/prompt")
    print(
        f"  logitlens ({args.dims_per_pass} dims per vmapped backward, {args.batch_size} "
        f"prompt(s) per forward): {fast_time:.1f} s/prompt"
    )
    print(f"  speed-up {plain_time / fast_time:.2f}x (median of rounds)")
    print(
        f"  agreement ({args.rows} rows fp32; first {args.check_rows} rows of prompt 1 for "
        f"float64), max |J| = {plain.abs().max().item():.1f}:"
    )
    print(f"    fp32 logitlens vs fp32 reference:       {_differences(fast, plain)}")
    print(f"    float64 logitlens vs float64 reference: {_differences(fast64, plain64)}")
    print(f"    fp32 logitlens vs float64:              {_differences(fast32, fast64)}")
    print(f"    fp32 reference vs float64:              {_differences(plain32, plain64)}")

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
