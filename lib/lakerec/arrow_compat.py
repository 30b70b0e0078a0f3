"""pyarrow 14 + deltalake 1.6: give pyarrow the one newer call deltalake's reader makes, so partitioned tables read.

deltalake 1.6's `DeltaTable.to_pyarrow_dataset` (behind `to_pyarrow_table` and `to_pandas`) turns each file's
partition value into a pyarrow scalar of the column's type, which it builds with `pyarrow.field(<Arrow C schema
object>)`: the one-argument form pyarrow added in 16 (deltalake 1.6 asks for pyarrow >= 21). pyarrow 14, which
petastorm pins, takes `field(name, type)` only, so every partitioned table, whoever wrote it, failed with
"field() takes at least 2 positional arguments". No deltalake release has both what the lake needs (RemoveAction,
1.6) and a reader that works with pyarrow 14 (up to 1.5.0). pyarrow 14 already has the import behind that form,
`Field._import_from_c_capsule`; `install` routes the one-argument call to it, as pyarrow 16 does.

Installed on `import lakerec`, and for every interpreter of the project's environment by the .pth file that
scripts/setup.sh writes (so plain `deltalake` reads the lake too). A no-op from pyarrow 16 on: drop this module
when petastorm no longer holds pyarrow at 14.
"""
from __future__ import annotations

import importlib.machinery
import sys
from types import ModuleType

PATCHED = "_lakerec_capsule_field"


def install() -> None:
    """Patch pyarrow now if it is imported, else when it is (an import hook: no pyarrow import at start-up)."""
    if "pyarrow" in sys.modules:
        _patch(sys.modules["pyarrow"])
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


def _patch(pa: ModuleType) -> None:
    if int(pa.__version__.split(".")[0]) >= 16 or getattr(pa.field, PATCHED, False):
        return
    field = pa.field

    def capsule_field(*args, **kwargs):
        if len(args) == 1 and not kwargs and hasattr(args[0], "__arrow_c_schema__"):
            return pa.Field._import_from_c_capsule(args[0].__arrow_c_schema__())
        return field(*args, **kwargs)

    capsule_field.__doc__ = field.__doc__
    setattr(capsule_field, PATCHED, True)
    pa.field = capsule_field


class _PatchOnImport:
    """A meta path finder (no importlib.abc base: it costs start-up time in every interpreter): finds pyarrow as
    the path finder would, and patches the module once it has run."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "pyarrow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec
