"""Import mediapipe's face solutions without paying for the rest of mediapipe.

``import mediapipe`` runs the package's ``__init__``, which imports every legacy solution (hands, pose, holistic,
objectron, drawing styles), the tasks API (audio, text, vision) and, through the drawing helpers,
``matplotlib.pyplot``. The tool uses four solutions: the face mesh (and its connection lists), the face
detector and the selfie segmentation. Two ways in:

- ``import_solution(name)`` imports only ``mediapipe.python.solutions.<name>`` and what it needs: the two
  package ``__init__`` files it would pass through (``mediapipe`` and ``mediapipe.python.solutions``) are
  entered in ``sys.modules`` as ``LazyPackage`` modules, real package modules whose ``__init__`` runs the first
  time an attribute they do not yet hold is read. Submodules load into them as usual, so ``import mediapipe``
  afterwards, in the tool or in user code, still ends with the whole package. On this project's 2-core machine
  the face mesh's import takes 0.03 s this way against 0.19 s through ``import mediapipe`` (numpy, OpenCV and
  PyAV already imported, as they are in the job).
- ``import_mediapipe()`` is the whole package, as ``import mediapipe``.

Either way ``matplotlib`` and ``matplotlib.pyplot`` are first entered as ``DeferredModule`` stand-ins that
import the real module the first time one of its attributes is read (0.6-0.9 s of the 1.3 s whole import
otherwise), so mediapipe's own ``plot_landmarks`` (or any user code) still gets the real pyplot when it asks.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types

_PACKAGE, _MODULE = "matplotlib", "matplotlib.pyplot"
# the package __init__ files between ``mediapipe`` and a legacy solution module, outermost first
_LAZY_PACKAGES = ("mediapipe", "mediapipe.python.solutions")
_SOLUTIONS = "mediapipe.python.solutions"
_INSTALL = threading.RLock()  # the tracking threads import the face mesh at the same time


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


class LazyPackage(types.ModuleType):
    """A package module made from its real spec, whose ``__init__`` has not run yet: its submodules import into it
    as into any package; the first read of an attribute it does not hold runs the ``__init__`` in it (once), and
    from then on it is the package as ``import`` would have made it."""

    def __getattr__(self, attribute: str) -> object:
        if attribute.startswith("__"):  # dunder probes (copy, pickle, inspect) do not need the whole package
            raise AttributeError(attribute)
        with _INSTALL:
            if type(self) is LazyPackage:
                self.__class__ = types.ModuleType
                _defer_matplotlib()
                self.__spec__.loader.exec_module(self)
        return getattr(self, attribute)


def _defer_matplotlib() -> None:
    """Enter the matplotlib stand-ins, when neither mediapipe's __init__ nor matplotlib was imported yet."""
    if _PACKAGE not in sys.modules and importlib.util.find_spec(_PACKAGE) is not None:
        package, module = DeferredModule(_PACKAGE), DeferredModule(_MODULE)
        package.pyplot = module  # ``import matplotlib.pyplot as plt`` reads it without importing the package
        sys.modules[_MODULE] = module
        sys.modules[_PACKAGE] = package


def _lazy_package(name: str) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not an importable package")
    module = importlib.util.module_from_spec(spec)
    module.__class__ = LazyPackage
    sys.modules[name] = module
    if "." in name:  # bound in its parent as the import system binds a loaded submodule
        parent, child = name.rsplit(".", 1)
        setattr(sys.modules[parent], child, module)


def import_solution(name: str) -> types.ModuleType:
    """mediapipe's legacy solution module ``name`` ("face_mesh", "face_mesh_connections", "face_detection",
    "selfie_segmentation"),
    imported without the rest of mediapipe when mediapipe was not imported yet (see the module's docstring)."""
    with _INSTALL:
        if "mediapipe" not in sys.modules:
            _defer_matplotlib()
            _lazy_package("mediapipe")
            importlib.import_module("mediapipe.python")  # the bindings; a light __init__
            _lazy_package(_SOLUTIONS)
    return importlib.import_module(f"{_SOLUTIONS}.{name}")


def import_mediapipe() -> types.ModuleType:
    """The whole ``mediapipe`` package, with matplotlib deferred when neither was imported yet."""
    with _INSTALL:
        if "mediapipe" not in sys.modules:
            _defer_matplotlib()
    import mediapipe

    mediapipe.solutions  # noqa: B018 - a LazyPackage left by import_solution runs its __init__ here
    return mediapipe
