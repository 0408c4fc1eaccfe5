"""Builds remo's compiled job relay (src/remo/supervisor/relay.c, see remo.supervisor.init)
into the package, for wheels and editable installs alike. Without a C compiler the build
goes on and remo runs its Python relay instead (more memory per running job)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

SOURCE = Path(__file__).parent / "src" / "remo" / "supervisor" / "relay.c"
FLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra"]


def build_relay(target: Path) -> None:
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        print("remo: no C compiler: jobs will use the Python relay", file=sys.stderr)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([compiler, *FLAGS, "-o", str(target), str(SOURCE)], check=False)
    if done.returncode != 0:  # e.g. a compiler without the C library's headers
        target.unlink(missing_ok=True)
        print("remo: the relay did not compile: jobs will use the Python relay", file=sys.stderr)


class BuildWithRelay(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            build_relay(SOURCE.with_name("remo-relay"))
        else:
            build_relay(Path(self.build_lib) / "remo" / "supervisor" / "remo-relay")


class WithProgram(Distribution):
    """A wheel holding a compiled program is for one platform, not ``any``."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildWithRelay}, distclass=WithProgram)
