"""Face generators: from the target frame and where its landmarks should go, to the edited face.

Every generator implements ``base.Generator``; ``make_generator`` picks one by name.
"""

from __future__ import annotations

from .base import FaceEdit, GeneratedFace, Generator


GENERATORS = ("warp",)  # the names make_generator knows


def make_generator(name: str, **settings) -> Generator:
    """The generator called ``name`` (``"warp"``: training-free, CPU, the default)."""
    if name == "warp":
        from .warp import WarpGenerator, WarpSettings

        return WarpGenerator(WarpSettings(**settings))
    raise ValueError(f"unknown generator {name!r} (available: warp)")


__all__ = ["GENERATORS", "FaceEdit", "GeneratedFace", "Generator", "make_generator"]
