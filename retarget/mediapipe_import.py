"""Import mediapipe without paying for matplotlib.

``import mediapipe`` imports all of its legacy solutions, and their drawing helpers import ``matplotlib.pyplot``
at module level: 0.6-0.9 s of a 1.3 s import on this project's 2-core machine, on every run, for a plotting
function the tool never calls. Before the first mediapipe import, ``matplotlib`` and ``matplotlib.pyplot`` are
entered in ``sys.modules`` as stand-ins that import the real module the first time one of its attributes is read,
so mediapipe's own ``plot_landmarks`` (or any user code) still gets the real pyplot when it asks for it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types

_PACKAGE, _MODULE = "matplotlib", "matplotlib.pyplot"


class DeferredModule(types.ModuleType):
    """Stands in ``sys.modules`` for module ``name`` until one of its attributes is read: then the real module is
    imported (replacing the stand-in there) and the attribute read from it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        # a spec without ``_initializing`` tells the import system the module is ready to hand out
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)

    def __getattr__(self, attribute: str) -> object:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attribute)


def import_mediapipe() -> types.ModuleType:
    """The ``mediapipe`` package, with matplotlib deferred when neither was imported yet."""
    if "mediapipe" not in sys.modules and _PACKAGE not in sys.modules \
            and importlib.util.find_spec(_PACKAGE) is not None:
        package, module = DeferredModule(_PACKAGE), DeferredModule(_MODULE)
        package.pyplot = module  # ``import matplotlib.pyplot as plt`` reads it without importing the package
        sys.modules[_MODULE] = module
        sys.modules[_PACKAGE] = package
    import mediapipe

    return mediapipe
