# The main job, run by scripts/demo: a supervisor starts the Python worker,
# the worker runs a neural architecture search, progress is printed as trials
# finish, then everything shuts down and we check that no process is left.
#
# As in a user's project: `mix beam_nas.install`, then
#   mix run examples/demo.exs [DATASET] [SECONDS]
# The worker is the one the install task put in the build folder.
defmodule Demo do
  def main(args) do
    {dataset, seconds} = parse(args)
    say("starting a supervisor with one worker")
    {:ok, sup} = Supervisor.start_link([{BeamNas, name: BeamNas}], strategy: :one_for_one)
    os_pid = BeamNas.os_pid(BeamNas)
    command = File.read!("/proc/#{os_pid}/cmdline") |> String.split(<<0>>, trim: true) |> Enum.take(2)
    say("worker is up: OS process #{os_pid}, #{Enum.join(command, " ")}")

    printer = spawn_link(&print_progress/0)
    say("searching #{dataset} for up to #{seconds} s ...")
    spec = %{dataset_id: dataset, objective: "accuracy"}
    # n_jobs -1: one trial process per core, each started by the worker and ended with it
    opts = [progress_to: printer, seed: 42, n_jobs: -1, budget: [max_time_seconds: seconds, max_trials: 1000]]
    result = BeamNas.run_nas(spec, opts, (seconds + 120) * 1000)
    flush(printer)
    report(result)

    processes = [os_pid | descendants(os_pid)]
    say("stopping the supervisor (worker processes: #{Enum.join(processes, ", ")})")
    :ok = Supervisor.stop(sup)
    left = Enum.filter(processes, &still_running?(&1, 5_000))

    if left == [] do
      say("all worker processes have exited; done")
    else
      say("STILL RUNNING: #{Enum.join(left, ", ")}")
    end

    if left != [] or not match?({:ok, _}, result), do: System.halt(1)
  end

  defp parse([]), do: {"digits", 75}
  defp parse([dataset]), do: {dataset, 75}
  defp parse([dataset, seconds]), do: {dataset, String.to_integer(seconds)}

  defp print_progress do
    receive do
      {:flush, from} ->
        send(from, :flushed)

      {:nas_progress, e} ->
        say(
          "trial #{e["trial"]} #{e["status"]} in #{seconds(e["duration_seconds"])}: " <>
            "#{e["objective"]} #{short(e["metric"])}, best #{short(e["best_metric"])} " <>
            "(trial #{e["best_trial"]}); #{e["completed"]} done, #{seconds(e["elapsed_seconds"])} elapsed"
        )

        print_progress()

      other ->
        say("unexpected message: " <> inspect(other))
        print_progress()
    end
  end

  defp short(v) when is_float(v), do: :erlang.float_to_binary(v, decimals: 4)
  defp short(v), do: inspect(v)

  defp seconds(s) when is_number(s), do: :erlang.float_to_binary(s / 1, decimals: 1) <> " s"
  defp seconds(s), do: inspect(s)

  defp flush(printer) do
    send(printer, {:flush, self()})
    receive do: (:flushed -> :ok)
  end

  defp report({:ok, result}) do
    objective = result["metrics"]["objective"]
    say("search finished: #{result["completed_trials"]} trials in #{result["duration_ms"]} ms")
    say("best architecture (trial #{result["best_trial_id"]}):")
    IO.puts(inspect(result["best_architecture"], pretty: true, limit: :infinity))
    say("best #{objective}: validation #{short(result["best_metric"])}, held-out test #{short(result["test_metric"])}")
  end

  defp report({:error, reason}), do: say("search FAILED: " <> inspect(reason, pretty: true))

  # The OS processes below `os_pid` (the trial processes' forkserver, for instance).
  defp descendants(os_pid) do
    children =
      for dir <- Path.wildcard("/proc/[0-9]*"),
          {_state, ppid} <- [proc_stat(dir)],
          ppid == os_pid,
          do: dir |> Path.basename() |> String.to_integer()

    children ++ Enum.flat_map(children, &descendants/1)
  end

  # {state, parent pid} from /proc/PID/stat, or nil once the process is gone.
  defp proc_stat(dir) do
    with {:ok, text} <- File.read(Path.join(dir, "stat")),
         [_, after_name] <- String.split(text, ") ", parts: 2),
         [state, ppid | _] <- String.split(after_name, " ") do
      {state, String.to_integer(ppid)}
    else
      _ -> nil
    end
  end

  # Polls for up to `ms` milliseconds; true if the process is still running
  # (a zombie has finished: it only waits for its parent to collect it).
  defp still_running?(os_pid, ms) do
    running = match?({state, _} when state != "Z", proc_stat("/proc/#{os_pid}"))

    cond do
      not running -> false
      ms <= 0 -> true
      true ->
        Process.sleep(50)
        still_running?(os_pid, ms - 50)
    end
  end

  defp say(text), do: IO.puts("[demo #{Time.utc_now() |> Time.truncate(:second)}] #{text}")
end

Demo.main(System.argv())
