"""Write scikit-learn's digits as a folder of PNG files, one subfolder per class.

The image-folder example (``examples/image_folder.toml``) reads this folder::

    .venv/bin/python examples/make_digit_images.py examples/data/digit_images

Each 8×8 digit (gray levels 0–16) becomes a 16×16 8-bit grayscale PNG (levels scaled
to 0–255, each pixel repeated 2×2), named ``<class>/<row>.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def write_digit_images(root: Path, limit: int | None = None, scale: int = 2) -> int:
    """Write the first ``limit`` digits (all by default) under ``root``; return how many."""
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.rint(data.images * (255.0 / 16.0)).astype(np.uint8)
    count = len(images) if limit is None else min(limit, len(images))
    for row in range(count):
        folder = root / str(int(data.target[row]))
        folder.mkdir(parents=True, exist_ok=True)
        pixels = images[row].repeat(scale, axis=0).repeat(scale, axis=1)
        Image.fromarray(pixels, mode="L").save(folder / f"{row:04d}.png")
    return count


def main() -> None:
    """Parse the command line and write the images."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="examples/data/digit_images")
    parser.add_argument("--limit", type=int, default=None, help="write only this many")
    args = parser.parse_args()
    count = write_digit_images(Path(args.folder), args.limit)
    print(f"wrote {count} PNG images under {args.folder}")


if __name__ == "__main__":
    main()
