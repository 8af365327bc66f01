%% @doc A pool of Python workers: one supervisor holding N `beam_nas_worker'
%% children and a `beam_nas_dispatcher' that sends each call to the least busy
%% worker, so CPU-heavy calls run in parallel OS processes.
-module(beam_nas_pool).
-behaviour(supervisor).

-export([start_link/1, child_spec/1, call/4, call/5, call_all/5, workers/1]).
-export([init/1]).

%% @doc Options: `size' (workers, default: the number of schedulers),
%% `worker' (options for each `beam_nas_worker', see its `default_options/0'),
%% `name' (registers the pool supervisor), `intensity' and `period' (restart
%% limit: more than `intensity' worker restarts in `period' seconds stop the
%% pool instead of restarting forever).
-spec start_link(map()) -> supervisor:startlink_ret() | {error, {unknown_options, [term()], term()}}.
start_link(Options) when is_map(Options) ->
    Known = [size, worker, name, intensity, period],
    case {maps:keys(Options) -- Known, maps:get(name, Options, undefined)} of
        {[_ | _] = Unknown, _} -> {error, {unknown_options, Unknown, {known, Known}}};
        {[], undefined} -> supervisor:start_link(?MODULE, Options);
        {[], Name} when is_atom(Name) -> supervisor:start_link({local, Name}, ?MODULE, Options);
        {[], Name} -> supervisor:start_link(Name, ?MODULE, Options)
    end.

-spec child_spec(map()) -> supervisor:child_spec().
child_spec(Options) ->
    #{id => maps:get(id, Options, ?MODULE),
      start => {?MODULE, start_link, [maps:remove(id, Options)]},
      type => supervisor,
      shutdown => infinity}.

-spec call(supervisor:sup_ref(), atom(), atom(), list()) -> {ok, term()} | {error, term()}.
call(Pool, Module, Function, Args) ->
    call(Pool, Module, Function, Args, default).

%% @doc Like `beam_nas_worker:call/5', on the least busy worker of `Pool'.
-spec call(supervisor:sup_ref(), atom(), atom(), list(), timeout() | default) ->
    {ok, term()} | {error, term()}.
call(Pool, Module, Function, Args, Timeout) ->
    case checkout(Pool) of
        {ok, Dispatcher, Worker, Ticket} ->
            try beam_nas_worker:call(Worker, Module, Function, Args, Timeout)
            after beam_nas_dispatcher:checkin(Dispatcher, Ticket)
            end;
        {error, _} = Error ->
            Error
    end.

%% @doc Calls `Module.Function(*Args)' on every running worker of `Pool' at
%% once, for what only one of them can answer: `cerebros_service:run_status'
%% and `cancel_run' act on the searches of the worker they reach. Returns
%% `[{Worker, Result}]', each `Result' as `beam_nas_worker:call/5' returns it.
-spec call_all(supervisor:sup_ref(), atom(), atom(), list(), timeout() | default) ->
    [{pid(), {ok, term()} | {error, term()}}].
call_all(Pool, Module, Function, Args, Timeout) ->
    Calls = [{Worker, spawn_monitor(fun() ->
                  exit({result, beam_nas_worker:call(Worker, Module, Function, Args, Timeout)})
              end)} || Worker <- workers(Pool)],
    [{Worker, receive
                  {'DOWN', Ref, process, Pid, {result, Result}} -> Result;
                  {'DOWN', Ref, process, Pid, Reason} -> {error, {call_crashed, Reason}}
              end} || {Worker, {Pid, Ref}} <- Calls].

%% @doc The pids of the workers that are running now.
-spec workers(supervisor:sup_ref()) -> [pid()].
workers(Pool) ->
    [Pid || {{worker, _}, Pid, _, _} <- supervisor:which_children(Pool), is_pid(Pid)].

%% Finds the pool's dispatcher (looked up per call, so a restarted one is
%% found too) and asks it for the least busy worker.
checkout(Pool) ->
    try supervisor:which_children(Pool) of
        Children ->
            case [Pid || {dispatcher, Pid, _, _} <- Children, is_pid(Pid)] of
                [Dispatcher] ->
                    case beam_nas_dispatcher:checkout(Dispatcher) of
                        {ok, Worker, Ticket} -> {ok, Dispatcher, Worker, Ticket};
                        {error, _} = Error -> Error
                    end;
                [] ->
                    {error, {pool_down, no_dispatcher}}
            end
    catch
        exit:{Reason, _} -> {error, {pool_down, Reason}}
    end.

-spec init(map()) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(Options) ->
    Size = maps:get(size, Options, erlang:system_info(schedulers)),
    WorkerOpts = maps:get(worker, Options, #{}),
    Flags = #{strategy => one_for_one,
              intensity => maps:get(intensity, Options, 3),
              period => maps:get(period, Options, 10)},
    Dispatcher = #{id => dispatcher,
                   start => {beam_nas_dispatcher, start_link, [self(), Size]}},
    Workers = [beam_nas_worker:child_spec(WorkerOpts#{id => {worker, I}})
               || I <- lists:seq(1, Size)],
    {ok, {Flags, Workers ++ [Dispatcher]}}.
