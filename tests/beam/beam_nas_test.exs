# ExUnit tests of the Elixir API (lib/beam_nas.ex) on real Python workers.

defmodule BeamNasTest do
  use ExUnit.Case, async: false

  @worker [
    python: System.fetch_env!("BEAM_NAS_TEST_PYTHON"),
    python_path: [System.fetch_env!("BEAM_NAS_TEST_PYPATH")]
  ]
  @runs System.fetch_env!("BEAM_NAS_TEST_RUNS")

  setup do
    %{w: start_supervised!({BeamNas, @worker})}
  end

  test "strings, maps and nil come back Elixir-shaped", %{w: w} do
    value = %{"name" => "héllo 世界", "nothing" => nil, "list" => [1, 2.5, "x"], "flag" => true}
    assert BeamNas.call(w, :priv_jobs, :echo, [value]) == {:ok, value}
    assert BeamNas.call(w, :priv_jobs, :describe, ["text"]) == {:ok, ["str", "text"]}
    assert BeamNas.call(w, :priv_jobs, :echo, [nil]) == {:ok, nil}
  end

  test "module and function names may be strings, dotted ones included", %{w: w} do
    assert BeamNas.call(w, "math", "sqrt", [16.0]) == {:ok, 4.0}
    assert BeamNas.call(w, "os.path", "basename", ["/a/b.txt"]) == {:ok, "b.txt"}
  end

  test "a Python exception is an error tuple and the worker lives on", %{w: w} do
    assert {:error, {:python, class, message, traceback}} = BeamNas.call(w, :priv_jobs, :fail, ["nope"])
    assert Atom.to_string(class) =~ "ValueError"
    assert to_string(message) =~ "nope"
    assert is_list(traceback)
    assert BeamNas.call(w, :priv_jobs, :echo, [1]) == {:ok, 1}
  end

  test "a timeout is {:error, :timeout}", %{w: w} do
    assert BeamNas.call(w, :priv_jobs, :cancellable, [20, self()], 1000) == {:error, :timeout}
    assert_receive "cancelled", 10_000
  end

  test "cast runs without a reply and Python can message the caller", %{w: w} do
    assert :ok = BeamNas.cast(w, :priv_jobs, :send_to, [self(), {:cast_done, "yes"}])
    assert_receive {:cast_done, "yes"}, 5_000
  end

  test "the supervisor restarts a worker whose process was killed", %{w: w} do
    os_pid = BeamNas.os_pid(w)
    ref = Process.monitor(w)
    :os.cmd(String.to_charlist("kill -9 #{os_pid}"))
    assert_receive {:DOWN, ^ref, :process, ^w, {:worker_exit, 137}}, 10_000
    new = wait_for_restart(w)
    assert BeamNas.call(new, :priv_jobs, :echo, ["again"]) == {:ok, "again"}
  end

  test "{:pool, pool} spreads calls over the pool's workers" do
    pool = start_supervised!(:beam_nas_pool.child_spec(%{size: 2, worker: Map.new(@worker)}))
    tasks = for _ <- 1..2, do: Task.async(fn -> BeamNas.call({:pool, pool}, :priv_jobs, :burn, [30_000_000]) end)
    os_pids = for {:ok, os_pid} <- Task.await_many(tasks, 30_000), uniq: true, do: os_pid
    assert Enum.sort(os_pids) == Enum.sort(for w <- :beam_nas_pool.workers(pool), do: BeamNas.os_pid(w))
  end

  test "allow and the frame limit are worker options" do
    w = start_supervised!({BeamNas, @worker ++ [id: :limited, allow: [:priv_jobs], packet: 2]})
    not_allowed = :"erlport_worker.allow.NotAllowed"
    assert BeamNas.call(w, :priv_jobs, :echo, [1]) == {:ok, 1}
    assert {:error, {:python, ^not_allowed, _, _}} = BeamNas.call(w, :os, :getcwd, [])
    assert {:error, {:python, ^not_allowed, _, _}} = BeamNas.call(w, :priv_jobs, "os.system", ["true"])
    big = String.duplicate("x", 70_000)
    assert {:error, {:too_large, bytes, 65_535}} = BeamNas.call(w, :priv_jobs, :echo, [big])
    assert bytes > 70_000
    assert BeamNas.call(w, :priv_jobs, :echo, [2]) == {:ok, 2}
  end

  test "bad options are reported, not crashed on" do
    assert {:error, {:unknown_options, [:pyhton], _}} = BeamNas.start_link(pyhton: "python3")
    assert {:error, {:worker_not_found, _}} = BeamNas.start_link(python: "/nonexistent/python")
  end

  test "run_nas returns the search result and sends progress to the caller", %{w: w} do
    spec = %{dataset_id: "iris", objective: :accuracy}
    opts = [server: w, seed: 1, budget: [max_trials: 3, population_size: 3]]
    assert {:ok, result} = BeamNas.run_nas(spec, opts, 120_000)
    assert result["status"] == "success"
    assert result["completed_trials"] == 3
    assert is_float(result["best_metric"]) and is_float(result["test_metric"])
    assert %{"fitness" => _} = result["best_architecture"]
    # One progress message per finished trial, already in our mailbox.
    {:messages, messages} = Process.info(self(), :messages)
    events = for {:nas_progress, e} <- messages, do: e
    assert Enum.map(events, & &1["completed"]) == [1, 2, 3]
    assert Enum.all?(events, &(&1["run_id"] == result["run_id"]))
  end

  test "run_nas sends progress to the pid given as :progress_to", %{w: w} do
    me = self()
    listener = spawn_link(fn -> receive do: ({:nas_progress, e} -> send(me, {:listener_got, e})) end)
    opts = %{server: w, progress_to: listener, budget: %{max_trials: 1}}
    assert {:ok, %{"completed_trials" => 1}} = BeamNas.run_nas(%{dataset_id: "iris"}, opts, 120_000)
    assert_receive {:listener_got, %{"trial" => _}}, 5_000
    refute_received {:nas_progress, _}
  end

  test "run_nas reports a failed search as an error with the result", %{w: w} do
    spec = %{dataset_id: "no_such_dataset"}
    assert {:error, {:nas_failed, result}} = BeamNas.run_nas(spec, [server: w], 60_000)
    assert result["status"] == "failed"
    assert is_binary(result["error"])
  end

  test "run_status, cancel_run and predict reach a search whichever worker of a pool runs it" do
    pool = {:pool, start_supervised!(:beam_nas_pool.child_spec(%{size: 2, worker: Map.new(@worker)}))}
    run_dir = Path.join(@runs, "pooled")
    opts = [server: pool, run_id: "pooled", run_dir: run_dir, progress_to: self(),
            budget: [max_trials: 100_000, max_time_seconds: 300]]
    search = Task.async(fn -> BeamNas.run_nas(%{dataset_id: "iris"}, opts, 300_000) end)
    assert_receive {:nas_progress, %{"run_id" => "pooled"}}, 60_000
    # the idle worker is asked too, and answers "unknown"; the answer is the busy one's
    assert {:ok, %{"status" => "running", "run_dir" => ^run_dir}} = BeamNas.run_status(pool, "pooled")
    assert {:ok, %{"status" => "cancelling"}} = BeamNas.cancel_run(pool, "pooled")
    assert {:ok, %{"metadata" => %{"stopped_reason" => "cancelled"}}} = Task.await(search, 120_000)
    assert {:ok, %{"status" => "cancelled"}} = BeamNas.run_status(pool, "pooled")
    assert {:ok, %{"status" => "unknown"}} = BeamNas.run_status(pool, "no-such-run")
    assert {:ok, %{"predictions" => [_, _], "classes" => [0, 1, 2]}} =
             BeamNas.predict(pool, "pooled", [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    assert {:error, {:predict_failed, %{"status" => "failed"}}} = BeamNas.predict(pool, "no-such-run", [[1.0]])
  end

  test "a run_nas that outlives its timeout stops at once, and its worker lives on" do
    # A grace far above the cancellation's real cost (well under a second on a quiet machine), so
    # a loaded machine cannot turn "cancelled" into "killed": the test is about which, not how fast.
    w = start_supervised!({BeamNas, @worker ++ [id: :patient, cancel_grace: 60_000]})
    os_pid = BeamNas.os_pid(w)
    endless = %{levels: 2, units_per_level: 2, neurons_per_unit: 64, epochs: 100_000, patience: 100_000}
    opts = [server: w, run_id: "too-long", run_dir: Path.join(@runs, "too-long"), n_jobs: 2, folds: 1,
            budget: [max_trials: 100, max_time_seconds: 600]]
    assert BeamNas.run_nas(%{dataset_id: "digits", search_space: endless}, opts, 5_000) == {:error, :timeout}
    # cancelled within the worker's cancel_grace, so it was not killed: the same OS process answers
    assert wait_for_status(w, "too-long", "cancelled", 600)
    assert BeamNas.os_pid(w) == os_pid
    assert BeamNas.call(w, :priv_jobs, :echo, [1]) == {:ok, 1}
  end

  # Polls run_status (every 100 ms, `tries` times) until the run is in `state`.
  defp wait_for_status(server, run_id, state, tries \\ 300) do
    case BeamNas.run_status(server, run_id) do
      {:ok, %{"status" => ^state}} ->
        true

      _ ->
        assert tries > 0, "run #{run_id} never became #{state}"
        Process.sleep(100)
        wait_for_status(server, run_id, state, tries - 1)
    end
  end

  # Polls the test supervisor (for up to 10 s) until it runs a new worker.
  defp wait_for_restart(old, tries \\ 200) do
    {:ok, sup} = ExUnit.fetch_test_supervisor()
    [{BeamNas, pid, _, _}] = Supervisor.which_children(sup)

    if is_pid(pid) and pid != old do
      pid
    else
      assert tries > 0, "the worker was not restarted"
      Process.sleep(50)
      wait_for_restart(old, tries - 1)
    end
  end
end
