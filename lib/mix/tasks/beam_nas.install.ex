defmodule Mix.Tasks.BeamNas.Install do
  @shortdoc "Installs beam-nas's Python side: a virtualenv with erlport-worker"
  @moduledoc """
  Creates a virtualenv, pip-installs this repository's Python package into
  it and checks that its `erlport-worker` answers:

      mix beam_nas.install [--venv DIR] [--python EXE] [--system-site-packages] [--pip-arg=ARG]...

  The virtualenv is `--venv`, else `config :beam_nas, venv: DIR`, else
  `venv` in the build directory of `:beam_nas` (`_build/MIX_ENV/lib/beam_nas/venv`),
  where workers look for it. `--python` creates it (default `python3`);
  `--system-site-packages` lets it use the packages that interpreter has;
  each `--pip-arg` goes to `pip install` (e.g. `--pip-arg=--no-build-isolation`). When
  the package's sources and these arguments have not changed since the last
  run, pip is skipped and only the worker is checked.
  """
  use Mix.Task

  @requirements ["app.config"]
  @switches [venv: :string, python: :string, system_site_packages: :boolean, pip_arg: :keep]

  @impl Mix.Task
  @spec run([String.t()]) :: :ok
  def run(args) do
    {parsed, _} = OptionParser.parse!(args, strict: @switches)

    options =
      Enum.reduce(parsed, %{}, fn
        {:pip_arg, arg}, acc -> Map.update(acc, :pip_args, [arg], &(&1 ++ [arg]))
        {key, value}, acc -> Map.put(acc, key, value)
      end)

    case :beam_nas_install.install(options) do
      {:ok, _venv} -> :ok
      {:error, reason} -> Mix.raise("beam_nas.install failed: #{inspect(reason, pretty: true)}")
    end
  end
end
