"""The learned generator on the CPU: shapes, training, the adversarial game, checkpoints, inference plumbing.

Tiny configurations (``neural.config.tiny_config``) keep each test to seconds; the synthetic crops come from
``neural.data.SyntheticSampler``. GPU-only checks are marked ``gpu`` and skip without CUDA.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the learned generator needs torch (pip install -e '.[neural]')")
pytest.importorskip("safetensors", reason="checkpoints need safetensors (pip install -e '.[neural]')")

from retarget.errors import RetargetError
from retarget.neural import checkpoint
from retarget.neural.au_classifier import classifier_loss, confusion_loss
from retarget.neural.config import ModelConfig, from_dict, load_config_file, tiny_config
from retarget.neural.data import SyntheticSampler
from retarget.neural.model import build
from retarget.neural.train import (
    Batch,
    _classifier_step,
    make_trainer,
    read_log,
    run,
    to_batch,
    train_step,
)

CPU = torch.device("cpu")


def _random_batch(size: int, n: int = 4, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(n, 3, size, size, generator=g) * 2 - 1 for _ in range(3)]
    aus = [torch.rand(n, 17, generator=g) * 5 for _ in range(3)]
    return Batch(*images, *aus)


@pytest.mark.parametrize("size", [256, 512])
def test_shapes_hold_at_256_and_512(size: int) -> None:
    config = tiny_config(size).model
    net, disc = build(config)
    x = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        features = net.appearance(x)
        expression, aus = net.expression(x)
        out = net.swap(x, x.flip(0), torch.zeros(2, 17))
        scored = disc(out.image)
    assert [f.shape[-1] for f in features] == [size // 2 ** k for k in range(config.depth + 1)]
    assert expression.shape == (2, config.expression_dim) and aus.shape == (2, 17)
    assert float(aus.min()) >= 0 and float(aus.max()) <= 5
    assert out.image.shape == out.warped.shape == out.residual.shape == (2, 3, size, size)
    assert out.flow.shape == (2, size, size, 2) and out.mask.shape == (2, 1, size, size)
    assert len(scored) == config.discriminator_scales


def test_default_model_shapes_at_256() -> None:
    config = ModelConfig()
    net, _ = build(config)
    with torch.no_grad():
        features = net.appearance(torch.zeros(1, 3, 256, 256))
    assert features[-1].shape[-2:] == (8, 8)  # the AU-free feature of a 256 crop


def test_untrained_generator_starts_as_the_identity_warp() -> None:
    net, _ = build(tiny_config(64).model)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        out = net.swap(x, x, torch.zeros(2, 17))
    assert float(out.flow.abs().max()) == 0.0  # zero-initialised flow head
    assert torch.allclose(out.warped, x, atol=1e-5)


def test_reconstruction_loss_falls_on_synthetic_crops(tmp_path: Path) -> None:
    config = replace(tiny_config(64, steps=40), log_every=1)
    result = run(SyntheticSampler(size=64, seed=1), tmp_path / "ckpt", config, device=CPU, progress=False)
    recon = np.array([row["reconstruction"] for row in result.losses])
    assert len(recon) == 40
    assert recon[-8:].mean() < 0.8 * recon[:8].mean(), recon.round(3)


def test_training_writes_checkpoint_log_and_samples(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    result = run(SyntheticSampler(size=64, seed=2), out, tiny_config(64, steps=6), device=CPU, progress=False)
    assert result.last_step == 6
    for name in ("model.safetensors", "config.json", "optimizer.safetensors", "training.json", "log.csv"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind
    log = read_log(out / "log.csv")
    assert list(log["step"]) == [5, 6] and np.isfinite(log["generator_total"]).all()
    from PIL import Image

    grid = np.asarray(Image.open(result.samples[-1]))
    assert grid.shape == (4 * 64, 6 * 64, 3)  # rows: samples; columns: source, target, recon, other, swap, back
    assert grid.std() > 5


def test_resume_continues_from_the_saved_step(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    config = tiny_config(64, steps=4)
    run(SyntheticSampler(size=64, seed=3), out, config, device=CPU, progress=False)
    _, _, _, step = checkpoint.load(out)
    assert step == 4
    saved = {k: v.clone() for k, v in _optimizer_tensors(out).items()}
    resumed = run(SyntheticSampler(size=64, seed=3), out, replace(config, steps=7), device=CPU, progress=False)
    assert (resumed.first_step, resumed.last_step) == (4, 7)
    assert list(read_log(out / "log.csv")["step"]) == [4, 5, 7]  # log_every 5, plus the last step of each run
    after = _optimizer_tensors(out)
    assert after.keys() == saved.keys()
    # Adam's step counters carried on from 4 rather than restarting at 0
    steps = [float(v) for k, v in after.items() if k.startswith("generator/") and k.endswith("/step")]
    assert steps and all(s == 7 for s in steps)


class _InterruptedSampler:
    """Raises KeyboardInterrupt (a user's Ctrl-C) on its ``at``-th batch."""

    def __init__(self, at: int) -> None:
        self.inner, self.at, self.calls = SyntheticSampler(size=64, seed=6), at, 0
        self.size = 64

    def sample(self, batch: int):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.inner.sample(batch)


def test_ctrl_c_keeps_the_steps_done(tmp_path: Path) -> None:
    config = tiny_config(64, steps=10)  # checkpoint_every 10: only the interrupt writes one before the end
    with pytest.raises(KeyboardInterrupt):
        run(_InterruptedSampler(at=4), tmp_path, config, device=CPU, progress=False)
    _, _, _, step = checkpoint.load(tmp_path)
    assert step == 3
    resumed = run(SyntheticSampler(size=64, seed=6), tmp_path, replace(config, steps=5), device=CPU, progress=False)
    assert (resumed.first_step, resumed.last_step) == (3, 5)


def test_resume_drops_log_rows_of_steps_it_redoes(tmp_path: Path) -> None:
    config = replace(tiny_config(64, steps=4), log_every=1, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):  # interrupted in step 4: steps 1-3 logged, the checkpoint says 3
        run(_InterruptedSampler(at=4), tmp_path, config, device=CPU, progress=False)
    from retarget.neural.train import trim_log

    trim_log(tmp_path / "log.csv", 2)  # as if the last checkpoint were step 2
    assert list(read_log(tmp_path / "log.csv")["step"]) == [1, 2]


def test_init_starts_a_new_run_from_existing_weights(tmp_path: Path) -> None:
    """Fine-tuning: --init takes the weights (and so the architecture) of another checkpoint, new optimizers."""
    base = replace(tiny_config(64, steps=2), model=replace(tiny_config(64).model, expression_dim=24))
    run(SyntheticSampler(size=64, seed=7), tmp_path / "base", base, device=CPU, progress=False)
    start_net, _, _, _ = checkpoint.load(tmp_path / "base")
    tuned = run(SyntheticSampler(size=64, seed=7), tmp_path / "tuned", tiny_config(64, steps=1),
                init=tmp_path / "base", device=CPU, progress=False)
    assert (tuned.first_step, tuned.last_step) == (0, 1)
    net, _, config, _ = checkpoint.load(tmp_path / "tuned")
    assert config.model.expression_dim == 24  # the initial weights' architecture, not the new config's
    start = start_net.state_dict()
    change = max(float((v - start[k]).abs().max()) for k, v in net.state_dict().items() if v.is_floating_point())
    assert 0 < change < 5e-3  # one Adam step (lr 2e-4) away from those weights, not a fresh initialisation


def _optimizer_tensors(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / checkpoint.OPTIMIZER_FILE))


def test_saved_and_reloaded_checkpoint_gives_bit_identical_outputs(tmp_path: Path) -> None:
    config = tiny_config(64, steps=3)
    run(SyntheticSampler(size=64, seed=4), tmp_path / "a", config, device=CPU, progress=False)
    net, _, _, _ = checkpoint.load(tmp_path / "a")
    checkpoint.save(tmp_path / "b", net, build(config.model)[1], config, 3)
    again, _, _, _ = checkpoint.load(tmp_path / "b")
    x = _random_batch(64)
    with torch.no_grad():
        first = net.eval().swap(x.source, x.other, x.other_aus - x.source_aus).image
        second = again.eval().swap(x.source, x.other, x.other_aus - x.source_aus).image
    assert torch.equal(first, second)


class _Payload:
    """Unpickling this object would create a file: proof that a loader unpickled something."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_crafted_pickle_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    config = tiny_config(64)
    good = tmp_path / "good"
    net, disc = build(config.model)
    checkpoint.save(good, net, disc, config, 0)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((good / "config.json").read_text())
    marker = tmp_path / "unpickled"
    (bad / "model.safetensors").write_bytes(pickle.dumps({"net.weights": _Payload(marker)}))
    with pytest.raises(RetargetError, match="safetensors"):
        checkpoint.load(bad)
    assert not marker.exists()
    torch.save(net.state_dict(), bad / "model.safetensors")  # torch's zip-pickle format
    with pytest.raises(RetargetError, match="pickles are refused"):
        checkpoint.load(bad)


def test_a_pickle_checkpoint_directory_is_refused_with_a_hint(tmp_path: Path) -> None:
    torch.save({"x": torch.zeros(1)}, tmp_path / "model.pt")
    with pytest.raises(RetargetError, match="model.pt looks like a pickle"):
        checkpoint.load(tmp_path)


def test_weights_that_do_not_match_the_config_are_refused(tmp_path: Path) -> None:
    config = tiny_config(64)
    net, disc = build(config.model)
    checkpoint.save(tmp_path, net, disc, config, 0)
    data = json.loads((tmp_path / "config.json").read_text())
    data["config"]["model"]["channels"] = 16
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(RetargetError, match="do not match config.json"):
        checkpoint.load(tmp_path)


def test_a_torn_checkpoint_is_detected_on_resume(tmp_path: Path) -> None:
    config = tiny_config(64, steps=2)
    run(SyntheticSampler(size=64, seed=5), tmp_path, config, device=CPU, progress=False)
    state = json.loads((tmp_path / "training.json").read_text())
    state["step"] = 1
    (tmp_path / "training.json").write_text(json.dumps(state))
    with pytest.raises(RetargetError, match="another step"):
        run(SyntheticSampler(size=64, seed=5), tmp_path, replace(config, steps=3), device=CPU, progress=False)


def test_each_player_moves_the_disentanglement_loss_its_way() -> None:
    """The classifier's steps lower its cross-entropy; the appearance encoder's steps raise it (the encoder
    minimises the confusion loss, so the classifier's predictions on its feature get worse)."""
    config = tiny_config(64)
    torch.manual_seed(0)
    net, disc = build(config.model)
    trainer = make_trainer(net, disc, config, CPU)
    batch = _random_batch(64, n=8)

    def measure() -> tuple[float, float]:
        with torch.no_grad():
            logits = net.classifier(net.appearance(batch.source)[-1])
        return float(classifier_loss(logits, batch.source_aus)), float(confusion_loss(logits))

    ce0, _ = measure()
    for _ in range(15):
        _classifier_step(trainer, net.appearance(batch.source)[-1], batch.source_aus)
    ce1, conf1 = measure()
    assert ce1 < ce0 - 0.05  # the classifier learns to read the AUs

    encoder = torch.optim.Adam(net.appearance.parameters(), lr=1e-3)
    for _ in range(15):
        for p in net.classifier.parameters():
            p.requires_grad_(False)
        loss = confusion_loss(net.classifier(net.appearance(batch.source)[-1]))
        encoder.zero_grad()
        loss.backward()
        encoder.step()
    ce2, conf2 = measure()
    assert conf2 < conf1  # the encoder confuses the classifier ...
    assert ce2 > ce1  # ... so the classifier's loss rises


def test_train_step_updates_only_its_players() -> None:
    config = tiny_config(64)
    net, disc = build(config.model)
    trainer = make_trainer(net, disc, config, CPU)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    logged = train_step(trainer, _random_batch(64))
    assert set(logged) >= {"discriminator", "classifier", "reconstruction", "disentangle", "swap_cycle"}
    assert all(np.isfinite(v) for v in logged.values())
    changed = {k.split(".")[0] for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"expression", "appearance", "generator", "classifier"}


def test_sampler_batches_become_tensors_in_range() -> None:
    sample = SyntheticSampler(size=64, seed=0).sample(3)
    batch = to_batch(sample, CPU)
    assert batch.source.shape == (3, 3, 64, 64) and batch.source.dtype == torch.float32
    assert float(batch.source.min()) >= -1 and float(batch.source.max()) <= 1
    assert batch.other_aus.shape == (3, 17)


def test_config_overrides_and_errors(tmp_path: Path) -> None:
    config = from_dict({"steps": 7, "model": {"channels": 16}, "losses": {"swap_cycle": 2}})
    assert (config.steps, config.model.channels, config.losses.swap_cycle) == (7, 16, 2.0)
    with pytest.raises(RetargetError, match="unknown setting model.chanels"):
        from_dict({"model": {"chanels": 16}})
    with pytest.raises(RetargetError, match="multiple of"):
        from_dict({"model": {"size": 100}})
    with pytest.raises(RetargetError, match="must be a number"):
        from_dict({"steps": "many"})
    path = tmp_path / "train.yaml"
    path.write_text("batch: 2\nmodel:\n  size: 512\n")
    loaded = load_config_file(path)
    assert (loaded.batch, loaded.model.size) == (2, 512)
    with pytest.raises(RetargetError, match="no such training config"):
        load_config_file(tmp_path / "missing.yaml")


@pytest.mark.gpu
def test_bf16_training_step_on_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: GPU checks run only where one is present")
    config = tiny_config(64)
    net, disc = build(config.model)
    device = torch.device("cuda")
    trainer = make_trainer(net.to(device), disc.to(device), config, device)
    assert trainer.mixed_precision
    b = _random_batch(64)
    batch = Batch(*(getattr(b, f).to(device) for f in ("source", "target", "other", "source_aus", "target_aus",
                                                        "other_aus")))
    logged = train_step(trainer, batch)
    assert all(np.isfinite(v) for v in logged.values())


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained 64 px checkpoint: enough to exercise the inference plumbing, not to look good."""
    directory = tmp_path_factory.mktemp("ckpt")
    config = tiny_config(64)
    torch.manual_seed(0)
    net, disc = build(config.model)
    with torch.no_grad():  # open the blend mask so that the texture step visibly changes the crop
        net.generator.texture_head.bias[3] = 4.0
    checkpoint.save(directory, net, disc, config, 0)
    return directory


def test_neural_generator_changes_only_the_face(astronaut: np.ndarray, astronaut_landmarks: np.ndarray,
                                                untrained_checkpoint: Path) -> None:
    from retarget.compose import paste
    from retarget.generators import FaceEdit, make_generator
    from retarget.landmarks import FACE_OVAL

    gen = make_generator("neural", checkpoint=str(untrained_checkpoint), device="cpu")
    edit = FaceEdit(astronaut.copy(), astronaut_landmarks.copy(), astronaut_landmarks.copy(),
                    np.eye(17, dtype=np.float32)[11] * 2)
    face = gen.generate(edit)
    out = paste(astronaut, face)
    changed = np.abs(out.astype(int) - astronaut.astype(int)).max(axis=2) > 0
    oval = astronaut_landmarks[FACE_OVAL, :2]
    centre, reach = oval.mean(0), np.linalg.norm(oval - oval.mean(0), axis=1).max()
    ys, xs = np.nonzero(changed)
    assert changed[int(centre[1]), int(centre[0])]  # the face was generated
    far = np.hypot(xs - centre[0], ys - centre[1]) > 1.5 * reach
    assert not far.any()  # nothing well outside the face moved
    assert changed[:40].sum() == 0 and changed[-40:].sum() == 0


def test_neural_generator_follows_the_destinations_head_motion(astronaut: np.ndarray,
                                                               astronaut_landmarks: np.ndarray,
                                                               untrained_checkpoint: Path) -> None:
    """A still target's head motion arrives as a rigid move of the destination; the face is pasted there."""
    from retarget.generators import FaceEdit, make_generator

    gen = make_generator("neural", checkpoint=str(untrained_checkpoint), device="cpu")
    shift = np.array([24.0, -10.0, 0.0], np.float32)
    rel = np.zeros(17, np.float32)
    here = gen.generate(FaceEdit(astronaut.copy(), astronaut_landmarks.copy(), astronaut_landmarks.copy(), rel))
    moved = gen.generate(FaceEdit(astronaut.copy(), astronaut_landmarks.copy(), astronaut_landmarks + shift, rel))

    def centre(face) -> np.ndarray:
        ys, xs = np.nonzero(face.alpha > 0.5)
        return np.array([xs.mean() + face.box[0], ys.mean() + face.box[1]])

    assert np.allclose(centre(moved) - centre(here), shift[:2], atol=1.5)


def test_neural_generator_batch_equals_single_frames(astronaut: np.ndarray, astronaut_landmarks: np.ndarray,
                                                     untrained_checkpoint: Path) -> None:
    from retarget.generators import FaceEdit, make_generator

    gen = make_generator("neural", checkpoint=str(untrained_checkpoint), device="cpu")
    edits = [FaceEdit(astronaut.copy(), astronaut_landmarks.copy(), astronaut_landmarks.copy(),
                      np.full(17, a, np.float32)) for a in (0.0, 2.0)]
    batch = gen.generate_batch(edits)
    for edit, together in zip(edits, batch):
        alone = gen.generate(edit)
        assert alone.box == together.box
        assert np.abs(alone.image.astype(int) - together.image.astype(int)).max() <= 1


def test_edit_runs_end_to_end_with_the_neural_generator(tmp_path: Path, astronaut: np.ndarray,
                                                        untrained_checkpoint: Path) -> None:
    from PIL import Image

    import retarget

    src = tmp_path / "face.png"
    Image.fromarray(astronaut).save(src)
    out = tmp_path / "edited.png"
    result = retarget.edit(src, out, {"AU12": 2}, generator="neural", checkpoint=str(untrained_checkpoint),
                           device="cpu")
    assert result.frames_written == 1
    image = np.asarray(Image.open(out))
    assert image.shape == astronaut.shape
    assert np.abs(image.astype(int) - astronaut.astype(int)).max() > 10  # the face changed
    report = json.loads(result.config_path.read_text())
    assert report["config"]["generator"] == "neural"


def test_cli_refuses_bad_generator_settings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from retarget.cli import main

    img = tmp_path / "x.png"
    img.write_bytes(b"")
    assert main(["edit", str(img), "--au", "AU12=1", "-o", str(tmp_path / "o.png"), "--generator", "neural"]) == 1
    assert "needs --checkpoint" in capsys.readouterr().err
    assert main(["edit", str(img), "--au", "AU12=1", "-o", str(tmp_path / "o.png"), "--generator", "neural",
                 "--checkpoint", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "not a checkpoint directory" in err and err.count("\n") == 1
    assert not (tmp_path / "o.png").exists()


def test_cli_train_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from retarget.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", str(empty), "--out", str(tmp_path / "ckpt"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("retarget: error:") and err.count("\n") == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {chanels: 3}\n")
    assert main(["train", str(empty), "--out", str(tmp_path / "ckpt"), "--config", str(bad), "-q"]) == 1
    assert "unknown setting model.chanels" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(empty), "--out", str(tmp_path / "ckpt"), "--steps", "0"])
    assert exit_info.value.code == 2
    assert not (tmp_path / "ckpt").exists()  # nothing written on failure
