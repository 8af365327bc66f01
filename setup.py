"""Build script for the compiled codec core; all metadata lives in setup.cfg.

Both extensions are optional: where no C compiler is available the package
installs anyway and ``codec`` runs on its pure-Python decoder and encoder
(``codec.core.DECODER`` / ``ENCODER`` say which is in use).
"""
from setuptools import Extension, setup

setup(ext_modules=[
    Extension("codec._cdecode", ["codec/_cdecode.c"], optional=True),
    Extension("codec._cencode", ["codec/_cencode.c"], optional=True),
])
