"""vcohort: virtual cohorts of cancer patients under combination therapy (CSC–immune QSP model)."""

import os as _os

__version__ = "0.1.0"

# Work-around (measured here with jax/jaxlib 0.10.2 on a 2-core CPU): the CPU runtime's
# concurrency-optimised scheduler combined with asynchronous dispatch deadlocked (0% CPU,
# never returning) on cohort scans with three or more drugs and >= 1000 patients.  Either
# switch alone avoided it; we set both.  The flag only applies if JAX's CPU backend has not
# started yet; the config option applies at any time.  Users can override XLA_FLAGS.
if "xla_cpu_enable_concurrency_optimized_scheduler" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (
        _os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_concurrency_optimized_scheduler=false"
    ).strip()

import jax as _jax  # noqa: E402

try:
    _jax.config.update("jax_cpu_enable_async_dispatch", False)
except (AttributeError, KeyError):  # pragma: no cover - option absent in some JAX versions
    pass
