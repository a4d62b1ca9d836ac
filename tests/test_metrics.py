"""The evaluation metrics on synthetic inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retarget import landmarks as lm
from retarget import metrics


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def test_identical_images(image: np.ndarray) -> None:
    assert metrics.l1(image, image) == 0.0
    assert metrics.psnr(image, image) == math.inf
    assert metrics.ssim(image, image) == pytest.approx(1.0)


def test_known_differences(image: np.ndarray) -> None:
    brighter = np.clip(image.astype(int) + 10, 0, 255).astype(np.uint8)
    exact = np.abs(brighter.astype(float) - image).mean() / 255
    assert metrics.l1(brighter, image) == pytest.approx(exact)
    flat_a, flat_b = np.full((8, 8, 3), 100, np.uint8), np.full((8, 8, 3), 110, np.uint8)
    assert metrics.psnr(flat_a, flat_b) == pytest.approx(10 * math.log10(255 ** 2 / 100))


def test_ssim_matches_scikit_image(image: np.ndarray) -> None:
    from skimage.metrics import structural_similarity

    noisy = np.clip(image.astype(int) + np.random.default_rng(1).normal(0, 25, image.shape), 0, 255).astype(np.uint8)
    expected = structural_similarity(noisy, image, channel_axis=-1, data_range=255, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert metrics.ssim(noisy, image) == pytest.approx(expected, abs=1e-4)
    assert metrics.ssim(noisy, image) < 0.9


def test_akd_of_a_known_shift() -> None:
    points = np.random.default_rng(2).random((478, 2)) * 200
    assert metrics.akd(points + [3.0, 4.0], points) == pytest.approx(5.0)


@pytest.mark.parametrize("shift", [-4, 0, 3])
def test_frame_offset_is_detected(shift: int) -> None:
    t = np.arange(120)
    reference = np.sin(t / 5.0) + 0.3 * np.sin(t / 1.7)
    signal = np.roll(reference, shift)
    assert metrics.frame_offset(reference, signal) == shift


def test_jitter_of_a_known_shake() -> None:
    steady = np.linspace(0, 10, 30)[:, None, None] * np.ones((30, 5, 2))  # constant velocity: no jitter
    assert metrics.jitter(steady) == pytest.approx(0.0, abs=1e-12)
    shaking = steady.copy()
    shaking[::2, :, 0] += 1.0  # +1, 0, +1, ... in x: second differences of magnitude 2
    assert metrics.jitter(shaking) == pytest.approx(2.0)


def test_correlation_handles_constant_signals() -> None:
    assert math.isnan(metrics.correlation(np.ones(10), np.arange(10.0)))
    assert metrics.correlation(np.arange(10.0), 2 * np.arange(10.0) + 1) == pytest.approx(1.0)


def test_alignment_puts_eyes_and_mouth_in_place() -> None:
    points = np.zeros((478, 3))
    points[lm.RIGHT_EYE, :2] = [300, 200]
    points[lm.LEFT_EYE, :2] = [400, 210]
    points[lm.INNER_LIP_LOOP, :2] = [345, 320]
    m = metrics.alignment(points)
    eyes = metrics.transform_points(np.array([[300, 200], [400, 210]], float), m)
    assert np.linalg.norm(eyes[0] - [0.35 * 256, 0.40 * 256]) < 6
    assert np.linalg.norm(eyes[1] - [0.65 * 256, 0.40 * 256]) < 6
