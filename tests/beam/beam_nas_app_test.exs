# ExUnit tests of the beam_nas application: its environment, where workers
# are found, the pool it starts, run_nas's :progress option and the specs.
defmodule BeamNasAppTest do
  use ExUnit.Case, async: false

  @python System.fetch_env!("BEAM_NAS_TEST_PYTHON")
  @pypath System.fetch_env!("BEAM_NAS_TEST_PYPATH")
  @env_keys [:python, :python_path, :venv, :timeout, :max_concurrent, :runs_root, :pool, :allow, :cluster]

  setup do
    path = System.get_env("PATH")

    on_exit(fn ->
      System.put_env("PATH", path)
      Application.stop(:beam_nas)
      for key <- @env_keys, do: Application.delete_env(:beam_nas, key)
      :ok = Application.start(:beam_nas)
    end)

    Application.put_env(:beam_nas, :python_path, [@pypath])
    tmp = Path.join(System.fetch_env!("BEAM_NAS_TEST_RUNS"), "app_test_#{System.unique_integer([:positive])}")
    File.rm_rf!(tmp)
    %{tmp: tmp}
  end

  # The command line of the worker's OS process, which names the script it runs.
  defp cmdline(worker), do: File.read!("/proc/#{BeamNas.os_pid(worker)}/cmdline")

  defp without_worker_on_path, do: System.put_env("PATH", "/usr/bin:/bin")

  defp fake_venv(dir) do
    File.mkdir_p!(Path.join(dir, "bin"))
    File.ln_s!(@python, Path.join(dir, "bin/erlport-worker"))
    dir
  end

  describe "finding the worker" do
    test "the python option wins over the application environment" do
      Application.put_env(:beam_nas, :python, "/nonexistent/worker")
      w = start_supervised!({BeamNas, python: @python})
      assert BeamNas.call(w, :priv_jobs, :echo, [1]) == {:ok, 1}
    end

    test "the application environment's python is used, and a wrong one is named" do
      Application.put_env(:beam_nas, :python, @python)
      w = start_supervised!({BeamNas, []})
      assert cmdline(w) =~ @python
      Application.put_env(:beam_nas, :python, "/nonexistent/worker --flag")

      assert BeamNas.start_link() ==
               {:error, {:worker_not_found, [{{:app_env, :python}, ~c"/nonexistent/worker --flag"}]}}
    end

    test "the install task's virtualenv comes before PATH", %{tmp: tmp} do
      venv = fake_venv(Path.join(tmp, "venv"))
      Application.put_env(:beam_nas, :venv, venv)
      w = start_supervised!({BeamNas, []})
      assert cmdline(w) =~ Path.join(venv, "bin/erlport-worker")
    end

    test "erlport-worker on PATH comes last", %{tmp: tmp} do
      Application.put_env(:beam_nas, :venv, Path.join(tmp, "empty"))
      System.put_env("PATH", Path.dirname(@python) <> ":/usr/bin:/bin")
      w = start_supervised!({BeamNas, []})
      assert cmdline(w) =~ @python
    end

    test "when nothing is found the error names every place looked in" do
      without_worker_on_path()
      venv_worker = to_charlist(Path.join(to_string(:code.lib_dir(:beam_nas)), "venv/bin/erlport-worker"))

      assert BeamNas.start_link() ==
               {:error,
                {:worker_not_found,
                 [{{:option, :python}, :unset}, {{:app_env, :python}, :unset}, {:venv, venv_worker},
                  {:PATH, ~c"erlport-worker"}]}}
    end
  end

  describe "the application environment" do
    test "sets worker defaults, which options override" do
      Application.put_env(:beam_nas, :timeout, 300)
      env_only = start_supervised!({BeamNas, id: :env_only, python: @python})
      assert BeamNas.call(env_only, :priv_jobs, :cancellable, [30, self()]) == {:error, :timeout}
      assert_receive "cancelled", 10_000
      overridden = start_supervised!({BeamNas, id: :overridden, python: @python, timeout: 30_000})
      assert BeamNas.call(overridden, :priv_jobs, :cancellable, [1, self()]) == {:ok, "finished"}
    end

    test "allow from the environment limits every worker's calls, and an option replaces it" do
      Application.put_env(:beam_nas, :allow, [:priv_jobs])
      w = start_supervised!({BeamNas, id: :limited, python: @python})
      assert BeamNas.call(w, :priv_jobs, :echo, [1]) == {:ok, 1}
      assert {:error, {:python, :"erlport_worker.allow.NotAllowed", _, _}} = BeamNas.call(w, :os, :getcwd, [])
      wider = start_supervised!({BeamNas, id: :wider, python: @python, allow: [:priv_jobs, :os]})
      assert {:ok, _} = BeamNas.call(wider, :os, :getcwd, [])
    end

    test "a bad value is reported as the environment's, not an option's" do
      Application.put_env(:beam_nas, :max_concurrent, 0)
      assert BeamNas.start_link(python: @python) == {:error, {:bad_app_env, :beam_nas, [max_concurrent: 0]}}
      Application.delete_env(:beam_nas, :max_concurrent)
      Application.put_env(:beam_nas, :python, 42)
      assert BeamNas.start_link() == {:error, {:bad_app_env, :beam_nas, [python: 42]}}
      assert {:error, {:bad_options, [max_concurrent: -1]}} = BeamNas.start_link(python: @python, max_concurrent: -1)
    end

    test "without pool the application starts only the clusters' pg scope" do
      assert [{:pg, _, :worker, _}] = Supervisor.which_children(:beam_nas_sup)
      assert Process.whereis(:beam_nas) == nil
    end

    test "pool and cluster: the pool is lent to the cluster, and a cluster needs a pool" do
      Application.stop(:beam_nas)
      Application.put_env(:beam_nas, :python, @python)
      Application.put_env(:beam_nas, :cluster, "nightly")
      assert {:error, {{:bad_app_env, :beam_nas, [cluster: "nightly", pool: :undefined]}, _}} = Application.start(:beam_nas)
      Application.put_env(:beam_nas, :pool, size: 1)
      :ok = Application.start(:beam_nas)
      assert [lender] = :pg.get_members(:beam_nas_cluster, "nightly")
      assert %{cluster: "nightly", slots: 1, running: %{}} = :beam_nas_lender.info(lender)
      Application.stop(:beam_nas)
      Application.put_env(:beam_nas, :cluster, 42)
      assert {:error, {{:bad_app_env, :beam_nas, [cluster: 42]}, _}} = Application.start(:beam_nas)
    end

    test "pool: [size: 2] starts a pool registered as :beam_nas, the API's default server" do
      Application.stop(:beam_nas)
      Application.put_env(:beam_nas, :python, @python)
      Application.put_env(:beam_nas, :pool, size: 2)
      :ok = Application.start(:beam_nas)
      assert length(:beam_nas_pool.workers(:beam_nas)) == 2
      assert BeamNas.call({:pool, :beam_nas}, :priv_jobs, :echo, ["pooled"]) == {:ok, "pooled"}
      assert {:ok, %{"status" => "unknown"}} = BeamNas.run_status("no-such-run")
    end

    test "a malformed pool, or one naming itself, stops the application from starting" do
      Application.stop(:beam_nas)

      for pool <- [:yes, [size: 1, name: :mine], [:size]] do
        Application.put_env(:beam_nas, :pool, pool)
        assert {:error, {{:bad_app_env, :beam_nas, [pool: ^pool]}, _}} = Application.start(:beam_nas)
      end
    end
  end

  describe "run_nas's :progress option" do
    def forward(event, pid, tag), do: send(pid, {tag, event})

    test "a function gets every event before run_nas returns; events match the journal", %{tmp: tmp} do
      Application.put_env(:beam_nas, :runs_root, tmp)
      w = start_supervised!({BeamNas, python: @python})
      me = self()
      opts = [server: w, run_id: "rooted", seed: 1, budget: [max_trials: 3, population_size: 3],
              progress: fn event -> send(me, {:fun, event}) end]
      assert {:ok, %{"completed_trials" => 3}} = BeamNas.run_nas(%{dataset_id: "iris"}, opts, 120_000)
      {:messages, messages} = Process.info(self(), :messages)
      events = for {:fun, e} <- messages, do: e
      assert length(events) == 3
      refute Enum.any?(messages, &match?({:nas_progress, _}, &1))

      # runs_root put the run there; each event agrees with its trial's journal record
      journal = File.read!(Path.join([tmp, "rooted", "journal.jsonl"])) |> String.split("\n", trim: true)
      records = for line <- journal, do: elem(BeamNas.call(w, :json, :loads, [line]), 1)

      for {event, record} <- Enum.zip(Enum.sort_by(events, & &1["trial"]), records) do
        assert {event["trial"], event["status"], event["metric"], event["generation"], event["duration_seconds"]} ==
                 {record["number"], record["status"], record["value"], record["generation"],
                  record["duration_seconds"]}
      end
    end

    test "{module, function, args} is called with the event first; a failing callback loses nothing else" do
      w = start_supervised!({BeamNas, python: @python})
      opts = [server: w, budget: [max_trials: 2, population_size: 2],
              progress: {__MODULE__, :forward, [self(), :mfa]}]
      assert {:ok, _} = BeamNas.run_nas(%{dataset_id: "iris"}, opts, 120_000)
      assert_received {:mfa, %{"completed" => 1}}
      assert_received {:mfa, %{"completed" => 2}}

      crashing = [server: w, budget: [max_trials: 2, population_size: 2], progress: fn _ -> raise "boom" end]
      assert {:ok, %{"completed_trials" => 2}} = BeamNas.run_nas(%{dataset_id: "iris"}, crashing, 120_000)
    end

    test "a :progress that is neither is refused before the search starts" do
      assert BeamNas.run_nas(%{dataset_id: "iris"}, progress: :stdout) ==
               {:error, {:bad_option, :progress, :stdout}}

      assert BeamNas.run_nas(%{dataset_id: "iris"}, progress: fn _a, _b -> :ok end) |> elem(0) == :error
    end
  end

  describe "the install task refuses what it cannot do, naming it" do
    test "unknown options, a missing interpreter, a folder that is not this repository", %{tmp: tmp} do
      assert {:error, {:unknown_options, [:venvv], _}} = :beam_nas_install.install(%{venvv: tmp})
      venv = Path.join(tmp, "venv")

      assert :beam_nas_install.install(%{venv: venv, python: "/nonexistent/python3"}) ==
               {:error, {:python_not_found, ~c"/nonexistent/python3"}}

      refute File.exists?(venv)
      assert :beam_nas_install.install(%{venv: venv, source: tmp}) == {:error, {:not_a_beam_nas_repository, to_charlist(tmp)}}
    end

    test "mix beam_nas.install refuses an unknown switch" do
      assert_raise OptionParser.ParseError, ~r/--venvv/, fn -> Mix.Tasks.BeamNas.Install.run(["--venvv", "x"]) end
    end
  end

  test "every exported function has a spec" do
    {:ok, modules} = :application.get_key(:beam_nas, :modules)

    missing =
      for module <- modules,
          {:ok, specs} = Code.Typespec.fetch_specs(module),
          specced = MapSet.new(specs, &elem(&1, 0)),
          {name, arity} <- module.module_info(:exports),
          name != :module_info and not String.starts_with?(Atom.to_string(name), "__"),
          not Enum.any?(full_arities(module, name, arity), &MapSet.member?(specced, {name, &1})),
          do: {module, name, arity}

    assert missing == []
  end

  # `arity` itself, and the arity of a function with default arguments that defines it.
  defp full_arities(module, name, arity) do
    defaults =
      case Code.fetch_docs(module) do
        {:docs_v1, _, _, _, _, _, docs} ->
          for {{:function, ^name, full}, _, _, _, %{defaults: d}} <- docs, full - d <= arity, do: full

        _ ->
          []
      end

    [arity | defaults]
  end
end
