"""Another install of beam-nas, as a lending node might have: the real ``cerebros_cluster``
reporting an older package version. Put first on a worker's module path."""
import importlib.util
import os

_REAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "cerebros_cluster.py")
_spec = importlib.util.spec_from_file_location("_installed_cerebros_cluster", _REAL)
_installed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_installed)
globals().update({name: value for name, value in vars(_installed).items() if not name.startswith("__")})


def version():
    return {**_installed.version(), "package": "0.0.9"}
