"""Build the compiled core: one extension per src/*.pyx, landing in nncore/.

NNCORE_CYTHON_DEBUG=1 turns bounds, wraparound and initialisation checks back
on (the default build trusts the validated Python boundary and runs without).
NNCORE_SANITIZE=address builds with AddressSanitizer (-fsanitize=address): the
raw-pointer engine, which bounds checking does not see, is then checked too.
Run it with the sanitizer runtime preloaded, as .ci/run does:
LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 pytest
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("NNCORE_CYTHON_DEBUG", "") not in ("", "0")
SANITIZE = os.environ.get("NNCORE_SANITIZE", "")
if SANITIZE not in ("", "address"):
    sys.exit(f"NNCORE_SANITIZE={SANITIZE!r}: expected 'address' or unset")
SANITIZE_FLAGS = ["-fsanitize=address", "-fno-omit-frame-pointer"] if SANITIZE else []


def openmp_flags():
    """['-fopenmp'] when the C compiler accepts it, else [] (serial build).

    No kernel uses prange yet: the parallel work is inside the BLAS, and an
    OpenMP pool beside the BLAS pool would spin against it on small machines
    (see README, "Threads"). The flag keeps the build ready for loops that
    measure faster in parallel."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc.split()[0]) is None or sys.platform == "win32":
        return []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "omp.c")
        src.write_text("#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n")
        ok = subprocess.run(cc.split() + ["-fopenmp", str(src), "-o", str(Path(tmp, "omp"))],
                            capture_output=True).returncode == 0
    return ["-fopenmp"] if ok else []


def build_flags():
    """(compile, link) flags. NNCORE_CYTHON_DEBUG: asserts on, -O1 -g. Release:
    no debug info — Python's own CFLAGS carry -g (≈4.7 MB of DWARF in the two
    .so files), so -g0 overrides it and the linker drops what is left; the
    symbol table stays, so profilers still name the functions."""
    if DEBUG:
        return ["-UNDEBUG", "-O1", "-g"], []
    if SANITIZE:   # line numbers in the sanitizer's reports
        return ["-g"], []
    if sys.platform == "win32":
        return [], []
    return ["-g0"], {"linux": ["-Wl,--strip-debug"], "darwin": ["-Wl,-S"]}.get(sys.platform, [])


OPENMP = openmp_flags()
COMPILE_FLAGS, LINK_FLAGS = build_flags()
directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}
extensions = [
    Extension(
        f"nncore.{pyx.stem}",
        [str(pyx)],
        include_dirs=[numpy.get_include(), "src"],
        depends=[str(h) for h in Path("src").glob("*.h")],
        # -fno-math-errno: sqrt never sets errno (nothing reads it), so loops
        # that take a square root (Adam's √v) vectorise instead of running a
        # scalar sqrtsd with an errno check per element; results are the same
        # correctly rounded IEEE square roots.
        extra_compile_args=["-O3", "-fno-math-errno"] + OPENMP + COMPILE_FLAGS + SANITIZE_FLAGS,
        extra_link_args=OPENMP + LINK_FLAGS + SANITIZE_FLAGS,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for pyx in sorted(Path("src").glob("*.pyx"))
]

setup(
    ext_modules=cythonize(extensions, include_path=["src"], compiler_directives=directives,
                          build_dir="build/cython-debug" if DEBUG else "build/cython"),
    # the extensions compile side by side (build_ext -j): pip's wheel builds
    # from the sdist, four of them in .ci/run, each take the longest one's time
    options={"build_ext": {"parallel": len(os.sched_getaffinity(0))}},
)
