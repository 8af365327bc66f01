%% @doc Lends a node's `beam_nas_pool' to a cluster: joins the cluster's `pg'
%% group and runs the jobs `beam_nas_cluster' sessions send it, one per pool
%% worker at a time, on `cerebros_cluster' in Python.
%%
%% A search's data comes once per node: asked of the session at the first job
%% that names its hash, kept here (the last `?KEPT_DATASETS'), and loaded into a
%% worker the first time a job there finds it missing. A session that ends or
%% whose node is lost (its monitor) has its jobs here stopped and forgotten.
-module(beam_nas_lender).
-behaviour(gen_server).

-export([start_link/1, child_spec/1, info/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(PY, cerebros_cluster).
-define(KEPT_DATASETS, 2).
-define(VERSION_TIMEOUT, 60000).
-define(RETRY_MS, 100).

-record(state, {
    cluster :: binary(),
    pool :: supervisor:sup_ref(),
    version :: map(),
    %% Sessions with work here: pid => monitor.
    sessions = #{} :: map(),
    %% Data by hash, most recently used first.
    data = [] :: [{binary(), binary()}],
    %% Hashes asked of a session and not received yet, and the session asked.
    fetching = #{} :: #{binary() => pid()},
    %% Jobs waiting for their data or a free worker, in arrival order.
    waiting = [] :: [{pid(), binary(), binary(), map()}],
    %% Whether a `start_jobs' message is on its way (jobs wait for a worker).
    retry = false :: boolean(),
    %% How many times data was asked of a session (once per search and node, but
    %% after a session holding the request was lost).
    fetches = 0 :: non_neg_integer(),
    %% Jobs running: token => {Session, Worker, Runner, #{trial, started}};
    %% Session is `forgotten' once the session ended (the job is stopping, its
    %% result is dropped).
    running = #{} :: map()
}).

%%% API

%% @doc Options: `cluster' (the cluster's name) and `pool' (the `beam_nas_pool'
%% to lend, running). Asks a worker for its version first: a pool that cannot
%% answer (`cerebros_cluster' not allowed, say) is refused here.
-spec start_link(map()) -> {ok, pid()} | {error, term()}.
start_link(#{cluster := Cluster, pool := Pool}) ->
    gen_server:start_link(?MODULE, {to_binary(Cluster), Pool}, []).

-spec child_spec(map()) -> supervisor:child_spec().
child_spec(Options) ->
    #{id => maps:get(id, Options, ?MODULE), start => {?MODULE, start_link, [maps:remove(id, Options)]}}.

%% @doc The cluster, the pool and its slots, the version, how many times data
%% was asked for (`fetches'), and the jobs running:
%% token => #{session, trial (its number, for a trial), started (monotonic ms)}.
-spec info(pid()) -> map().
info(Lender) ->
    gen_server:call(Lender, info).

%%% gen_server

-spec init({binary(), supervisor:sup_ref()}) -> {ok, #state{}} | {stop, term()}.
init({Cluster, Pool}) ->
    process_flag(trap_exit, true),
    case beam_nas_pool:call(Pool, ?PY, version, [], ?VERSION_TIMEOUT) of
        {ok, Version} when is_map(Version) ->
            ok = beam_nas_cluster:ensure_scope(),
            ok = pg:join(beam_nas_cluster, Cluster, self()),
            {ok, #state{cluster = Cluster, pool = Pool, version = Version}};
        Other ->
            {stop, {no_version, Other}}
    end.

-spec handle_call(info, gen_server:from(), #state{}) -> {reply, map(), #state{}}.
handle_call(info, _From, State) ->
    {reply, #{cluster => State#state.cluster, pool => State#state.pool, slots => slots(State),
              version => State#state.version, fetches => State#state.fetches,
              running => maps:map(fun(_, {Session, _, _, Meta}) -> Meta#{session => Session} end,
                                  State#state.running)}, State}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast(_Message, State) ->
    {noreply, State}.

-spec handle_info(term(), #state{}) -> {noreply, #state{}}.
handle_info({beam_nas_hello, Session}, State) ->
    Session ! {beam_nas_hello, self(), #{version => State#state.version, slots => slots(State), node => node()}},
    {noreply, State};
handle_info({beam_nas_refused, Session, Why}, State) ->
    logger:error("beam_nas_lender: cluster ~ts: the coordinator ~p on ~s refused this node: ~ts",
                 [State#state.cluster, Session, node(Session), Why]),
    {noreply, State};
handle_info({beam_nas_run, Session, Token, Hash, Job}, State) ->
    State1 = watch(Session, State),
    Waiting = State1#state.waiting ++ [{Session, Token, Hash, Job}],
    {noreply, start_jobs(fetch(Session, Hash, State1#state{waiting = Waiting}))};
handle_info({beam_nas_data, Hash, Data}, State) ->
    Kept = lists:sublist([{Hash, Data} | lists:keydelete(Hash, 1, State#state.data)], ?KEPT_DATASETS),
    {noreply, start_jobs(State#state{data = Kept, fetching = maps:remove(Hash, State#state.fetching)})};
handle_info({beam_nas_stop, Session, Token}, State) ->
    {noreply, stop_job(Session, Token, State)};
handle_info({beam_nas_forget, Session}, State) ->
    {noreply, forget(Session, State)};
handle_info({'DOWN', _, process, Session, _}, State) when is_map_key(Session, State#state.sessions) ->
    {noreply, forget(Session, State)};
handle_info(start_jobs, State) ->
    {noreply, start_jobs(State#state{retry = false})};
handle_info({'EXIT', Runner, Outcome}, State) ->
    {noreply, start_jobs(job_ended(Runner, Outcome, State))};
handle_info(_Other, State) ->
    {noreply, State}.

%%% Jobs

watch(Session, State = #state{sessions = Sessions}) when is_map_key(Session, Sessions) ->
    State;
watch(Session, State = #state{sessions = Sessions}) ->
    State#state{sessions = Sessions#{Session => erlang:monitor(process, Session)}}.

%% Asks the session for data this node does not hold yet, once.
fetch(Session, Hash, State = #state{data = Data, fetching = Fetching}) ->
    case lists:keymember(Hash, 1, Data) orelse is_map_key(Hash, Fetching) of
        true -> State;
        false ->
            Session ! {beam_nas_data_request, self(), Hash},
            State#state{fetching = Fetching#{Hash => Session}, fetches = State#state.fetches + 1}
    end.

%% Starts the waiting jobs whose data is here, one per free worker.
start_jobs(State = #state{waiting = Waiting, running = Running}) ->
    Busy = [W || {_, W, _, _} <- maps:values(Running)],
    Free = [W || W <- beam_nas_pool:workers(State#state.pool), not lists:member(W, Busy)],
    start_jobs(Free, Waiting, [], State).

start_jobs([Worker | Free], [Job = {Session, Token, Hash, Term} | Waiting], Later, State) ->
    case lists:keyfind(Hash, 1, State#state.data) of
        {Hash, Data} ->
            Runner = spawn_link(fun() -> exit({job_result, run(Worker, Hash, Data, Token, Term)}) end),
            Meta = #{trial => maps:get(<<"number">>, maps:get(<<"payload">>, Term, #{}), undefined),
                     started => erlang:monotonic_time(millisecond)},
            start_jobs(Free, Waiting, Later,
                       State#state{running = (State#state.running)#{Token => {Session, Worker, Runner, Meta}}});
        false ->
            start_jobs([Worker | Free], Waiting, [Job | Later], State)
    end;
start_jobs([], Waiting, Later, State = #state{retry = false}) when Waiting =/= [] ->
    %% no worker free (one restarting, say): look again shortly
    erlang:send_after(?RETRY_MS, self(), start_jobs),
    State#state{waiting = lists:reverse(Later) ++ Waiting, retry = true};
start_jobs(_, Waiting, Later, State) ->
    State#state{waiting = lists:reverse(Later) ++ Waiting}.

%% In the runner process: the job on `Worker', its data loaded there first if missing.
run(Worker, Hash, Data, Token, Term) ->
    Missing = 'cerebros_cluster.DataMissing',
    case beam_nas_worker:call(Worker, ?PY, run_job, [Hash, Token, Term], infinity) of
        {error, {python, Missing, _, _}} ->
            case beam_nas_worker:call(Worker, ?PY, load_data, [Hash, Data], infinity) of
                {ok, _} -> beam_nas_worker:call(Worker, ?PY, run_job, [Hash, Token, Term], infinity);
                Error -> Error
            end;
        Result ->
            Result
    end.

%% A worker that went away (killed, restarted) loses the job, not the trial: the
%% session runs it again; a Python error is the job's own.
job_ended(Runner, Outcome, State = #state{running = Running}) ->
    case [T || {T, {_, _, R, _}} <- maps:to_list(Running), R =:= Runner] of
        [Token] ->
            {Session, _, _, _} = maps:get(Token, Running),
            Session =:= forgotten orelse report(Session, Token, Outcome),
            State#state{running = maps:remove(Token, Running)};
        [] ->
            State
    end.

report(Session, Token, Outcome) ->
    Session ! case Outcome of
                  {job_result, {ok, Result}} -> {beam_nas_done, self(), Token, Result};
                  {job_result, {error, {python, _, _, _} = Error}} -> {beam_nas_failed, self(), Token, Error, final};
                  {job_result, {error, Reason}} -> {beam_nas_failed, self(), Token, Reason, retry};
                  Crash -> {beam_nas_failed, self(), Token, Crash, retry}
              end.

stop_job(Session, Token, State = #state{running = Running, waiting = Waiting}) ->
    case Running of
        #{Token := {Session, Worker, _, _}} ->
            spawn(fun() -> beam_nas_worker:call(Worker, ?PY, stop_job, [Token], 10000) end),
            State;
        _ ->
            State#state{waiting = [case J of
                                       {Session, Token, Hash, Term} -> {Session, Token, Hash, Term#{<<"stopped">> => true}};
                                       _ -> J
                                   end || J <- Waiting]}
    end.

%% Stops the session's jobs running here (their workers stay busy until they
%% have stopped; their results are dropped) and drops those waiting.
forget(Session, State = #state{sessions = Sessions}) ->
    Mine = [Token || {Token, {S, _, _, _}} <- maps:to_list(State#state.running), S =:= Session],
    State1 = lists:foldl(fun(Token, S) -> stop_job(Session, Token, S) end, State, Mine),
    Running = maps:map(fun(_, {S, W, R, M}) when S =:= Session -> {forgotten, W, R, M};
                          (_, Job) -> Job
                       end, State1#state.running),
    case maps:take(Session, Sessions) of
        {Ref, Sessions1} -> erlang:demonitor(Ref, [flush]);
        error -> Sessions1 = Sessions
    end,
    %% data asked of this session is asked again of another one waiting for it
    Fetching = maps:filter(fun(_, S) -> S =/= Session end, State1#state.fetching),
    Waiting = [J || J = {S, _, _, _} <- State1#state.waiting, S =/= Session],
    lists:foldl(fun({S, _, Hash, _}, St) -> fetch(S, Hash, St) end,
                State1#state{sessions = Sessions1, running = Running, fetching = Fetching, waiting = Waiting},
                Waiting).

slots(#state{pool = Pool}) ->
    length([Id || {{worker, _} = Id, _, _, _} <- supervisor:which_children(Pool)]).

to_binary(B) when is_binary(B) -> B;
to_binary(A) when is_atom(A) -> atom_to_binary(A);
to_binary(L) when is_list(L) -> unicode:characters_to_binary(L).
