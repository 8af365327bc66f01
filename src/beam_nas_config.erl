%% @doc The application environment of `beam_nas' (`config :beam_nas, ...' in
%% Elixir, `{beam_nas, [...]}' in sys.config), and where the worker executable
%% is found. Options given to a worker or pool win over the environment.
%%
%% Keys: every `beam_nas_worker' option but `name' (a default for every
%% worker), `venv' (the virtualenv of `beam_nas_install', default `venv' in the
%% application's build directory), `pool' (options of the pool the
%% application starts; no pool without it) and `cluster' (the cluster that pool
%% is lent to; none without it).
-module(beam_nas_config).

-export([worker_defaults/1, find_worker/1, venv/0, pool/0, cluster/0]).

-define(APP, beam_nas).
-define(WORKER, "erlport-worker").

%% @doc The worker options among `Keys' that the application environment sets.
-spec worker_defaults([atom()]) -> map().
worker_defaults(Keys) ->
    maps:with(Keys, maps:from_list(application:get_all_env(?APP))).

%% @doc The worker to run, looked for in this order: the `python' option, the
%% `python' of the application environment (both a command line: the
%% executable and its leading arguments), then this project's `erlport-worker'
%% in `venv()', then on PATH. The first one set decides; the error names every
%% place looked in.
-spec find_worker(undefined | string() | binary()) ->
    {ok, file:filename(), [string()]} | {error, {worker_not_found, [{term(), term()}]} | {bad_app_env, beam_nas, list()}}.
find_worker(undefined) ->
    case application:get_env(?APP, python) of
        {ok, Command} -> command({app_env, python}, Command);
        undefined -> own_worker()
    end;
find_worker(Command) ->
    command({option, python}, Command).

command({app_env, Key}, Command) when not is_binary(Command) ->
    case io_lib:char_list(Command) of
        true -> command({app_env, Key}, unicode:characters_to_binary(Command));
        false -> {error, {bad_app_env, ?APP, [{Key, Command}]}}
    end;
command(Place, Command) ->
    case string:lexemes(to_list(Command), " ") of
        [First | Args] ->
            case os:find_executable(First) of
                false -> {error, {worker_not_found, [{Place, to_list(Command)}]}};
                Exe -> {ok, Exe, Args}
            end;
        [] ->
            {error, {worker_not_found, [{Place, to_list(Command)}]}}
    end.

own_worker() ->
    InVenv = case venv() of
                 undefined -> undefined;
                 Venv -> filename:join([Venv, "bin", ?WORKER])
             end,
    case {InVenv =/= undefined andalso filelib:is_regular(InVenv), os:find_executable(?WORKER)} of
        {true, _} -> {ok, InVenv, []};
        {false, Exe} when Exe =/= false -> {ok, Exe, []};
        {false, false} ->
            {error, {worker_not_found, [{{option, python}, unset}, {{app_env, python}, unset},
                                        {venv, InVenv}, {'PATH', ?WORKER}]}}
    end.

%% @doc The virtualenv that `beam_nas_install' makes and workers look in: the
%% `venv' of the application environment, else `venv' in the application's
%% directory (`_build/ENV/lib/beam_nas' for Mix and rebar3); `undefined' when
%% `beam_nas' is not an application on the code path.
-spec venv() -> file:filename() | undefined.
venv() ->
    case {application:get_env(?APP, venv), code:lib_dir(?APP)} of
        {{ok, Venv}, _} -> filename:absname(to_list(Venv));
        {undefined, {error, bad_name}} -> undefined;
        {undefined, LibDir} -> filename:join(LibDir, "venv")
    end.

%% @doc The options of the pool the application starts, from the environment's
%% `pool' (a map or keyword list of `beam_nas_pool' options but `name'), or
%% `none' when it is not set.
-spec pool() -> {ok, map()} | none | {error, {bad_app_env, beam_nas, [{pool, term()}]}}.
pool() ->
    case application:get_env(?APP, pool) of
        undefined -> none;
        {ok, Pool} ->
            case pool_options(Pool) of
                {ok, Opts} when not is_map_key(name, Opts) -> {ok, Opts};
                _ -> {error, {bad_app_env, ?APP, [{pool, Pool}]}}
            end
    end.

%% @doc The name of the cluster the application's pool is lent to (the
%% environment's `cluster': text or an atom), or `none' when it is not set.
-spec cluster() -> {ok, binary()} | none | {error, {bad_app_env, beam_nas, [{cluster, term()}]}}.
cluster() ->
    case application:get_env(?APP, cluster) of
        undefined -> none;
        {ok, Name} when is_atom(Name), Name =/= nil, Name =/= undefined -> {ok, atom_to_binary(Name)};
        {ok, Name} when is_binary(Name), Name =/= <<>> -> {ok, Name};
        {ok, Name} ->
            case io_lib:char_list(Name) andalso Name =/= [] of
                true -> {ok, unicode:characters_to_binary(Name)};
                false -> {error, {bad_app_env, ?APP, [{cluster, Name}]}}
            end
    end.

pool_options(Pool) when is_map(Pool) ->
    {ok, Pool};
pool_options(Pool) when is_list(Pool) ->
    case lists:all(fun(KV) -> is_tuple(KV) andalso tuple_size(KV) =:= 2 end, Pool) of
        true -> {ok, maps:from_list(Pool)};
        false -> error
    end;
pool_options(_) ->
    error.

to_list(B) when is_binary(B) -> unicode:characters_to_list(B);
to_list(L) -> L.
