"""sd-webui-controlnet's own simple maps that controlnet-aux lacks (invert, threshold, binary, scribble_xdog,
blur_gaussian, tile_resample, t2ia_color_grid, recolor_*), written with OpenCV and NumPy as sd-webui-controlnet writes
them (where they differ, the docstring says so). Canny, content shuffle and lineart_standard come from controlnet-aux,
and the preprocessors with weights from controlnet-aux or transformers (`detectors`).

Each takes an RGB uint8 array already at the detection size and the two thresholds (None where unused), and
returns a uint8 map (HxW or HxWx3); `preprocessors.Preprocessor.run` does the resizing and the checking.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

DetectFn = Callable[[np.ndarray, "float | None", "float | None"], np.ndarray]


def passthrough(rgb, a, b):
    return rgb


def invert(rgb, a, b):
    return 255 - rgb


def threshold(rgb, level, b):
    return np.where(rgb > level, 255, 0).astype(np.uint8)


def binary(rgb, level, b):
    """White strokes on black from dark lines; level 0 (or 255) picks the level by Otsu's method."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if level in (0, 255):
        return cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)[1]
    return cv2.threshold(gray, level, 255, cv2.THRESH_BINARY_INV)[1]


def scribble_xdog(rgb, level, b):
    """Difference of Gaussians: dark strokes -> white scribbles. (sd-webui-controlnet computes `2 * (255 - dog)`
    in uint8, which wraps for strong strokes; here it is computed without wrapping.)"""
    x = rgb.astype(np.float32)
    dog = np.min(cv2.GaussianBlur(x, (0, 0), 5.0) - cv2.GaussianBlur(x, (0, 0), 0.5), axis=2).clip(0, 255)
    return np.where(2 * dog.astype(np.int32) > level, 255, 0).astype(np.uint8)


def blur_gaussian(rgb, sigma, b):
    return cv2.GaussianBlur(rgb, (0, 0), sigma)


def tile_resample(rgb, rate, b):
    if rate < 1.1:
        return rgb
    height, width = rgb.shape[:2]
    return cv2.resize(rgb, (max(1, int(width / rate)), max(1, int(height / rate))), interpolation=cv2.INTER_AREA)


def color_grid(rgb, a, b):
    height, width = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, width // 64), max(1, height // 64)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def recolor(channel: Callable[[np.ndarray], np.ndarray]) -> DetectFn:
    """One gray channel with a gamma: luminance (L of Lab) or intensity (V of HSV). sd-webui-controlnet converts
    its RGB image with BGR2LAB, swapping red and blue in the luminance; RGB2LAB is used here."""

    def detect(rgb, gamma, b):
        value = channel(rgb).astype(np.float32) / 255.0
        return (value**gamma * 255.0).clip(0, 255).astype(np.uint8)

    return detect


luminance = recolor(lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[:, :, 0])
intensity = recolor(lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[:, :, 2])
