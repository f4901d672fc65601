"""Runs the experiments/<name>.py scripts inside the test process: as modules, or through their absl entry point.

A subprocess per script costs ~10 s of imports and a cold tracing cache before anything trains;
in process the worker's TensorFlow is warm. absl flags are process-global, so whatever a script
defines is removed again afterwards (the next script, perhaps in another test file of the same
xdist worker, defines the same shared flags).
"""

import contextlib
import importlib.util
import pathlib
import sys
import types

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


def load(name: str, module_name: str | None = None):
    """``experiments/<name>.py`` as a fresh module (its absl flags are not defined: call ``define_flags``)."""
    spec = importlib.util.spec_from_file_location(module_name or f"{name}_experiment", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def own_flags():
    """Removes the absl flags defined in the block and restores the parsed state of the others."""
    from absl import flags

    before, was_parsed = set(flags.FLAGS), flags.FLAGS.is_parsed()
    try:
        yield flags.FLAGS
    finally:
        for flag in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, flag)
        if not was_parsed:
            flags.FLAGS.unparse_flags()


def run_main(name: str, *argv: str) -> tuple[int, types.ModuleType]:
    """``python experiments/<name>.py ARGV...`` in this process: its ``__main__`` block, ``app.run(main)`` included.

    Returns:
        ``(exit code, the script as a module)``; the caller's ``capsys`` holds what it printed
        (``app.run`` writes a flag error to stderr and exits 1).
    """
    path = EXPERIMENTS / f"{name}.py"
    module = types.ModuleType("__main__")
    module.__file__ = str(path)
    code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
    old_argv, old_main = sys.argv, sys.modules["__main__"]
    sys.argv, sys.modules["__main__"] = [str(path), *argv], module  # as runpy.run_path(path, run_name="__main__")
    try:
        with own_flags():
            try:
                exec(code, module.__dict__)
                status = 0
            except SystemExit as exit_:  # app.run ends with sys.exit(main(argv))
                status = 0 if exit_.code is None else exit_.code
    finally:
        sys.argv, sys.modules["__main__"] = old_argv, old_main
    return status, module


def argv(**flags) -> list[str]:
    """``{"seeds": ["0", "1"], "epochs": 1, "plain": False, "data_dir": None}`` -> ``["--seeds=0,1", "--epochs=1", "--noplain"]``.

    ``None`` leaves a flag at its default.
    """
    out = []
    for name, value in flags.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out.append(f"--{'' if value else 'no'}{name}")
        elif isinstance(value, (list, tuple)):
            out.append(f"--{name}={','.join(map(str, value))}")
        else:
            out.append(f"--{name}={value}")
    return out
