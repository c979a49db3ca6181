"""Tests for logitlens.lenses.imports: tuned-lens folders and Jacobian-lens files.

Files are written here in each tool's own layout; the converted lens is compared with
that tool's formula computed independently (plain hooks from tests/reference.py).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import reference
import torch

import logitlens
from logitlens.errors import LensFileError
from logitlens.lenses import JacobianLens, TunedLens, load_lens
from logitlens.lenses.imports import import_lens

PROMPT = "Why do electricians make good swimmers? Because they know the"


class RunsCode:
    """A pickle payload that runs a shell command when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tuned_lens_folder(tmp_path, model, seed=0, name="tiny", bias=True, extra=None):
    """What tuned-lens's ``TunedLens.save`` writes: config.json and params.pt."""
    hf = model.module
    d_model, n_layers = hf.config.hidden_size, hf.config.num_hidden_layers
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for i in range(n_layers):
        state[f"{i}.weight"] = torch.randn(d_model, d_model, generator=generator) * 0.05
        if bias:
            state[f"{i}.bias"] = torch.randn(d_model, generator=generator) * 0.05
    state.update(extra or {})
    weight = hf.get_output_embeddings().weight.detach().numpy()
    config = {
        "base_model_name_or_path": name,
        "d_model": d_model,
        "num_hidden_layers": n_layers,
        "bias": bias,
        "base_model_revision": None,
        "unembed_hash": hashlib.sha256(str.encode(np.array_str(weight, precision=1))).hexdigest(),
        "lens_type": "linear_tuned_lens",
    }
    folder = tmp_path / f"lens-{name}-{seed}"
    folder.mkdir()
    torch.save(state, folder / "params.pt")
    (folder / "config.json").write_text(json.dumps(config))
    return folder, state


def _top(logits, k=5):
    values, ids = logits.float().log_softmax(-1).topk(k, dim=-1)
    return values.exp().numpy(), ids.numpy()


def _analyze(model, lens):
    return logitlens.analyze(model, PROMPT, lens=lens, positions="all", include_embed=True, k=5)


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma2"])
def test_tuned_lens_folder_gives_the_tuned_lens_formula(wrap_tiny, tmp_path, model_type):
    model = wrap_tiny(model_type)
    folder, state = _tuned_lens_folder(tmp_path, model)
    lens = import_lens(folder, model)
    path = lens.save(tmp_path / "imported.safetensors")
    result = _analyze(model, load_lens(str(path)))
    hf, ids = model.module, torch.tensor([result.token_ids[0]])
    with torch.no_grad():
        # tuned-lens reads hidden_states[i] with translator i: the embedding output, then
        # each layer's output; the last layer has no translator.
        hidden = [reference.embed_residual(hf, ids), *reference.residuals(hf, ids)]
        norm, head = reference.final_norm(hf), hf.get_output_embeddings()
        for row, h in enumerate(hidden):
            h = h[0]
            if row < len(hidden) - 1:
                h = h + h @ state[f"{row}.weight"].T + state[f"{row}.bias"]
            logits = head(norm(h))
            if reference.softcap(hf):
                logits = torch.tanh(logits / reference.softcap(hf)) * reference.softcap(hf)
            probs, top_ids = _top(logits)
            np.testing.assert_array_equal(result.top_ids[0, row], top_ids)
            np.testing.assert_allclose(result.top_probs[0, row], probs, atol=1e-5)


def test_jacobian_lens_file_gives_unembed_of_j_h(wrap_tiny, tmp_path):
    model = wrap_tiny("qwen2")
    generator = torch.Generator().manual_seed(3)
    jacobians = {0: torch.eye(64) + 0.1 * torch.randn(64, 64, generator=generator)}
    path = tmp_path / "lens.pt"
    torch.save(
        {
            "J": {k: v.half() for k, v in jacobians.items()},
            "n_prompts": 12,
            "source_layers": [0],
            "d_model": 64,
            "d_source": 64,
        },
        path,
    )
    lens = import_lens(path, model)
    assert isinstance(lens, JacobianLens) and lens.n_prompts == 12
    assert lens.info["fitted_layers"] == [0]
    result = _analyze(model, lens)
    hf, ids = model.module, torch.tensor([result.token_ids[0]])
    with torch.no_grad():
        h = reference.residuals(hf, ids)[0, 0]
        logits = hf.lm_head(reference.final_norm(hf)(h @ jacobians[0].half().float().T))
    probs, top_ids = _top(logits)
    np.testing.assert_array_equal(result.top_ids[0, 1], top_ids)  # row 1: layer 0
    np.testing.assert_allclose(result.top_probs[0, 1], probs, atol=1e-5)
    logit = _analyze(model, "logit")  # no J for the embedding or layer 1: the logit lens
    np.testing.assert_array_equal(result.top_ids[0, [0, 2]], logit.top_ids[0, [0, 2]])


def test_pickles_that_run_code_are_refused_with_nothing_run(wrap_tiny, tmp_path):
    model = wrap_tiny("llama")
    marker = tmp_path / "pwned"
    folder, _ = _tuned_lens_folder(tmp_path, model, extra={"payload": RunsCode(marker)})
    with pytest.raises(LensFileError, match="never runs pickled code"):
        import_lens(folder, model)
    evil = tmp_path / "evil.pt"
    torch.save({"J": {0: RunsCode(marker)}}, evil)
    with pytest.raises(LensFileError, match="not a plain file of tensors"):
        import_lens(evil, model)
    assert not marker.exists()


def test_lens_for_another_model_is_refused_naming_both(wrap_tiny, tmp_path):
    llama, gpt2 = wrap_tiny("llama"), wrap_tiny("gpt2")
    folder, _ = _tuned_lens_folder(tmp_path, gpt2, name="gpt2-tiny")
    with pytest.raises(LensFileError, match=r"for 'gpt2-tiny'.*unembedding differs.*llama"):
        import_lens(folder, llama)
    assert isinstance(import_lens(folder, llama, check_hash=False), TunedLens)  # same sizes
    other_size = wrap_tiny("opt-project_out")
    torch.save({"J": {5: torch.eye(32)}, "n_prompts": 1}, tmp_path / "j.pt")
    with pytest.raises(LensFileError, match=r"layers 5\.\.5, not for .*opt"):
        import_lens(tmp_path / "j.pt", other_size)
    (folder / "config.json").write_text(json.dumps({"d_model": 64, "num_hidden_layers": 7}))
    with pytest.raises(LensFileError, match=r"7 layers, d_model 64.*not for .*llama"):
        import_lens(folder, llama)


def test_bad_sources_are_clear_errors(wrap_tiny, tmp_path):
    model = wrap_tiny("llama")
    with pytest.raises(LensFileError, match="No lens at"):
        import_lens(tmp_path / "missing", model)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(LensFileError, match="no key 'J'"):
        import_lens(tmp_path / "x.pt", model)
    folder, state = _tuned_lens_folder(tmp_path, model, bias=False)
    assert import_lens(folder, model).bias.count_nonzero() == 0
    del state["0.weight"]
    torch.save(state, folder / "params.pt")
    with pytest.raises(LensFileError, match=r"missing \['0\.weight'\]"):
        import_lens(folder, model)
