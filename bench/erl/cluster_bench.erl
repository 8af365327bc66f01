%% One search on digits, for bench/cluster_bench.py: on this node alone
%% (`local', no opts.cluster), or spread over `N' nodes each lending a
%% one-worker pool (this node and N - 1 peers). The search runs in a worker of
%% its own, which is not lent. Prints `key=value' lines.
-module(cluster_bench).

-export([main/1, keep/1, lend_pool/0]).

-define(CLUSTER, <<"bench">>).
-define(WAIT_MS, 120000).

main([Mode, Trials, RunDir]) ->
    try
        run(Mode, list_to_integer(Trials), RunDir),
        halt(0)
    catch Class:Reason:Stack ->
        io:format("bench failed: ~p:~p~n~p~n", [Class, Reason, Stack]),
        halt(1)
    end.

run(Mode, Trials, RunDir) ->
    ok = beam_nas_cluster:ensure_scope(),
    {ok, Pool} = keep(fun start_pool/0),
    Cluster = case Mode of
                  "local" -> #{};
                  _ ->
                      lend_pool(),
                      [lending_peer(I) || I <- lists:seq(2, list_to_integer(Mode))],
                      #{<<"cluster">> => ?CLUSTER}
              end,
    Spec = #{<<"dataset_id">> => <<"digits">>,
             <<"search_space">> => #{<<"levels">> => 1, <<"units_per_level">> => [1, 2],
                                     <<"neurons_per_unit">> => [16, 32], <<"epochs">> => 60,
                                     <<"batch_size">> => 32, <<"patience">> => 1000}},
    %% random: no generation to wait for, so every slot stays busy
    Opts = Cluster#{<<"budget">> => #{<<"max_trials">> => Trials}, <<"strategy">> => <<"random">>,
                    <<"folds">> => 2, <<"ensemble_size">> => 1, <<"refit">> => false, <<"seed">> => 3,
                    <<"run_dir">> => list_to_binary(RunDir)},
    %% the first call imports the engine in the coordinator's worker: not the search's cost
    {ok, _} = beam_nas_pool:call(Pool, cerebros_cluster, version, [], ?WAIT_MS),
    Started = erlang:monotonic_time(millisecond),
    {ok, #{<<"status">> := <<"success">>, <<"completed_trials">> := Done}} =
        beam_nas_pool:call(Pool, cerebros_service, run_nas, [Spec, Opts], infinity),
    io:format("trials=~b~nseconds=~.3f~n", [Done, (erlang:monotonic_time(millisecond) - Started) / 1000]).

lending_peer(I) ->
    {ok, _Peer, Node} = peer:start(#{name => list_to_atom("bench" ++ integer_to_list(I) ++ "_"
                                                          ++ os:getenv("BEAM_NAS_BENCH_TAG")),
                                     args => ["-pa", filename:dirname(code:which(?MODULE))]}),
    erpc:call(Node, ?MODULE, lend_pool, [], ?WAIT_MS).

%% A one-worker pool of this node lent to the cluster, its engine imported.
lend_pool() ->
    {ok, Pool} = keep(fun start_pool/0),
    {ok, _} = beam_nas_pool:call(Pool, cerebros_cluster, version, [], ?WAIT_MS),
    {ok, _} = keep(fun() -> beam_nas_cluster:lend(?CLUSTER, Pool) end).

start_pool() ->
    beam_nas_pool:start_link(#{size => 1, worker => #{start_timeout => ?WAIT_MS}}).

%% Runs `Fun' in a process that lives on, so that what it links to outlives the call.
keep(Fun) ->
    Caller = self(),
    Holder = spawn(fun() -> Caller ! {kept, self(), Fun()}, receive stop -> ok end end),
    receive {kept, Holder, Result} -> Result after ?WAIT_MS -> error({keep_timeout, Fun}) end.
