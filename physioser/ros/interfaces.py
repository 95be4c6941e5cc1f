"""ROS 2 interface packages built here from their `.msg` definitions (`ros/interfaces/`), with the
rosidl tool chain of the ROS 2 wheels (the `ros` extra) and the machine's CMake and C/C++ compilers.

- `hri_msgs` (the part physioser uses: Expression, IdsList) and `physioser_msgs` (EmotionEstimate)
  are installed into this Python's prefix beside the ROS wheels, so they import with no set-up.
- `audio_common_msgs` exists upstream twice under one name with different definitions
  (ros-drivers/audio_common and mgonzs13/audio_common), so one process can hold only one of them.
  Each flavour is installed into a prefix of its own, `<prefix>/opt/physioser/<flavour>`, and a
  process picks one by its environment (`environment(flavour)`, or in a shell
  `eval "$(physioser ros env ros-drivers)"`), as one sources a ROS workspace overlay.

`python -m physioser.ros.interfaces build` (the Makefile's `ros-interfaces` step) builds what is
missing or changed; a package whose sources are unchanged since its last build is skipped.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "ros" / "interfaces"
FLAVOURS = ("ros-drivers", "mgonzs13")
STAMP = "physioser_source.sha256"  # beside the installed package.xml: the sources it was built from


@dataclass(frozen=True)
class Package:
    name: str
    source: str  # folder under ros/interfaces
    flavour: str | None = None  # None: installed into this Python's prefix

    @property
    def prefix(self) -> Path:
        return Path(sys.prefix) if self.flavour is None else flavour_prefix(self.flavour)


PACKAGES = (
    Package("hri_msgs", "hri_msgs"),
    Package("physioser_msgs", "physioser_msgs"),
    Package("audio_common_msgs", "ros-drivers/audio_common_msgs", "ros-drivers"),
    Package("audio_common_msgs", "mgonzs13/audio_common_msgs", "mgonzs13"),
)


class BuildError(RuntimeError):
    pass


def flavour_prefix(flavour: str) -> Path:
    if flavour not in FLAVOURS:
        raise ValueError(f"audio_common_msgs flavour {flavour!r} is not one of {FLAVOURS}")
    return Path(sys.prefix) / "opt" / "physioser" / flavour


def site_packages(prefix: Path) -> Path:
    """Where a CMake install into `prefix` puts Python packages (ament_cmake_python's layout)."""
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def environment(flavour: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the `flavour` of audio_common_msgs ahead of
    everything else on the library, Python and ament paths. Raises BuildError if it is not built."""
    prefix = flavour_prefix(flavour)
    if not (prefix / "share" / "audio_common_msgs" / STAMP).is_file():
        raise BuildError(f"audio_common_msgs ({flavour}) is not built in {prefix}: run `make ros-interfaces`")
    env = dict(os.environ if base is None else base)

    def prepend(key: str, path: Path) -> None:
        env[key] = os.pathsep.join([str(path)] + [p for p in env.get(key, "").split(os.pathsep) if p])

    prepend("LD_LIBRARY_PATH", prefix / "lib")
    prepend("PYTHONPATH", site_packages(prefix))
    if not env.get("AMENT_PREFIX_PATH"):
        env["AMENT_PREFIX_PATH"] = sys.prefix
    prepend("AMENT_PREFIX_PATH", prefix)
    return env


def source_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update((SOURCES / "wheel_prefix.cmake").read_bytes())
    return digest.hexdigest()


def is_current(package: Package) -> bool:
    stamp = package.prefix / "share" / package.name / STAMP
    return stamp.is_file() and stamp.read_text().strip() == source_digest(SOURCES / package.source)


def build(packages: tuple[Package, ...] = PACKAGES, *, jobs: int = 2, force: bool = False, log=print) -> list[Package]:
    """Configure, build and install each package that is not current; returns those built."""
    if not SOURCES.is_dir():
        raise BuildError(f"{SOURCES} is missing: building the interface packages needs a source checkout of physioser")
    missing = [tool for tool in ("cmake", "cc", "c++") if shutil.which(tool) is None]
    if missing:
        raise BuildError(f"building the ROS interface packages needs {missing} (e.g. `apt-get install cmake g++`)")
    if not (Path(sys.prefix) / "share" / "rosidl_default_generators").is_dir():
        raise BuildError("the rosidl tool chain is not installed in this Python: pip install 'physioser[ros]'")
    built = []
    for package in packages:
        if not force and is_current(package):
            log(f"{package.name} ({package.source}): up to date in {package.prefix}")
            continue
        log(f"{package.name} ({package.source}): building into {package.prefix}")
        _cmake_build(package, jobs)
        stamp = package.prefix / "share" / package.name / STAMP
        stamp.write_text(source_digest(SOURCES / package.source) + "\n")
        built.append(package)
    return built


def _cmake_build(package: Package, jobs: int) -> None:
    bin_dir = Path(sysconfig.get_path("scripts"))
    env = dict(os.environ)
    env.update(
        PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "")]),
        AMENT_PREFIX_PATH=sys.prefix,
        CMAKE_PREFIX_PATH=sys.prefix,
        LD_LIBRARY_PATH=os.pathsep.join([str(Path(sys.prefix) / "lib"), env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep),
        PYTHONPATH="",  # the generators are this Python's packages; nothing from a worktree
    )
    work = REPO / "build" / "ros_interfaces" / package.source
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    steps = [
        ["cmake", "-S", str(SOURCES / package.source), "-B", str(work),
         f"-DCMAKE_INSTALL_PREFIX={package.prefix}", f"-DCMAKE_PREFIX_PATH={sys.prefix}",
         f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release",
         f"-DCMAKE_PROJECT_INCLUDE={SOURCES / 'wheel_prefix.cmake'}"],
        ["cmake", "--build", str(work), "--parallel", str(jobs)],
        ["cmake", "--install", str(work)],
    ]
    for step in steps:
        done = subprocess.run(step, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            (work / "build.log").write_text(done.stdout)
            raise BuildError(
                f"{package.name} ({package.source}): `{' '.join(step[:2])}` failed (exit {done.returncode}); "
                f"last lines:\n{done.stdout[-3000:]}\nfull log: {work / 'build.log'}"
            )


def shell_exports(flavour: str) -> str:
    """`export` lines putting `flavour` on this shell's paths (for `eval`)."""
    env = environment(flavour)
    return "".join(f"export {key}={shlex.quote(env[key])}\n" for key in ("LD_LIBRARY_PATH", "PYTHONPATH", "AMENT_PREFIX_PATH"))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m physioser.ros.interfaces", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build and install the interface packages that are missing or changed")
    b.add_argument("--force", action="store_true", help="rebuild even if up to date")
    b.add_argument("--jobs", type=int, default=2)
    e = sub.add_parser("env", help="print `export` lines selecting one audio_common_msgs flavour")
    e.add_argument("flavour", choices=FLAVOURS)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build(force=args.force, jobs=args.jobs, log=lambda line: print(line, flush=True))
        else:
            sys.stdout.write(shell_exports(args.flavour))
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
