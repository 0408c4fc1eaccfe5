"""cgroup managers: put each job in its own cgroup(s), limit, account and kill it.

Layout follows opencontainers/cgroups: :mod:`~remo.cgroups.base` holds the protocols and
file I/O, one module per backend (:mod:`~remo.cgroups.v1` for v1 and hybrid,
:mod:`~remo.cgroups.v2`, :mod:`~remo.cgroups.none`), and :func:`detect` picks one.
"""

from remo.cgroups.base import CgroupDriver, JobGroup
from remo.cgroups.detect import detect
from remo.core.outcome import Usage

__all__ = ["CgroupDriver", "JobGroup", "Usage", "detect"]
