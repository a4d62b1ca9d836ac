"""Face generators: from the target frame and where its landmarks should go, to the edited face.

Every generator implements ``base.Generator``; ``make_generator`` picks one by name.
"""

from __future__ import annotations

from .base import FaceEdit, GeneratedFace, Generator


GENERATORS = ("warp", "neural")  # the names make_generator knows


def make_generator(name: str, **settings) -> Generator:
    """The generator called ``name``: ``"warp"`` (training-free, CPU, the default) or ``"neural"`` (the learned
    generator; ``settings`` of ``neural.NeuralSettings``, ``checkpoint`` required)."""
    if name == "warp":
        from .warp import WarpGenerator, WarpSettings

        return WarpGenerator(WarpSettings(**settings))
    if name == "neural":
        from .neural import NeuralGenerator, NeuralSettings

        return NeuralGenerator(NeuralSettings(**settings))
    raise ValueError(f"unknown generator {name!r} (available: {', '.join(GENERATORS)})")


__all__ = ["GENERATORS", "FaceEdit", "GeneratedFace", "Generator", "make_generator"]
