"""Tests for logitlens.training: the loss, determinism, checkpoints and bad input."""

from __future__ import annotations

import pytest
import torch

from logitlens.errors import InputError
from logitlens.lenses import TunedLens
from logitlens.training.corpus import bible_documents
from logitlens.training.tuned import (
    StepReport,
    TrainingConfig,
    checkpoint_path_for,
    train_tuned_lens,
)

DOCUMENTS = bible_documents()[:150]
SMALL = TrainingConfig(tokens=6 * 4 * 32, seq_len=32, batch_size=4, lr=3e-3, checkpoint_every=2)


def _train(model, path, config=SMALL, **kwargs) -> TunedLens:
    return train_tuned_lens(model, path, config, documents=DOCUMENTS, progress=False, **kwargs)


def test_training_lowers_the_loss_and_keeps_the_last_layer_identity(wrap_tiny, tmp_path):
    model = wrap_tiny("llama")
    lens = _train(model, tmp_path / "lens.safetensors")
    losses = lens.info["losses"]
    assert len(losses) == SMALL.steps == 6
    assert losses[-1] < losses[0]
    assert lens.weight[-1].abs().max() == 0 and lens.bias[-1].abs().max() == 0
    assert lens.weight[0].abs().max() > 0  # the embedding's translator is trained
    assert not lens.weight.requires_grad
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lens.safetensors"]
    assert torch.equal(TunedLens.load(lens.path).weight, lens.weight)


def test_same_seed_same_lens_other_seed_other_lens(wrap_tiny, tmp_path):
    model = wrap_tiny("gpt2")
    first = _train(model, tmp_path / "a.safetensors")
    again = _train(model, tmp_path / "b.safetensors")
    other = _train(model, tmp_path / "c.safetensors", TrainingConfig(**{**vars(SMALL), "seed": 1}))
    assert torch.equal(first.weight, again.weight)
    assert not torch.equal(first.weight, other.weight)


def test_resume_after_interruption_gives_the_uninterrupted_result(wrap_tiny, tmp_path):
    model = wrap_tiny("llama")
    whole = _train(model, tmp_path / "whole.safetensors")
    path = tmp_path / "resumed.safetensors"

    def interrupt(report: StepReport) -> None:
        if report.step == 3:  # mid-way, between two periodic checkpoints
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(model, path, on_step=interrupt)
    assert checkpoint_path_for(path).is_file() and not path.exists()
    resumed = _train(model, path)
    assert torch.equal(resumed.weight, whole.weight) and torch.equal(resumed.bias, whole.bias)
    assert resumed.info["losses"] == whole.info["losses"]
    assert not checkpoint_path_for(path).exists()


def test_a_checkpoint_from_other_options_is_refused(wrap_tiny, tmp_path):
    model = wrap_tiny("llama")
    path = tmp_path / "lens.safetensors"
    with pytest.raises(KeyboardInterrupt):
        _train(model, path, on_step=lambda report: (_ for _ in ()).throw(KeyboardInterrupt))
    changed = TrainingConfig(**{**vars(SMALL), "lr": 1e-4})
    with pytest.raises(InputError, match=r"different run.*lr"):
        _train(model, path, changed)
    assert len(_train(model, path, changed, resume=False).info["losses"]) == SMALL.steps


def test_schedules():
    config = TrainingConfig(tokens=10 * 128 * 4, lr=1.0, warmup_steps=2)
    assert [round(config.learning_rate(s), 3) for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 0.125]
    cosine = TrainingConfig(tokens=10 * 128 * 4, lr=1.0, schedule="cosine")
    assert cosine.learning_rate(0) == 1.0 and cosine.learning_rate(5) == pytest.approx(0.5)
    assert TrainingConfig(schedule="constant").learning_rate(7) == TrainingConfig().lr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tokens": 0}, "token budget must be positive"),
        ({"tokens": 100}, "smaller than one batch"),
        ({"schedule": "step"}, "Unknown schedule"),
        ({"dtype": "int8"}, "Unknown dtype"),
    ],
)
def test_bad_options_are_clear_errors(wrap_tiny, tmp_path, options, message):
    with pytest.raises(InputError, match=message):
        _train(wrap_tiny("llama"), tmp_path / "l.safetensors", TrainingConfig(**options))
    assert list(tmp_path.iterdir()) == []


def test_bad_corpora_are_clear_errors(wrap_tiny, tmp_path):
    model = wrap_tiny("llama")
    out = tmp_path / "out" / "l.safetensors"
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(InputError, match="empty"):
        train_tuned_lens(model, out, TrainingConfig(corpus=str(tmp_path / "empty.txt")))
    tiny_corpus = [f"number {i}" for i in range(100)]
    big_batches = TrainingConfig(tokens=4096, seq_len=64, batch_size=16)
    with pytest.raises(InputError, match="less than one batch"):
        train_tuned_lens(model, out, big_batches, documents=tiny_corpus, progress=False)
    with pytest.raises(InputError, match=r"\.safetensors"):
        train_tuned_lens(model, tmp_path / "lens.pt", SMALL, documents=DOCUMENTS)
    assert not (tmp_path / "out").exists()


def test_cli_train_eval_and_tuned_analysis(tmp_path):
    """`logitlens tuned train`, `tuned eval` and `top --lens tuned` on a tiny model dir."""
    from tiny_models import tiny_model
    from typer.testing import CliRunner

    from logitlens.cli import app

    hf_model, tokenizer = tiny_model("llama")
    model_dir = tmp_path / "tiny"
    hf_model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (tmp_path / "texts").mkdir()
    for index, document in enumerate(DOCUMENTS[:60]):
        (tmp_path / "texts" / f"{index}.txt").write_text(document)
    lens_path = tmp_path / "lens.safetensors"
    runner = CliRunner()
    common = ["--model", str(model_dir), "--corpus", str(tmp_path / "texts"), "--seq-len", "32"]
    trained = runner.invoke(
        app, ["tuned", "train", *common, "-o", str(lens_path), "--tokens", "256", "--device", "cpu"]
    )
    assert trained.exit_code == 0, trained.output
    assert lens_path.is_file()
    evaluated = runner.invoke(
        app, ["tuned", "eval", *common, "--tuned-path", str(lens_path), "--tokens", "64", "--json"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    import json

    payload = json.loads(evaluated.output)
    assert payload["lenses"] == ["raw", "logit", "tuned"]
    shown = runner.invoke(
        app,
        [
            "top",
            "hello there",
            "-m",
            str(model_dir),
            "--lens",
            "tuned",
            "--tuned-path",
            str(lens_path),
            "--json",
        ],
    )
    assert shown.exit_code == 0, shown.output
    missing = runner.invoke(
        app, ["top", "hi", "-m", str(model_dir), "--lens", "tuned", "--tuned-path", "nope.st"]
    )
    assert missing.exit_code != 0
