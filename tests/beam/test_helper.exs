# `mix test` runs the ExUnit files here (mix.exs: test_paths). Their workers run
# the Python of $BEAM_NAS_TEST_PYTHON with tests/beam on $BEAM_NAS_TEST_PYPATH, and
# searches go to $BEAM_NAS_TEST_RUNS; tests/beam/test_beam_side.py sets all three.
ExUnit.start(trace: true, capture_log: true)
