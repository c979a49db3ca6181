"""``run_doctor`` and ``logitlens doctor``: pass on every family, fail usefully on a bad adapter."""

from __future__ import annotations

import dataclasses
import json

import pytest
from tiny_models import MULTI_TOKEN_WORD, TINY_MODEL_TYPES, tiny_config
from typer.testing import CliRunner

from logitlens import architectures, doctor
from logitlens.architectures import get_architecture, register, supported_model_types
from logitlens.cli import app, doctor_commands
from logitlens.doctor import DoctorReport, run_doctor
from logitlens.errors import InputError, UnsupportedArchitectureError

CHECKS = ["adapter", "last layer", "padding", "final norm", "remote", "sub-layers"]


def test_every_registered_family_has_a_tiny_model():
    covered = {tiny_config(model_type).model_type for model_type in TINY_MODEL_TYPES}
    assert set(supported_model_types()) <= covered


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_passes_on_every_family(model_type, wrap_tiny):
    report = run_doctor(wrap_tiny(model_type))
    assert [check.name for check in report.checks] == CHECKS
    assert report.passed, report.failures
    assert report.model_type == tiny_config(model_type).model_type


def test_softcap_and_missing_final_norm_are_named(wrap_tiny):
    gemma2 = {c.name: c for c in run_doctor(wrap_tiny("gemma2")).checks}
    assert "soft-cap 3 included" in gemma2["last layer"].detail
    post_ln = {c.name: c for c in run_doctor(wrap_tiny("opt-post_ln")).checks}
    assert post_ln["final norm"].passed and "no final norm" in post_ln["final norm"].detail


@pytest.mark.bundled
def test_passes_on_the_bundled_model(bundled):
    report = run_doctor(bundled)
    assert report.passed, report.failures
    assert bundled.remote is False  # the remote check worked on a copy


# ----- wrong adapters ---------------------------------------------------------------------------


@pytest.fixture
def misregister(monkeypatch):
    """``misregister(model_type, **changes)``: a changed adapter, in a scratch registry."""
    monkeypatch.setattr(architectures, "_REGISTRY", dict(architectures._REGISTRY))

    def change(model_type: str, **changes) -> None:
        config = tiny_config(model_type)
        register(dataclasses.replace(get_architecture(config), **changes))

    return change


def _failures(report: DoctorReport) -> dict[str, doctor.Check]:
    assert not report.passed
    return {check.name: check for check in report.failures}


def test_wrong_final_norm_is_named_with_the_right_one(misregister, wrap_tiny):
    misregister("llama", final_norm="model.layers.0.input_layernorm")
    failures = _failures(run_doctor(wrap_tiny("llama")))
    assert list(failures) == ["last layer"]  # the wrong norm is applied consistently elsewhere
    check = failures["last layer"]
    assert "final_norm path 'model.layers.0.input_layernorm' resolves to the wrong module" in (
        check.detail
    )
    assert check.fix == "Fix register(...): final_norm='model.norm'."


def test_misspelt_final_norm(misregister, wrap_tiny):
    misregister("gpt2", final_norm="transformer.ln_x")
    failures = _failures(run_doctor(wrap_tiny("gpt2")))
    assert "has no 'ln_x'" in failures["adapter"].detail
    assert failures["last layer"].fix == "Fix register(...): final_norm='transformer.ln_f'."
    assert "the logit lens is the raw lens" in failures["final norm"].detail


@pytest.mark.parametrize("unembed", ["model.embed_tokens", "model.layers.1.mlp.down_proj"])
def test_wrong_unembed_is_named_with_the_right_one(misregister, wrap_tiny, unembed):
    misregister("llama", unembed=unembed)
    report = run_doctor(wrap_tiny("llama"))  # the lens crashes; the doctor does not
    check = _failures(report)["last layer"]
    assert f"unembed path {unembed!r}" in check.detail
    assert "does not produce the model's logits" in check.detail
    assert check.fix == "Fix register(...): unembed='lm_head'."
    later = [c for c in report.failures if c.name not in ("adapter", "last layer")]
    assert later and all(
        "same" in c.detail or "same cause as" in c.fix for c in later
    )  # one cause, said once


def test_missing_softcap(misregister, wrap_tiny):
    misregister("gemma2", logit_softcap=None)
    check = _failures(run_doctor(wrap_tiny("gemma2")))["last layer"]
    assert "config.final_logit_softcapping" in check.detail
    assert "logit_softcap ('final_logit_softcapping')" in check.fix


def test_missing_projection_before_the_unembedding(misregister, wrap_tiny):
    misregister("opt", pre_unembed=())
    check = _failures(run_doctor(wrap_tiny("opt-project_out")))["last layer"]
    assert check.fix == "Fix register(...): pre_unembed=('model.decoder.project_out',)."


def _skew(monkeypatch, when):
    """Make ``analyze`` report other probabilities whenever ``when(model, prompts)``."""
    real = doctor.analyze

    def skewed(model, prompts, **kwargs):
        result = real(model, prompts, **kwargs)
        if when(model, prompts):
            result.top_probs = result.top_probs * 0.9
        return result

    monkeypatch.setattr(doctor, "analyze", skewed)


def test_padding_difference_fails(monkeypatch, wrap_tiny):
    # nnsight supplies mask-derived position ids itself, so a real model cannot be made
    # to fail here: skew the batched runs instead.
    _skew(monkeypatch, lambda model, prompts: isinstance(prompts, list) and model.remote is False)
    failures = _failures(run_doctor(wrap_tiny("llama")))
    assert "padding" in failures and "batch_size=1" in failures["padding"].fix


def test_remote_difference_fails(monkeypatch, wrap_tiny):
    _skew(monkeypatch, lambda model, prompts: model.remote == "local")
    assert list(_failures(run_doctor(wrap_tiny("llama")))) == ["remote"]


# ----- targets ----------------------------------------------------------------------------------


def _items_file(tmp_path, target):
    path = tmp_path / "items.jsonl"
    records = [
        {
            "id": "fact-1",
            "category": "fact",
            "prompt": "The capital of France is",
            "target": " Paris",
        },
        {"id": "pun-1", "category": "pun", "prompt": "They know the", "target": target},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_targets_of_a_study_file(tmp_path, wrap_tiny):
    model = wrap_tiny("llama")
    good = run_doctor(model, _items_file(tmp_path, " current"))
    assert good.passed and good.checks[-1].name == "targets"
    assert "all 2 targets" in good.checks[-1].detail
    check = _failures(run_doctor(model, _items_file(tmp_path, MULTI_TOKEN_WORD)))["targets"]
    assert repr(MULTI_TOKEN_WORD) in check.detail and "pun-1 target" in check.detail
    assert "dataset check" in check.fix


def test_targets_of_a_compare_file(tmp_path, wrap_tiny):
    path = tmp_path / "pairs.jsonl"
    lines = [{"prompt": "a b", "target": " Paris"}, {"prompt": "c", "target": MULTI_TOKEN_WORD}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    check = _failures(run_doctor(wrap_tiny("llama"), path))["targets"]
    assert "1 of 2 words" in check.detail and "line 2 target" in check.detail


def test_an_unreadable_targets_file_is_an_error(tmp_path, wrap_tiny):
    path = tmp_path / "notes.jsonl"
    path.write_text("not json\n")
    with pytest.raises(InputError, match=r"notes\.jsonl:1"):
        run_doctor(wrap_tiny("llama"), path)


# ----- the command ------------------------------------------------------------------------------


def _cli(monkeypatch, model, *args):
    monkeypatch.setattr(doctor_commands, "open_model", lambda *a, **k: model)
    return CliRunner().invoke(app, ["doctor", *args])


def test_command_table_and_exit_code_zero(monkeypatch, wrap_tiny):
    result = _cli(monkeypatch, wrap_tiny("llama"))
    assert result.exit_code == 0, result.output
    for name in CHECKS:
        assert name in result.output
    assert "All checks passed." in result.output


def test_command_json_and_exit_code_one(monkeypatch, misregister, wrap_tiny):
    misregister("llama", final_norm="model.layers.0.input_layernorm")
    result = _cli(monkeypatch, wrap_tiny("llama"), "--json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["passed"] is False and payload["model_type"] == "llama"
    failed = [c for c in payload["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["last layer"]
    assert failed[0]["fix"] == "Fix register(...): final_norm='model.norm'."


def test_command_checks_the_targets_file_before_loading(monkeypatch, tmp_path):
    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(doctor_commands, "open_model", never)
    result = CliRunner().invoke(app, ["doctor", "--targets", str(tmp_path / "none.jsonl")])
    assert isinstance(result.exception, InputError)


def test_unknown_model_type_points_to_the_doctor():
    with pytest.raises(UnsupportedArchitectureError, match="logitlens doctor"):
        get_architecture("not_a_real_model")


def test_main_exits_one_when_a_check_fails(monkeypatch, misregister, wrap_tiny):
    from logitlens.cli import main

    misregister("llama", final_norm="model.layers.0.input_layernorm")
    monkeypatch.setattr(doctor_commands, "open_model", lambda *a, **k: wrap_tiny("llama"))
    with pytest.raises(SystemExit) as exit_info:
        main(["doctor", "--json"])
    assert exit_info.value.code == 1


def test_wrong_sublayer_paths_are_named(monkeypatch, wrap_tiny):
    from dataclasses import replace

    model = wrap_tiny("llama")
    entry = model.architecture.sublayers
    for wrong in (
        replace(entry, mlp_out="post_attention_layernorm"),  # does not rebuild the stream
        replace(entry, resid_mid="mlp.down_proj"),  # not the residual after attention
    ):
        broken = replace(model, architecture=replace(model.architecture, sublayers=wrong))
        check = next(c for c in run_doctor(broken).checks if c.name == "sub-layers")
        assert not check.passed, check
        assert "Sublayers" in check.fix or "Sublayers" in check.detail, check
