"""The index notebook's setup check: is everything the course needs installed?

``check_setup()`` prints one line per requirement and ends with ``ready`` when every
required one is there. Optional pieces (a Redis server for the Redis adapters) are reported
with what is skipped without them; they never make the check fail.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import sys
from dataclasses import dataclass

REQUIRED_PYTHON = (3, 11)
REQUIRED_MODULES = (
    ("patterns", "the course's library"),
    ("simulations", "the course's SimPy models"),
    ("simpy", "discrete-event simulation"),
    ("numpy", "numbers"),
    ("matplotlib", "plots"),
    ("networkx", "graphs"),
    ("ipywidgets", "sliders"),
    # without the front end, JupyterLab shows "Error displaying widget" instead of sliders
    ("jupyterlab_widgets", "sliders in JupyterLab"),
    ("PIL", "the explorers' figures as PNG"),
)
INSTALL = "python -m pip install -r requirements.txt"


@dataclass(frozen=True)
class Requirement:
    name: str
    ok: bool
    detail: str
    required: bool = True


def _module(name: str, purpose: str) -> Requirement:
    try:
        module = importlib.import_module(name)
    except Exception as error:  # an import can fail in many ways; say which
        return Requirement(name, False, f"missing ({type(error).__name__}: {error}); "
                           f"run `{INSTALL}`")
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        version = getattr(module, "__version__", "local")
    return Requirement(name, True, f"{version} ({purpose})")


def requirements() -> list[Requirement]:
    """Every requirement of the course, checked now."""
    found = sys.version_info[:2]
    python = Requirement(
        "python", found >= REQUIRED_PYTHON,
        f"{sys.version.split()[0]}" + ("" if found >= REQUIRED_PYTHON else
                                       f"; the course needs {REQUIRED_PYTHON[0]}."
                                       f"{REQUIRED_PYTHON[1]} or newer"))
    checks = [python] + [_module(name, purpose) for name, purpose in REQUIRED_MODULES]
    server = shutil.which("redis-server")
    checks.append(Requirement(
        "redis-server", server is not None,
        server or "not found: the Redis cells of 4.5, 5.1 and 5.5 will say so and skip "
                  "(install it with `sudo apt-get install redis-server` or "
                  "`brew install redis`)",
        required=False))
    return checks


def check_setup() -> bool:
    """Print the state of each requirement; return True when the course can run."""
    checks = requirements()
    width = max(len(c.name) for c in checks)
    for check in checks:
        mark = "ok " if check.ok else ("-- " if not check.required else "!! ")
        print(f"{mark} {check.name:<{width}}  {check.detail}")
    ready = all(c.ok for c in checks if c.required)
    print("ready" if ready else f"not ready: fix the lines marked !! (usually `{INSTALL}`)")
    return ready
