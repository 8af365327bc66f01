defmodule BeamNas do
  @moduledoc """
  Elixir API over `:beam_nas_worker`: a supervised Python worker process
  that runs functions and neural architecture searches.

      children = [{BeamNas, name: BeamNas, python_path: ["lib/python"]}]
      Supervisor.start_link(children, strategy: :one_for_one)

      {:ok, 3.0} = BeamNas.call(BeamNas, :math, :sqrt, [9])
      {:ok, result} = BeamNas.run_nas(%{dataset_id: "iris"}, budget: %{max_trials: 4})

  Values travel as Elixir expects them: strings are binaries, maps keep
  binary keys, Python's `None` is `nil`. Options are those of
  `:beam_nas_worker.default_options/0`, as a keyword list; `config :beam_nas`
  sets their defaults. Whoever can call
  a worker runs any Python code unless `allow:` lists the modules it may
  reach (`allow: [:cerebros_service]` for `run_nas/3` and its siblings); a
  call larger than the worker's frame limit (`max_frame_size:`, 256 MiB, or
  less with `packet: 1 | 2`) returns `{:error, {:too_large, bytes, limit}}`.

  Functions that take a `server` default to the application's pool when
  `config :beam_nas, pool: [...]` started one (`{:pool, :beam_nas}`), else to
  the worker registered as `BeamNas`.
  """

  require Logger

  @type server :: GenServer.server() | {:pool, Supervisor.supervisor()}

  @doc "Starts a worker linked to the caller; returns `{:error, reason}` if Python cannot start."
  @spec start_link(keyword()) :: {:ok, pid()} | {:error, term()}
  def start_link(opts \\ []), do: :beam_nas_worker.start_link(Map.new(opts))

  @doc "A child spec; `:id` defaults to `BeamNas`."
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    {id, opts} = Keyword.pop(opts, :id, __MODULE__)
    %{id: id, start: {__MODULE__, :start_link, [opts]}, shutdown: 5000}
  end

  @doc """
  Calls `module.function(*args)` in Python. `server` is a worker, or
  `{:pool, pool}` for a `:beam_nas_pool` (the least busy of its workers).
  `module` and `function` are atoms or strings (`"os.path"`); `timeout` is in
  ms, `:infinity` or `:default`. Returns `{:ok, result}` or `{:error, reason}`,
  e.g. `{:error, {:python, class, message, traceback}}` or `{:error, :timeout}`.
  """
  @spec call(server(), atom() | String.t(), atom() | String.t(), list(), timeout() | :default) ::
          {:ok, term()} | {:error, term()}
  def call(server, module, function, args, timeout \\ :default)

  def call({:pool, pool}, module, function, args, timeout) when is_list(args) do
    :beam_nas_pool.call(pool, to_atom(module), to_atom(function), args, timeout)
  end

  def call(server, module, function, args, timeout) when is_list(args) do
    :beam_nas_worker.call(server, to_atom(module), to_atom(function), args, timeout)
  end

  @doc "Runs `module.function(*args)` in Python without waiting for its result."
  @spec cast(GenServer.server(), atom() | String.t(), atom() | String.t(), list()) :: :ok
  def cast(server, module, function, args) when is_list(args) do
    :beam_nas_worker.cast(server, to_atom(module), to_atom(function), args)
  end

  @spec stop(GenServer.server()) :: :ok
  def stop(server), do: :beam_nas_worker.stop(server)

  @doc "The OS process id of the Python worker."
  @spec os_pid(GenServer.server()) :: non_neg_integer()
  def os_pid(server), do: :beam_nas_worker.os_pid(server)

  @doc """
  Runs a neural architecture search: Python's `cerebros_service.run_nas(spec, opts)`.

  `spec` and `opts` are maps or keyword lists (keys become binaries). Three
  options are not sent as they are: `:server` (the worker or `{:pool, pool}`,
  default as in the module doc), `:progress_to` (the pid that receives a
  `{:nas_progress, event}` message per finished trial, default the caller) and
  `:progress` (a function of one argument, or `{module, function, args}` called
  as `apply(module, function, [event | args])`, for each event instead of the
  messages; it runs in a process of its own, in trial order, and has seen every
  event when `run_nas` returns). An event is a map with binary keys: every
  field of the trial's journal record (`"number"`, `"status"`, `"value"`,
  `"candidate"`, `"seed"`, `"generation"`, `"duration_seconds"`, ...), the
  search's `"completed"`, `"best_value"`, `"best_trial"`, `"elapsed_seconds"`,
  and `"run_id"`, `"objective"`, and the older names `"trial"`, `"metric"` and
  `"best_metric"` (docs/engine.md, one shape per trial). Returns `{:ok, result}` when the
  result's `"status"` is `"success"`, `{:error, {:nas_failed, result}}` for a
  failed search, or `{:error, reason}` when the call itself failed.
  """
  @spec run_nas(map() | keyword(), map() | keyword(), timeout() | :default) :: {:ok, map()} | {:error, term()}
  def run_nas(spec, opts \\ [], timeout \\ :infinity) do
    {server, opts} = pop(opts, :server, default_server())
    {progress, opts} = pop(opts, :progress, nil)
    {progress_to, opts} = pop(opts, :progress_to, self())

    case progress_handler(progress) do
      {:ok, nil} ->
        search(server, spec, opts, progress_to, timeout)

      {:ok, handle} ->
        caller = self()
        relay = spawn(fn -> relay(handle, Process.monitor(caller)) end)

        try do
          search(server, spec, opts, relay, timeout)
        after
          stop_relay(relay)
        end

      {:error, _} = error ->
        error
    end
  end

  defp search(server, spec, opts, progress_to, timeout) do
    wire_opts = opts |> Map.new() |> to_wire() |> Map.put("progress_to", progress_to)

    call(server, :cerebros_service, :run_nas, [to_wire(spec), wire_opts], timeout)
    |> succeeded(:nas_failed)
  end

  defp progress_handler(nil), do: {:ok, nil}
  defp progress_handler(fun) when is_function(fun, 1), do: {:ok, fun}
  defp progress_handler({m, f, a}) when is_atom(m) and is_atom(f) and is_list(a), do: {:ok, &apply(m, f, [&1 | a])}
  defp progress_handler(other), do: {:error, {:bad_option, :progress, other}}

  # The worker sends the progress messages before the search's answer, so the
  # relay's mailbox holds them all when it is told to stop. A failing callback
  # is logged and loses only its own event; the relay ends with its caller.
  defp relay(handle, caller) do
    receive do
      {:nas_progress, event} ->
        try do
          handle.(event)
        catch
          kind, reason ->
            Logger.warning("BeamNas.run_nas: the :progress callback failed: " <>
                             Exception.format(kind, reason, __STACKTRACE__))
        end

        relay(handle, caller)

      {:stop, from, ref} ->
        send(from, {:stopped, ref})

      {:DOWN, ^caller, :process, _, _} ->
        :ok
    end
  end

  defp stop_relay(relay) do
    ref = make_ref()
    send(relay, {:stop, self(), ref})
    receive do: ({:stopped, ^ref} -> :ok)
  end

  @doc """
  Asks the search `run_id` to stop; it then returns its best so far. Returns
  `{:ok, %{"status" => "cancelling" | "not_running" | "unknown", ...}}`. With
  `{:pool, pool}` every worker is asked, and the one running the search answers.
  """
  @spec cancel_run(server(), String.t()) :: {:ok, map()} | {:error, term()}
  def cancel_run(server \\ default_server(), run_id), do: ask_about_run(server, :cancel_run, run_id)

  @doc """
  The state (`"running"`, `"success"`, `"failed"`, `"cancelled"`, `"incomplete"`
  or `"unknown"`), progress and run directory of the search `run_id`; `server`
  as for `cancel_run/2`. A worker also reads runs it does not know (another
  worker's, or from before a restart) from their directory under the runs root.
  """
  @spec run_status(server(), String.t()) :: {:ok, map()} | {:error, term()}
  def run_status(server \\ default_server(), run_id), do: ask_about_run(server, :run_status, run_id)

  @doc """
  Predictions of a search's saved model for `rows` (a list of rows of numbers).
  `run_id_or_path` is a run id (found through `run_status/2`, so any worker of a
  pool can answer) or a run directory. Returns `{:ok, result}` (`"predictions"`,
  and `"probabilities"` and `"classes"` for a classifier) or
  `{:error, {:predict_failed, result}}`.
  """
  @spec predict(server(), String.t(), [[number()]]) :: {:ok, map()} | {:error, term()}
  def predict(server \\ default_server(), run_id_or_path, rows) do
    model =
      case run_status(server, run_id_or_path) do
        {:ok, %{"run_dir" => run_dir}} when is_binary(run_dir) -> run_dir
        _ -> run_id_or_path
      end

    call(server, :cerebros_service, :predict, [model, rows]) |> succeeded(:predict_failed)
  end

  defp default_server do
    if Process.whereis(:beam_nas), do: {:pool, :beam_nas}, else: __MODULE__
  end

  # The service's answers say "status": "success", or hold the failure's details.
  defp succeeded({:ok, %{"status" => "success"} = result}, _failed), do: {:ok, result}
  defp succeeded({:ok, %{"status" => _} = result}, failed), do: {:error, {failed, result}}
  defp succeeded({:ok, other}, _failed), do: {:error, {:unexpected_result, other}}
  defp succeeded({:error, _} = error, _failed), do: error

  # A pool's workers each know only their own searches: ask them all and keep
  # the answer of the one that knows the run, else an "unknown", else an error.
  defp ask_about_run({:pool, pool}, function, run_id) do
    :beam_nas_pool.call_all(pool, :cerebros_service, function, [run_id], :default)
    |> Enum.map(fn {_worker, answer} -> answer end)
    |> Enum.sort_by(fn
      {:ok, %{"status" => "unknown"}} -> 1
      {:ok, _} -> 0
      {:error, _} -> 2
    end)
    |> List.first({:error, {:pool_down, :no_workers}})
  end

  defp ask_about_run(server, function, run_id), do: call(server, :cerebros_service, function, [run_id])

  defp pop(opts, key, default) when is_map(opts), do: Map.pop(opts, key, default)
  defp pop(opts, key, default) when is_list(opts), do: Keyword.pop(opts, key, default)

  # Maps and keyword lists become maps with binary keys, and atoms other than
  # true/false/nil become binaries, so that Python sees plain str keys and values.
  defp to_wire(map) when is_map(map) and not is_struct(map),
    do: Map.new(map, fn {k, v} -> {key(k), to_wire(v)} end)

  defp to_wire([{k, _} | _] = list) when is_atom(k),
    do: if(Keyword.keyword?(list), do: list |> Map.new() |> to_wire(), else: Enum.map(list, &to_wire/1))

  defp to_wire(list) when is_list(list), do: Enum.map(list, &to_wire/1)
  defp to_wire(atom) when is_atom(atom) and atom not in [true, false, nil], do: Atom.to_string(atom)
  defp to_wire(other), do: other

  defp key(k) when is_atom(k), do: Atom.to_string(k)
  defp key(k), do: k

  defp to_atom(name) when is_atom(name), do: name
  defp to_atom(name) when is_binary(name), do: String.to_atom(name)
end
