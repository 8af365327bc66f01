# `mix test` runs the ExUnit files here (mix.exs: test_paths). Their workers run
# the Python of $BEAM_NAS_TEST_PYTHON with tests/beam on $BEAM_NAS_TEST_PYPATH;
# tests/beam/test_beam_side.py sets both.
ExUnit.start(trace: true, capture_log: true)
