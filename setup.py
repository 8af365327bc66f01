"""Build script for the compiled codec core and AdamW step; all metadata lives in setup.cfg.

Every extension is optional: where no C compiler is available the package
installs anyway, ``codec`` runs on its pure-Python decoder and encoder
(``codec.core.DECODER`` / ``ENCODER`` say which is in use) and the engine on
its numpy AdamW step (``cerebros.optim.STEP``).
"""
from setuptools import Extension, setup

setup(ext_modules=[
    Extension("codec._cdecode", ["codec/_cdecode.c"], optional=True),
    Extension("codec._cencode", ["codec/_cencode.c"], optional=True),
    # no fused multiply-add: the step must round as numpy's does; sqrt without errno vectorises
    Extension("cerebros._adamw", ["cerebros/_adamw.c"], optional=True,
              extra_compile_args=["-O3", "-ffp-contract=off", "-fno-math-errno"]),
])
