# Type stub for the compiled module nncore._kernels (built from src/_kernels.pyx).
# Its functions are private and change with the .pyx, so this partial stub
# makes every name Any to type checkers (PEP 484: a module-level __getattr__
# in a stub); the .pyx is the signature reference (embedsignature is on).
from typing import Any

def __getattr__(name: str) -> Any: ...
