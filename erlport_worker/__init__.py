"""erlport-worker: a Python port process for Erlang/Elixir, wire-compatible with stock ErlPort.

Run it with ``python -m erlport_worker`` or the ``erlport-worker`` script;
called code talks back to Erlang through ``erlport_worker.api``.
"""
