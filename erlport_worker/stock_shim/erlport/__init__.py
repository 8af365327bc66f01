"""This worker's stand-in for stock ErlPort's Python package ``erlport``.

Only importable inside erlport-worker, and only when stock's own package is
not: the worker appends this package's folder to the end of ``sys.path``.
It holds what code written for stock ErlPort imports: the value types
(``erlport.erlterms``) and the API for talking to Erlang (``erlport.erlang``,
whose functions the worker fills in at start-up, as stock's runtime does).
"""
from erlport.erlterms import Atom, ImproperList, List

__all__ = ["Atom", "ImproperList", "List"]
