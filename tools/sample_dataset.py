"""Write a small real dataset in the Tiny ImageNet layout, for trying tinyres out.

    .venv/bin/python -m tools.sample_dataset data/sources/digits

The images are scikit-learn's handwritten digits (real scans that ship with the package,
so nothing is downloaded), upscaled to 64x64 RGB JPEGs, ten classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.datasets import make_digits_tiny_imagenet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="folder to create (under the data root)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=20)
    args = parser.parse_args()
    path = make_digits_tiny_imagenet(
        args.target,
        classes=args.classes,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
