"""The module the ``--allow`` tests allow: what it defines or exports can be called,
what it merely imports (modules, foreign functions) cannot."""
import os
import os as o
from os import getcwd, system
from os.path import join as exported_join

__all__ = ["add", "exported_join"]


def add(a, b):
    return a + b


add.runner = os.system


class Service:
    """A class defined here: its own methods can be called, inherited object methods cannot."""

    @staticmethod
    def version():
        return "1.0"

    def __init__(self):
        self.runner = system


service = Service()
current_directory = getcwd
