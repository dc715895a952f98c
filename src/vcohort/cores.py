"""Every CPU core at work: one JAX CPU device per core, patients sharded over them.

JAX gives a CPU one device by default, and XLA then splits each small elementwise kernel over
its thread pool, which for this simulator (thousands of kernels of a few microseconds per step)
leaves most of the second core idle.  Several CPU devices instead run whole chunks of patients
side by side: `vcohort.simulate.simulate` shards each chunk's patient axis over
``jax.local_devices()``, with the same per-patient results.  Measured on a 2-core CPU (8,192
patients, 60 days, triple combination): 0.17-0.18 M patient-days/s on one device, 0.32-0.39 M on
two in float64 (0.21-0.23 M and 0.38-0.54 M in float32).

The number of CPU devices is fixed when JAX starts its backends, so `use_cpu_cores` must run
before the first JAX operation.  The command line calls it (``--cpu-devices``, default: every
core this process may use).
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def available_cores(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """CPU cores this process may use: its affinity mask (else ``os.cpu_count()``), capped by a
    container's CPU quota (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us``), rounded up: ``docker --cpus 4`` on a 64-core host gives 4, not 64
    CPU devices sharing four cores' time."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        n = min(n or 1, math.ceil(quota))
    return max(1, n or 1)


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs' worth of time the cgroup may use per period (None: no quota, or no cgroup files)."""
    base = Path(root)

    def read(*parts):
        try:
            return (base.joinpath(*parts)).read_text().split()
        except (OSError, ValueError):
            return None

    def ratio(q, period):
        try:
            q, period = float(q), float(period)
        except ValueError:
            return None
        return q / period if q > 0 and period > 0 else None  # v1 "-1": no quota

    v2 = read("cpu.max")  # "max 100000" (no quota) or "400000 100000"
    if v2 and len(v2) == 2:
        return None if v2[0] == "max" else ratio(*v2)
    quota, period = read("cpu", "cpu.cfs_quota_us"), read("cpu", "cpu.cfs_period_us")
    return ratio(quota[0], period[0]) if quota and period else None


def _user_chose() -> bool:
    """True when the environment already fixes the CPU device count."""
    return "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or bool(
        os.environ.get("JAX_NUM_CPU_DEVICES")
    )


def use_cpu_cores(n: int | None = None, *, strict: bool = True) -> int:
    """Ask JAX for ``n`` CPU devices (default: `available_cores`); returns the count in effect.

    Args:
        n: CPU devices wanted (an integer >= 1).
        strict: when JAX has already started with another count, raise (True) or keep it
            (False, what the command line does when called from a running program).

    A count already fixed by the environment (``XLA_FLAGS=--xla_force_host_platform_device_count``
    or ``JAX_NUM_CPU_DEVICES``) is kept.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"cpu devices={n!r} must be an integer >= 1")
    import jax

    want = available_cores() if n is None else n
    if _user_chose() or _started():
        have = len(jax.devices("cpu"))
        if have != want and strict and not _user_chose():
            raise RuntimeError(
                f"use_cpu_cores({want}) must run before JAX's first operation: JAX already "
                f"runs with {have} CPU device(s); call it right after `import jax`"
            )
        return have
    jax.config.update("jax_num_cpu_devices", want)
    return want


def _started() -> bool:
    """Whether JAX has started its backends (after which the device count is fixed)."""
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # private API moved: assume started (never raises)
        return True
