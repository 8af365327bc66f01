# Benchmark of the BEAM side: a pool of 2 workers against 1 on a CPU-bound
# Python call, and the cost of the Elixir API and the pool's dispatcher over
# a raw beam_nas_worker call. Prints a markdown table.
#
#   elixir bench/pool_bench.exs            (from the repository root)
#
# The worker is `erlport-worker` (PATH or .venv/bin), or $BEAM_NAS_PYTHON.
root = Path.expand("..", __DIR__)
ebin = Path.join(System.tmp_dir!(), "beam_nas_bench_ebin")
{_, 0} = System.cmd("bash", [Path.join(root, "priv/build.sh"), ebin], into: IO.stream())
Code.prepend_path(ebin)

defmodule PoolBench do
  @cpu_iterations 5_000_000
  @cpu_calls 8
  @echo_calls 1_000
  @rounds 5

  def run(root) do
    load = "/proc/loadavg" |> File.read!() |> String.split() |> Enum.take(3) |> Enum.join(" ")
    worker = worker_options(root)
    {one, one_n} = cpu_bound(worker, 1)
    {two, two_n} = cpu_bound(worker, 2)

    {:ok, w} = :beam_nas_worker.start_link(worker)
    {:ok, pool} = :beam_nas_pool.start_link(%{size: 1, worker: worker})

    [raw, elixir, pooled] =
      per_call([
        fn -> {:ok, 1} = :beam_nas_worker.call(w, :operator, :pos, [1], 5000) end,
        fn -> {:ok, 1} = BeamNas.call(w, :operator, :pos, [1], 5000) end,
        fn -> {:ok, 1} = :beam_nas_pool.call(pool, :operator, :pos, [1], 5000) end
      ])

    IO.puts("""

    | measurement | result |
    |---|---|
    | #{@cpu_calls} concurrent CPU-bound calls (#{@cpu_iterations} Python loop steps each), pool of 1 (#{one_n} OS process used) | #{ms(one)} ms |
    | same, pool of 2 (#{two_n} OS processes used) | #{ms(two)} ms |
    | speed-up of 2 workers over 1 | #{Float.round(one / two, 2)}x |
    | sequential trivial call, raw `:beam_nas_worker.call` | #{us(raw)} us |
    | same through `BeamNas.call` (Elixir API) | #{us(elixir)} us (#{us(elixir - raw)} us overhead) |
    | same through `:beam_nas_pool.call` (dispatcher) | #{us(pooled)} us (#{us(pooled - raw)} us overhead) |

    (#{System.schedulers_online()} schedulers, load average before the run #{load}; best of #{@rounds} rounds each, trivial-call rows interleaved, #{@echo_calls} calls a round; OTP #{System.otp_release()}, Elixir #{System.version()})
    """)
  end

  defp worker_options(root) do
    python = System.get_env("BEAM_NAS_PYTHON") || default_python(root)
    # The busy loop lives with the tests' Python helpers.
    %{python: python, python_path: [Path.join(root, "tests/priv"), root]}
  end

  defp default_python(root) do
    System.find_executable("erlport-worker") || Path.join(root, ".venv/bin/erlport-worker")
  end

  # Runs the CPU-bound calls all at once through a pool of `size` workers, in
  # several rounds; returns the best wall time in microseconds and how many
  # OS processes served the calls.
  defp cpu_bound(worker, size) do
    {:ok, pool} = :beam_nas_pool.start_link(%{size: size, worker: worker})

    rounds =
      for _ <- 1..@rounds do
        :timer.tc(fn ->
          1..@cpu_calls
          |> Enum.map(fn _ ->
            Task.async(fn -> :beam_nas_pool.call(pool, :priv_jobs, :burn, [@cpu_iterations], 60_000) end)
          end)
          |> Enum.map(&Task.await(&1, 60_000))
        end)
      end

    Supervisor.stop(pool)
    {time, _} = Enum.min_by(rounds, &elem(&1, 0))
    pids = for {_, results} <- rounds, {:ok, pid} <- results, uniq: true, do: pid
    {time, length(pids)}
  end

  # Microseconds per call of each fun: the best of several interleaved rounds,
  # so that noise from other processes on the machine hits all of them alike.
  defp per_call(funs) do
    Enum.each(funs, fn fun -> Enum.each(1..200, fn _ -> fun.() end) end)

    1..@rounds
    |> Enum.map(fn _ ->
      Enum.map(funs, fn fun ->
        {time, :ok} = :timer.tc(fn -> Enum.each(1..@echo_calls, fn _ -> fun.() end) end)
        time / @echo_calls
      end)
    end)
    |> Enum.zip_with(&Enum.min/1)
  end

  defp ms(us), do: round(us / 1000)
  defp us(x), do: Float.round(x / 1, 1)
end

PoolBench.run(root)
