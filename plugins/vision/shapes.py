"""Small labelled images drawn with Pillow (circles, squares, triangles): the task's test kit data."""

from __future__ import annotations

import base64
import io
import random
import zipfile
from pathlib import Path

SHAPES = ("circle", "square", "triangle")
SIDE = 64


def draw(shape: str, rng: random.Random, side: int = SIDE):
    """One shape of random size, position and colours on a plain background."""
    from PIL import Image, ImageDraw

    light = tuple(rng.randrange(150, 256) for _ in range(3))
    dark = tuple(rng.randrange(0, 110) for _ in range(3))
    background, fill = light, dark
    image = Image.new("RGB", (side, side), background)
    canvas = ImageDraw.Draw(image)
    size = rng.uniform(0.45, 0.85) * side
    x0 = rng.uniform(0, side - size)
    y0 = rng.uniform(0, side - size)
    box = (x0, y0, x0 + size, y0 + size)
    if shape == "circle":
        canvas.ellipse(box, fill=fill)
    elif shape == "square":
        canvas.rectangle(box, fill=fill)
    elif shape == "triangle":
        canvas.polygon([(x0 + size / 2, y0), (x0, y0 + size), (x0 + size, y0 + size)], fill=fill)
    else:  # pragma: no cover
        raise ValueError(shape)
    return image


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_zip(path: Path, *, rows: int, seed: int) -> Path:
    """A zip of class folders (`circle/0003.png` …) holding `rows` images, classes balanced."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for i in range(rows):
            shape = SHAPES[i % len(SHAPES)]
            archive.writestr(f"{shape}/{i:04d}.png", png_bytes(draw(shape, rng)))
    return path


def example_inputs(seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [base64.b64encode(png_bytes(draw(shape, rng))).decode("ascii") for shape in SHAPES]
