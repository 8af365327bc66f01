defmodule BeamNas.MixProject do
  use Mix.Project

  # The BEAM side of beam-nas as an OTP application. Erlang sources are in src/
  # (rebar3 builds the same application from rebar.config), Elixir in lib/.
  def project do
    [
      app: :beam_nas,
      version: "0.1.0",
      elixir: "~> 1.14",
      deps: [],
      test_paths: ["tests/beam"],
      test_pattern: "*_test.exs"
    ]
  end

  def application do
    [mod: {:beam_nas_app, []}, extra_applications: [:logger]]
  end
end
