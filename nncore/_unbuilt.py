"""Why `import nncore` found no compiled core, in words a user can act on.

Imported by nncore/__init__.py only when importing nncore._engine or
nncore._kernels failed; uses the standard library alone (nothing else of
nncore can be imported at that point). Two cases need different advice:
nncore is not installed at all (build it), or it is installed, but Python
found this unbuilt source tree first — typically because the current
directory is a checkout and comes first on sys.path — and the fix is to run
from elsewhere (or build the checkout in place).
"""
import importlib.machinery
import os
import sys


def _built(folder):
    """Whether `folder` holds nncore's compiled core for this Python."""
    return all(any(os.path.isfile(os.path.join(folder, name + suffix))
                   for suffix in importlib.machinery.EXTENSION_SUFFIXES)
               for name in ("_engine", "_kernels"))


def installed_copies(here):
    """Folders of other importable `nncore` packages with a compiled core:
    found on each sys.path entry, and by the meta path finders other than
    the path-based one (pip's editable installs add such a finder)."""
    specs = []
    for entry in sys.path:
        try:
            specs.append(importlib.machinery.PathFinder.find_spec("nncore", [entry or "."]))
        except (ImportError, OSError, ValueError):
            pass
    for finder in sys.meta_path:
        if finder is importlib.machinery.PathFinder or not hasattr(finder, "find_spec"):
            continue
        try:
            specs.append(finder.find_spec("nncore", None))
        except Exception:  # a third-party finder may fail on a name it does not own
            pass
    here = os.path.realpath(here)
    copies = []
    for spec in specs:
        for folder in getattr(spec, "submodule_search_locations", None) or ():
            folder = os.path.realpath(folder)
            if folder != here and folder not in copies and _built(folder):
                copies.append(folder)
    return copies


def unbuilt_error(exc: ImportError) -> ImportError:
    """The ImportError to raise for the failed import `exc` of the compiled core."""
    here = os.path.dirname(os.path.abspath(__file__))
    copies = installed_copies(here)
    if copies:
        return ImportError(
            f"nncore was imported from {here}, a source tree whose compiled core "
            f"(nncore._engine, nncore._kernels) is not built, and it shadows the installed "
            f"nncore in {copies[0]}. Run Python from another directory (the current "
            "directory comes first on sys.path), or build this checkout in place with "
            f"`pip install -e .` from its root. Original error: {exc}")
    if _built(here):
        return ImportError(f"nncore's compiled core in {here} could not be loaded (built for "
                           "another Python or NumPy, or a library is missing); rebuild with "
                           f"`pip install -e .` from the repository root. Original error: {exc}")
    return ImportError(
        "nncore is not installed: its compiled core (nncore._engine, nncore._kernels) is not "
        f"built in {here}, and no installed nncore was found on sys.path. Install the package "
        "with `pip install .` (or `pip install -e .` for development) from the repository "
        f"root, and import it from outside the source tree. Original error: {exc}")
