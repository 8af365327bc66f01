"""Build script for the compiled codec core, AdamW step and batch-norm passes; all metadata lives in setup.cfg.

Every extension is optional: where no C compiler is available the package
installs anyway, ``codec`` runs on its pure-Python decoder and encoder
(``codec.core.DECODER`` / ``ENCODER`` say which is in use) and the engine on
its numpy AdamW step and batch-norm passes (``cerebros.optim.STEP``,
``cerebros.batchnorm.FORWARD``).
"""
from setuptools import Extension, setup

# no fused multiply-add: the engine's kernels must round as their numpy twins do; sqrt without
# errno vectorises
AS_NUMPY_ROUNDS = ["-O3", "-ffp-contract=off", "-fno-math-errno"]

setup(ext_modules=[
    Extension("codec._cdecode", ["codec/_cdecode.c"], optional=True),
    Extension("codec._cencode", ["codec/_cencode.c"], optional=True),
    Extension("cerebros._adamw", ["cerebros/_adamw.c"], optional=True, extra_compile_args=AS_NUMPY_ROUNDS),
    Extension("cerebros._batchnorm", ["cerebros/_batchnorm.c"], optional=True, extra_compile_args=AS_NUMPY_ROUNDS),
])
