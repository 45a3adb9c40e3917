"""Pin the vectorised peers (NumPy's BLAS, XLA) to one thread.

agrad runs on one thread, so a peer with a thread pool would be timed on a
resource agrad does not use, and on this shared 2-core machine its threads
would also compete with everything else.  The libraries read these settings
once, when they are first imported: import this module before numpy, jax or
torch.  A value already in the environment is kept (someone measuring on
purpose with more threads).
"""

import os

ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    # XLA's CPU backend: no Eigen thread pool inside an operation, one
    # operation at a time
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    # the CPU is all there is here: no probing for GPU or TPU plugins
    "JAX_PLATFORMS": "cpu",
}

for name, value in ONE_THREAD.items():
    os.environ.setdefault(name, value)


def settings() -> dict[str, str]:
    """The thread settings in force, for the report."""
    return {name: os.environ[name] for name in ONE_THREAD}
