"""What the installed distribution carries: its name and licence, the typing
markers, and compiled modules without debug information (release builds)."""
import os
import re
import struct
import sys
from importlib import metadata, resources

import pytest

import nncore

DIST = "nncore-cpu"   # "nncore" on the public index is an unrelated project


def test_distribution_name_version_and_license():
    dist = metadata.distribution(DIST)
    assert dist.version == nncore.__version__
    assert dist.metadata["License-Expression"] == "BSD-3-Clause"
    licenses = [f for f in dist.files or () if f.name == "LICENSE"]
    assert licenses, "LICENSE is not in the installed distribution"
    text = licenses[0].read_text()
    assert "BSD 3-Clause License" in text and "the nncore developers" in text
    assert "nncore" in (dist.read_text("top_level.txt") or "nncore").split()


def test_typing_markers_are_shipped():
    package = resources.files("nncore")
    assert package.joinpath("py.typed").is_file()
    for stub in ("_engine.pyi", "_kernels.pyi"):
        assert package.joinpath(stub).is_file()


def elf_section_names(path):
    """Section names of an ELF64 little-endian file (its section header table
    and the string table e_shstrndx points at; System V ABI, ELF-64 format)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not ELF64 LE"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i):   # (name offset, file offset) of section i
        base = shoff + i * shentsize
        return (struct.unpack_from("<I", data, base)[0],
                struct.unpack_from("<Q", data, base + 0x18)[0])

    strtab = header(shstrndx)[1]
    names = []
    for i in range(shnum):
        start = strtab + header(i)[0]
        names.append(data[start:data.index(b"\0", start)].decode())
    return names


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF files on Linux only")
@pytest.mark.skipif(os.environ.get("NNCORE_CYTHON_DEBUG", "") not in ("", "0"),
                    reason="NNCORE_CYTHON_DEBUG builds keep their debug information")
def test_release_build_has_no_debug_information():
    for module in (nncore._engine, nncore._kernels):
        names = elf_section_names(module.__file__)
        assert ".text" in names and ".dynsym" in names
        debug = [n for n in names if n.startswith(".debug")]
        assert not debug, f"{module.__file__} carries {debug}; release builds use -g0 (setup.py)"


def test_every_folder_of_the_package_is_listed_for_setuptools():
    """nncore/data (digits.npz, no Python) was not in [tool.setuptools]
    packages: every build (`pip install -v -e .`, the README's first command)
    printed setuptools' 40-line "Package would be ignored" warning for it."""
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isfile(os.path.join(root, "pyproject.toml")):
        pytest.skip("not a source checkout")
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        listed = tomllib.load(f)["tool"]["setuptools"]["packages"]
    folders = [".".join(os.path.relpath(path, root).split(os.sep))
               for path, dirs, _ in os.walk(os.path.join(root, "nncore"))
               if not os.path.basename(path).startswith((".", "__"))]
    assert sorted(folders) == sorted(listed)


# names NumPy 2 and Python 3.11 added, which the declared minimums (numpy 1.25, Python
# 3.10) lack: the suite runs on the newest versions, so only this scan sees them
NEWER_THAN_THE_MINIMUMS = re.compile(
    r"\bnp\.(trapezoid|isdtype|concat|permute_dims|matrix_transpose|vecdot|astype|unstack"
    r"|unique_(values|counts|inverse|all)|cumulative_(sum|prod)|strings|linalg\.(vector|matrix)"
    r"_norm)\b|\bnumpy\.(_core|strings)\b|\b(?!training\.)\w+\.add_note\(|\btomllib\b"
    r"|\bExceptionGroup\b|except\*")
# the compat paths: training.add_note calls add_note where it exists (numpy.lib.array_utils
# is imported in a try)
COMPAT = {("training.py", "exc.add_note(note)")}


def test_the_package_avoids_names_its_minimum_versions_lack():
    found = [(f.name, n, line.strip()) for f in resources.files("nncore").iterdir()
             if f.name.endswith(".py")
             for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
             if NEWER_THAN_THE_MINIMUMS.search(line.split("#")[0])
             and (f.name, line.strip()) not in COMPAT]
    assert found == []
