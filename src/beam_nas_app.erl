%% @doc The `beam_nas' application: a supervisor that runs a `beam_nas_pool'
%% registered as `beam_nas' when the application environment has `pool', and
%% nothing otherwise.
-module(beam_nas_app).
-behaviour(application).
-behaviour(supervisor).

-export([start/2, stop/1, init/1]).

-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    case beam_nas_config:pool() of
        {ok, Pool} -> supervisor:start_link({local, beam_nas_sup}, ?MODULE, [Pool#{name => beam_nas}]);
        none -> supervisor:start_link({local, beam_nas_sup}, ?MODULE, []);
        {error, _} = Error -> Error
    end.

-spec stop(term()) -> ok.
stop(_State) ->
    ok.

-spec init([map()]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(Pools) ->
    {ok, {#{strategy => one_for_one}, [beam_nas_pool:child_spec(Pool) || Pool <- Pools]}}.
