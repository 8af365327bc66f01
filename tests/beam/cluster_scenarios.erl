%% Clustered searches on real nodes of this machine, for tests/beam/test_cluster.py.
%%
%% Each scenario runs in a fresh distributed node (the coordinator, which also
%% lends a one-worker pool) and starts its other nodes with `peer', each with a
%% one-worker pool. It prints `key=value' lines (the run directory, the nodes,
%% what it did to which trial); the Python side compares the run directory with
%% a single-node run of the same search.
-module(cluster_scenarios).

-export([main/1, keep/1]).

-define(CLUSTER, <<"nas-test">>).
-define(WAIT_MS, 90000).

main([Scenario, RunDir]) ->
    try
        scenario(list_to_atom(Scenario), RunDir),
        halt(0)
    catch Class:Reason:Stack ->
        io:format("scenario failed: ~p:~p~n~p~n", [Class, Reason, Stack]),
        halt(1)
    end.

%%% Scenarios

%% The reference: the same search on this node alone, without opts.cluster.
scenario(single_node, RunDir) ->
    [Spec, Opts] = search_args(RunDir),
    {ok, Pool} = keep(fun() -> start_pool() end),
    finish(beam_nas_pool:call(Pool, cerebros_service, run_nas, [Spec, maps:remove(<<"cluster">>, Opts)],
                              infinity), RunDir);

%% Three nodes from the start: the search equals the single-node one, and the
%% data went to each node once.
scenario(three_nodes, RunDir) ->
    {ok, Lender} = lend_local(),
    {B, {_, LenderB}} = lending_peer_with_lender(b),
    {C, {_, LenderC}} = lending_peer_with_lender(c),
    show(nodes, [node(), B, C]),
    finish(search(RunDir), RunDir),
    show(fetches, [maps:get(fetches, erpc:call(N, beam_nas_lender, info, [L]))
                   || {N, L} <- [{node(), Lender}, {B, LenderB}, {C, LenderC}]]);

%% A node killed (kill -9 of its OS process) while it trains a trial.
scenario(node_killed, RunDir) ->
    mid_trial(RunDir, fun(Victim, _Lender) ->
        OsPid = erpc:call(Victim, os, getpid, []),
        fun() -> os:cmd("kill -9 " ++ OsPid) end
    end);

%% A node connected and lending only once the search has finished a trial. The
%% other lenders are held meanwhile (sys:suspend), so that trials are left when
%% the session has seen it join.
scenario(node_joins, RunDir) ->
    {ok, Lender} = lend_local(),
    {B, {_, LenderB}} = lending_peer_with_lender(b),
    {ok, Late, LateNode} = start_peer(late),
    {ok, Pool} = peer:call(Late, ?MODULE, keep, [fun() -> start_pool() end], ?WAIT_MS),
    Search = start_search(RunDir),
    receive {nas_progress, _} -> ok after ?WAIT_MS -> error(no_trial_finished) end,
    Held = [{node(), Lender}, {B, LenderB}],
    [erpc:call(N, sys, suspend, [L]) || {N, L} <- Held],
    true = peer:call(Late, net_kernel, connect_node, [node()]),
    {ok, _} = peer:call(Late, ?MODULE, keep, [fun() -> beam_nas_cluster:lend(?CLUSTER, Pool) end], ?WAIT_MS),
    [Session] = beam_nas_cluster:sessions(?CLUSTER),
    wait_until(fun() -> is_map_key(LateNode, maps:get(members, beam_nas_cluster:info(Session))) end),
    [erpc:call(N, sys, resume, [L]) || {N, L} <- Held],
    show(late, LateNode),
    finish(await_search(Search), RunDir);

%% A node cut off (erlang:disconnect_node/1) while it trains a trial.
scenario(node_disconnected, RunDir) ->
    mid_trial(RunDir, fun(Victim, _Lender) -> fun() -> true = erlang:disconnect_node(Victim) end end);

%% A lending worker's OS process killed (kill -9) while it trains a trial: its
%% pool restarts it, and the trial runs again.
scenario(worker_killed, RunDir) ->
    mid_trial(RunDir, fun(Victim, Lender) ->
        #{pool := Pool} = erpc:call(Victim, beam_nas_lender, info, [Lender]),
        [Worker] = erpc:call(Victim, beam_nas_pool, workers, [Pool]),
        OsPid = integer_to_list(erpc:call(Victim, beam_nas_worker, os_pid, [Worker])),
        fun() ->
            os:cmd("kill -9 " ++ OsPid),
            wait_until(fun() -> erpc:call(Victim, beam_nas_pool, workers, [Pool]) -- [Worker] =/= [] end),
            show(restarted, true)
        end
    end);

%% cancel_run while every node trains a trial that would run for hours: the
%% search returns at once, and the lenders' workers are free again soon after.
scenario(cancelled, RunDir) ->
    Lenders = [{node(), element(2, lend_local())} | [{N, L} || {N, {_, L}} <- [lending_peer_with_lender(b)]]],
    [Spec, Opts] = search_args(RunDir),
    Endless = (maps:get(<<"search_space">>, Spec))#{<<"epochs">> => 100000, <<"patience">> => 100000},
    Search = start_search_with([Spec#{<<"search_space">> => Endless}, Opts#{<<"run_id">> => <<"endless">>}]),
    [wait_for_job(N, L) || {N, L} <- Lenders],
    Asked = erlang:monotonic_time(millisecond),
    {ok, #{<<"status">> := <<"cancelling">>}} =
        beam_nas_pool:call(coordinator_pool(), cerebros_service, cancel_run, [<<"endless">>]),
    {ok, #{<<"status">> := <<"failed">>, <<"metadata">> := #{<<"error_type">> := Type}}} = await_search(Search),
    show(error_type, Type),
    show(search_returned_ms, erlang:monotonic_time(millisecond) - Asked),
    wait_until(fun() -> lists:all(fun({N, L}) -> maps:get(running, erpc:call(N, beam_nas_lender, info, [L])) =:= #{}
                                  end, Lenders) end),
    show(workers_free_ms, erlang:monotonic_time(millisecond) - Asked);

%% The coordinator's node killed after two trials; the search resumed from its
%% journal (opts.resume) by this node ends as the uninterrupted one.
scenario(coordinator_killed, RunDir) ->
    lend_local(),
    _B = lending_peer(b),
    {ok, Peer, Coordinator} = start_peer(coordinator),
    true = peer:call(Peer, net_kernel, connect_node, [node()]),
    {ok, Pool} = erpc:call(Coordinator, ?MODULE, keep, [fun() -> start_pool() end], ?WAIT_MS),
    [Spec, Opts] = search_args(RunDir),
    erpc:cast(Coordinator, beam_nas_pool, call, [Pool, cerebros_service, run_nas, [Spec, Opts], infinity]),
    [Worker] = erpc:call(Coordinator, beam_nas_pool, workers, [Pool]),
    WorkerOsPid = erpc:call(Coordinator, beam_nas_worker, os_pid, [Worker]),
    [receive {nas_progress, _} -> ok after ?WAIT_MS -> error(no_progress) end || _ <- [1, 2]],
    os:cmd("kill -9 " ++ erpc:call(Coordinator, os, getpid, [])),
    %% its worker ends when its port closes; until then it holds the run directory's lock
    wait_until(fun() -> not filelib:is_dir("/proc/" ++ integer_to_list(WorkerOsPid)) end),
    {ok, Journal} = file:read_file(filename:join(RunDir, "journal.jsonl")),
    show(journaled_before_resume, length(binary:split(Journal, <<"\n">>, [global, trim_all]))),
    finish(await_search(start_search_with([Spec, Opts#{<<"resume">> => true}])), RunDir);

%% A node of another version is refused before it gets a trial: alone, the
%% search fails at once naming opts.cluster; beside a node of this version, the
%% search runs there and warns.
scenario(version_refused, RunDir) ->
    Older = lending_peer(older, [filename:join(os:getenv("BEAM_NAS_TEST_PYPATH"), "cluster_older")]),
    show(older, Older),
    {ok, #{<<"status">> := <<"failed">>, <<"error">> := Error, <<"metadata">> := Meta}} =
        search(RunDir ++ "-alone"),
    show(alone_error, Error),
    show(alone_field, maps:get(<<"field">>, Meta)),
    lend_local(),
    finish(search(RunDir), RunDir).

%% Three lending nodes; the fun that `Prepare(Victim, Lender)' returns strikes
%% the third while it trains a trial. The third's lender is held (sys:suspend)
%% from before the session is seen still waiting for that trial until after the
%% strike, so the trial's result cannot reach the session first, however fast
%% it trains and however slow the strike.
mid_trial(RunDir, Prepare) ->
    lend_local(),
    _B = lending_peer(b),
    {Victim, {Peer, Lender}} = lending_peer_with_lender(c),
    Cut = Prepare(Victim, Lender),
    Search = start_search(RunDir),
    Trial = hold_mid_trial(Victim, Lender),
    Cut(),
    try peer:call(Peer, sys, resume, [Lender]) catch exit:_ -> killed end,  % over standard I/O: no reconnection
    show(victim, Victim),
    show(victim_trial, Trial),
    finish(await_search(Search), RunDir).

%% Suspends `Lender' while the session still waits for a job it runs; returns
%% that job's trial number. A result the lender sent before it was suspended
%% went down the same connection as the suspension's reply, so the session has
%% it by the time it answers `info'.
hold_mid_trial(Victim, Lender) ->
    {Token, Trial} = wait_for_job(Victim, Lender),
    ok = erpc:call(Victim, sys, suspend, [Lender]),
    [Session] = beam_nas_cluster:sessions(?CLUSTER),
    case maps:get(running, beam_nas_cluster:info(Session)) of
        #{Token := Victim} ->
            Trial;
        _ ->
            ok = erpc:call(Victim, sys, resume, [Lender]),
            hold_mid_trial(Victim, Lender)
    end.

%%% Nodes

%% Lends a one-worker pool of this node (the coordinator's).
lend_local() ->
    ok = beam_nas_cluster:ensure_scope(),
    {ok, Pool} = keep(fun() -> start_pool() end),
    put(pool, Pool),
    {ok, _} = keep(fun() -> beam_nas_cluster:lend(?CLUSTER, Pool) end).

lending_peer(Name) ->
    lending_peer(Name, []).

lending_peer(Name, PythonPath) ->
    {Node, _} = lending_peer_with_lender(Name, PythonPath),
    Node.

lending_peer_with_lender(Name) ->
    lending_peer_with_lender(Name, []).

lending_peer_with_lender(Name, PythonPath) ->
    {ok, Peer, Node} = start_peer(Name),
    true = peer:call(Peer, net_kernel, connect_node, [node()]),
    {ok, Pool} = erpc:call(Node, ?MODULE, keep, [fun() -> start_pool(PythonPath) end], ?WAIT_MS),
    {ok, Lender} = erpc:call(Node, ?MODULE, keep, [fun() -> beam_nas_cluster:lend(?CLUSTER, Pool) end], ?WAIT_MS),
    {Node, {Peer, Lender}}.

%% A node controlled over its standard I/O, not over distribution: cut off from
%% the others, it lives on (a peer controlled over distribution would stop).
start_peer(Name) ->
    peer:start(#{name => peer_name(Name), connection => standard_io, args => code_path_args()}).

peer_name(Name) ->
    list_to_atom(atom_to_list(Name) ++ "_" ++ os:getenv("BEAM_NAS_TEST_TAG", "t")).

code_path_args() ->
    ["-pa", filename:dirname(code:which(?MODULE))].

start_pool() ->
    start_pool([]).

start_pool(PythonPath) ->
    Worker = #{python => os:getenv("BEAM_NAS_TEST_PYTHON"),
               python_path => PythonPath ++ [os:getenv("BEAM_NAS_TEST_PYPATH")],
               start_timeout => ?WAIT_MS},
    beam_nas_pool:start_link(#{size => 1, worker => Worker}).

%% Runs `Fun' (which start_links something) in a process that lives on, so
%% that what it started outlives the call; returns Fun's result.
keep(Fun) ->
    Caller = self(),
    Holder = spawn(fun() -> Caller ! {kept, self(), Fun()}, receive stop -> ok end end),
    receive {kept, Holder, Result} -> Result after ?WAIT_MS -> error({keep_timeout, Fun}) end.

%% Polls the lender until it runs a job; returns its token and trial number.
wait_for_job(Node, Lender) ->
    wait_for_job(Node, Lender, erlang:monotonic_time(millisecond) + ?WAIT_MS).

wait_for_job(Node, Lender, Deadline) ->
    #{running := Running} = erpc:call(Node, beam_nas_lender, info, [Lender]),
    case [{Token, Trial} || {Token, #{trial := Trial}} <- maps:to_list(Running), is_integer(Trial)] of
        [Job | _] -> Job;
        [] ->
            erlang:monotonic_time(millisecond) < Deadline orelse error(no_job_on, [Node]),
            timer:sleep(2),
            wait_for_job(Node, Lender, Deadline)
    end.

wait_until(Condition) ->
    wait_until(Condition, erlang:monotonic_time(millisecond) + ?WAIT_MS).

wait_until(Condition, Deadline) ->
    case Condition() of
        true -> ok;
        false ->
            erlang:monotonic_time(millisecond) < Deadline orelse error(condition_never_met),
            timer:sleep(10),
            wait_until(Condition, Deadline)
    end.

%%% The search

%% Small: eight short trials of iris, two folds each, an ensemble of three.
search_args(RunDir) ->
    Spec = #{<<"dataset_id">> => <<"iris">>,
             <<"search_space">> => #{<<"levels">> => 1, <<"units_per_level">> => [1, 2],
                                     <<"neurons_per_unit">> => [8, 16], <<"epochs">> => 400,
                                     <<"batch_size">> => 16, <<"patience">> => 1000}},
    Opts = #{<<"budget">> => #{<<"max_trials">> => 8, <<"population_size">> => 4},
             <<"folds">> => 2, <<"ensemble_size">> => 3, <<"seed">> => 7,
             <<"run_dir">> => list_to_binary(RunDir), <<"cluster">> => ?CLUSTER,
             <<"progress_to">> => self()},
    [Spec, Opts].

search(RunDir) ->
    await_search(start_search(RunDir)).

start_search(RunDir) ->
    start_search_with(search_args(RunDir)).

start_search_with(Args) ->
    Pool = coordinator_pool(),
    Self = self(),
    spawn_link(fun() -> Self ! {searched, beam_nas_pool:call(Pool, cerebros_service, run_nas, Args, infinity)} end).

%% The pool lent by this node, else one of its own for the search.
coordinator_pool() ->
    case get(pool) of
        undefined -> {ok, Pool} = keep(fun() -> start_pool() end), Pool;
        Pool -> Pool
    end.

await_search(_Search) ->
    receive {searched, Result} -> Result after 4 * ?WAIT_MS -> error(search_timeout) end.

finish({ok, Result = #{<<"status">> := <<"success">>}}, RunDir) ->
    show(status, success),
    show(run_dir, RunDir),
    [show(warning, W) || W <- maps:get(<<"warnings">>, Result)],
    ok;
finish(Other, _RunDir) ->
    error({search_failed, Other}).

show(Key, Value) when is_binary(Value) -> io:format("~s=~ts~n", [Key, Value]);
show(Key, Value) -> io:format("~s=~p~n", [Key, Value]).
