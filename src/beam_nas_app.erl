%% @doc The `beam_nas' application: a supervisor that runs the `pg' scope of
%% clusters (`beam_nas_cluster'), a `beam_nas_pool' registered as `beam_nas'
%% when the application environment has `pool', and a `beam_nas_lender' lending
%% that pool to the cluster the environment's `cluster' names.
-module(beam_nas_app).
-behaviour(application).
-behaviour(supervisor).

-export([start/2, stop/1, init/1]).

-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    case {beam_nas_config:pool(), beam_nas_config:cluster()} of
        {{error, _} = Error, _} -> Error;
        {_, {error, _} = Error} -> Error;
        {none, {ok, Name}} -> {error, {bad_app_env, beam_nas, [{cluster, Name}, {pool, undefined}]}};
        Children -> supervisor:start_link({local, beam_nas_sup}, ?MODULE, Children)
    end.

-spec stop(term()) -> ok.
stop(_State) ->
    ok.

-spec init({none | {ok, map()}, none | {ok, binary()}}) ->
    {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init({Pool, Cluster}) ->
    Scope = #{id => pg, start => {pg, start_link, [beam_nas_cluster]}},
    Pools = [beam_nas_pool:child_spec(Options#{name => beam_nas}) || {ok, Options} <- [Pool]],
    Lenders = [beam_nas_lender:child_spec(#{cluster => Name, pool => beam_nas}) || {ok, Name} <- [Cluster]],
    %% rest_for_one: a restarted pool is lent again
    {ok, {#{strategy => rest_for_one}, [Scope | Pools ++ Lenders]}}.
