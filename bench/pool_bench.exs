# Benchmark of the BEAM side: a pool of 2 workers against 1 on a CPU-bound
# Python call, and the cost of the Elixir API and the pool's dispatcher over
# a raw beam_nas_worker call. Prints a markdown table; --markdown also writes it
# into docs/benchmarks.md (through bench/markdown_section.py, with python3).
#
#   mix run bench/pool_bench.exs [--markdown [PAGE]]     (from the repository root)
#
# The worker is `erlport-worker` (PATH or .venv/bin), or $BEAM_NAS_PYTHON.
root = Path.expand("..", __DIR__)

defmodule PoolBench do
  @cpu_iterations 5_000_000
  @cpu_calls 8
  @echo_calls 3_000
  @rounds 5

  def run(root, markdown_page) do
    load = "/proc/loadavg" |> File.read!() |> String.split() |> Enum.take(3) |> Enum.join(" ")
    worker = worker_options(root)
    [{one, one_n}, {two, two_n}] = cpu_bound(worker, [1, 2])

    {:ok, w} = :beam_nas_worker.start_link(worker)
    {:ok, pool} = :beam_nas_pool.start_link(%{size: 1, worker: worker})

    [raw, elixir, pooled] =
      per_call([
        fn -> {:ok, 1} = :beam_nas_worker.call(w, :operator, :pos, [1], 5000) end,
        fn -> {:ok, 1} = BeamNas.call(w, :operator, :pos, [1], 5000) end,
        fn -> {:ok, 1} = :beam_nas_pool.call(pool, :operator, :pos, [1], 5000) end
      ])

    table = """
    | measurement | result |
    |---|---|
    | #{@cpu_calls} concurrent CPU-bound calls (#{@cpu_iterations} Python loop steps each), pool of 1 (#{one_n} OS process used) | #{ms(one)} ms |
    | same, pool of 2 (#{two_n} OS processes used) | #{ms(two)} ms |
    | speed-up of 2 workers over 1 | #{Float.round(one / two, 2)}x |
    | sequential trivial call, raw `:beam_nas_worker.call` | #{raw} us |
    | same through `BeamNas.call` (Elixir API) | #{elixir} us (#{elixir - raw} us more) |
    | same through `:beam_nas_pool.call` (dispatcher) | #{pooled} us (#{pooled - raw} us more) |

    (#{System.schedulers_online()} schedulers, load average before the run #{load}; CPU rows: best of #{@rounds} rounds; trivial-call rows: median of #{@echo_calls} calls each, taking turns; OTP #{System.otp_release()}, Elixir #{System.version()})
    """

    IO.puts("\n" <> table)
    if markdown_page, do: write_section(root, markdown_page, table)
  end

  # The section "pool_bench" of the page, written by the Python helper every bench shares.
  defp write_section(root, page, table) do
    file = Path.join(System.tmp_dir!(), "beam_nas_pool_bench.md")
    File.write!(file, table)
    command = Enum.join(["mix run bench/pool_bench.exs" | System.argv()], " ")
    args = [Path.join(root, "bench/markdown_section.py"), "pool_bench", file, "--command", command]
    args = if page == :default, do: args, else: args ++ ["--page", page]
    {_, 0} = System.cmd("python3", args, into: IO.stream(:stdio, :line))
    File.rm!(file)
  end

  defp worker_options(root) do
    python = System.get_env("BEAM_NAS_PYTHON") || default_python(root)
    # The busy loop lives with the tests' Python helpers.
    %{python: python, python_path: [Path.join(root, "tests/beam"), root]}
  end

  defp default_python(root) do
    System.find_executable("erlport-worker") || Path.join(root, ".venv/bin/erlport-worker")
  end

  # For each pool size, runs the CPU-bound calls all at once through a pool of
  # that many workers. The pools take turns, round by round, so that load from
  # other processes on the machine hits them alike. Returns, per size, the
  # best wall time in microseconds and how many OS processes served the calls.
  defp cpu_bound(worker, sizes) do
    pools = for size <- sizes, do: elem(:beam_nas_pool.start_link(%{size: size, worker: worker}), 1)
    rounds = for _ <- 1..@rounds, pool <- pools, do: {pool, :timer.tc(fn -> burn_all(pool) end)}
    Enum.each(pools, &Supervisor.stop/1)

    for pool <- pools do
      times = for {^pool, {time, _}} <- rounds, do: time
      os_pids = for {^pool, {_, results}} <- rounds, {:ok, os_pid} <- results, uniq: true, do: os_pid
      {Enum.min(times), length(os_pids)}
    end
  end

  defp burn_all(pool) do
    1..@cpu_calls
    |> Enum.map(fn _ ->
      Task.async(fn -> :beam_nas_pool.call(pool, :priv_jobs, :burn, [@cpu_iterations], 60_000) end)
    end)
    |> Enum.map(&Task.await(&1, 60_000))
  end

  # Median microseconds per call of each fun. The funs take turns call by
  # call, in a new random order each time (a call right after another on the
  # same worker is faster), so that noise and order effects hit all alike.
  defp per_call(funs) do
    Enum.each(funs, fn fun -> Enum.each(1..200, fn _ -> fun.() end) end)
    indexed = Enum.with_index(funs)

    samples =
      for _ <- 1..@echo_calls,
          {fun, index} <- Enum.shuffle(indexed),
          do: {index, fun |> :timer.tc() |> elem(0)}

    for {_, index} <- indexed, do: median(for {^index, t} <- samples, do: t)
  end

  defp median(xs), do: xs |> Enum.sort() |> Enum.at(div(length(xs), 2))

  defp ms(us), do: round(us / 1000)
end

markdown_page =
  case System.argv() do
    [] -> nil
    ["--markdown"] -> :default
    ["--markdown", page] -> Path.expand(page)
    other -> raise ArgumentError, "usage: mix run bench/pool_bench.exs [--markdown [PAGE]], got #{inspect(other)}"
  end

PoolBench.run(root, markdown_page)
