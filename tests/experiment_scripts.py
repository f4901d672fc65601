"""Loads an experiments/<name>.py script as a module, so tests call its functions without a subprocess."""

import importlib.util
import pathlib

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


def load(name: str, module_name: str | None = None):
    """``experiments/<name>.py`` as a fresh module (its absl flags are not defined: call ``define_flags``)."""
    spec = importlib.util.spec_from_file_location(module_name or f"{name}_experiment", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
