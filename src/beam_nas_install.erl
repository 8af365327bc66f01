%% @doc Installs the Python side: a virtualenv (`beam_nas_config:venv()'
%% unless given) holding this repository's Python package, then checks that
%% its `erlport-worker' answers. A second run with nothing changed skips pip:
%% the virtualenv keeps a stamp of the package's sources and the pip arguments.
%%
%% `mix beam_nas.install' runs it for Elixir projects; Erlang projects run
%% `erl -noshell -pa _build/default/lib/beam_nas/ebin -config config/sys
%% -run beam_nas_install main -extra [ARGS]'.
-module(beam_nas_install).

-export([install/1, main/0]).

-define(STAMP, "beam_nas.stamp").
%% What pip builds the package from (setup.cfg's packages and modules).
-define(SOURCES, ["setup.cfg", "setup.py", "pyproject.toml", "cerebros_service.py",
                  "codec", "erlport_worker", "cerebros"]).

%% @doc Options: `venv' (default `beam_nas_config:venv()'), `python' (the
%% interpreter that creates it, default `python3'), `system_site_packages'
%% (false), `pip_args' (extra arguments for `pip install', e.g.
%% `["--no-build-isolation"]'), `source' (the repository, default this
%% module's). Reports each step on standard output.
-spec install(map()) -> {ok, file:filename()} | {error, term()}.
install(Options) ->
    Known = [venv, python, system_site_packages, pip_args, source],
    case maps:keys(Options) -- Known of
        [] -> install_checked(Options);
        Unknown -> {error, {unknown_options, Unknown, {known, Known}}}
    end.

%% @doc The command line entry; its arguments follow `-extra': `--venv DIR',
%% `--python EXE', `--system-site-packages', `--pip-arg=ARG' (repeatable).
%% Halts the node with status 0 when the worker answers, 1 otherwise.
-spec main() -> no_return().
main() ->
    _ = application:load(beam_nas),
    Result = case parse_args(init:get_plain_arguments(), #{}) of
                 {ok, Options} -> install(Options);
                 {error, _} = Error -> Error
             end,
    case Result of
        {ok, _} -> halt(0);
        {error, Reason} -> io:format(standard_error, "beam_nas_install: ~tp~n", [Reason]), halt(1)
    end.

parse_args([], Options) -> {ok, Options};
parse_args(["--venv", Dir | Rest], Options) -> parse_args(Rest, Options#{venv => Dir});
parse_args(["--python", Exe | Rest], Options) -> parse_args(Rest, Options#{python => Exe});
parse_args(["--system-site-packages" | Rest], Options) ->
    parse_args(Rest, Options#{system_site_packages => true});
parse_args(["--pip-arg=" ++ Arg | Rest], Options) ->
    parse_args(["--pip-arg", Arg | Rest], Options);
parse_args(["--pip-arg", Arg | Rest], Options) ->
    parse_args(Rest, Options#{pip_args => maps:get(pip_args, Options, []) ++ [Arg]});
parse_args([Arg | _], _Options) ->
    {error, {bad_argument, Arg, {known, ["--venv DIR", "--python EXE", "--system-site-packages",
                                        "--pip-arg=ARG"]}}}.

install_checked(Options) ->
    Source = text(maps:get(source, Options, repository())),
    PipArgs = [text(A) || A <- maps:get(pip_args, Options, [])],
    case {maps:get(venv, Options, beam_nas_config:venv()), filelib:is_regular(filename:join(Source, "setup.cfg"))} of
        {undefined, _} -> {error, {no_venv, "give venv, or load the beam_nas application"}};
        {_, false} -> {error, {not_a_beam_nas_repository, Source}};
        {Venv0, true} ->
            Venv = filename:absname(text(Venv0)),
            SystemSite = maps:get(system_site_packages, Options, false) =:= true,
            Stamp = stamp(Source, PipArgs, SystemSite),
            Worker = filename:join([Venv, "bin", "erlport-worker"]),
            Steps = [fun() -> create_venv(Venv, text(maps:get(python, Options, "python3")), SystemSite) end,
                     fun() -> pip_install(Venv, Source, PipArgs, Stamp) end,
                     fun() -> check_worker(Worker) end],
            case run_steps(Steps) of
                ok -> {ok, Venv};
                {error, _} = Error -> Error
            end
    end.

run_steps([]) -> ok;
run_steps([Step | Rest]) ->
    case Step() of
        ok -> run_steps(Rest);
        {error, _} = Error -> Error
    end.

create_venv(Venv, Python, SystemSite) ->
    case filelib:is_regular(filename:join([Venv, "bin", "python"])) of
        true ->
            say("virtualenv ~ts exists", [Venv]);
        false ->
            say("creating a virtualenv in ~ts with ~ts", [Venv, Python]),
            case os:find_executable(Python) of
                false -> {error, {python_not_found, Python}};
                Exe -> run(Exe, ["-m", "venv"] ++ ["--system-site-packages" || SystemSite] ++ [Venv])
            end
    end.

pip_install(Venv, Source, PipArgs, Stamp) ->
    StampFile = filename:join(Venv, ?STAMP),
    case file:read_file(StampFile) of
        {ok, Stamp} ->
            say("the Python package is up to date (pip skipped)", []);
        _ ->
            say("pip-installing ~ts into it", [Source]),
            Pip = [filename:join([Venv, "bin", "python"]), "-m", "pip", "install", "--quiet",
                   "--disable-pip-version-check"] ++ PipArgs ++ [Source],
            case run(hd(Pip), tl(Pip)) of
                ok -> file:write_file(StampFile, Stamp);
                {error, _} = Error -> Error
            end
    end.

check_worker(Worker) ->
    case beam_nas_worker:start_link(#{python => Worker}) of
        {ok, Pid} ->
            unlink(Pid),
            Answer = beam_nas_worker:call(Pid, cerebros_service, run_status, [<<"install-check">>]),
            OsPid = beam_nas_worker:os_pid(Pid),
            beam_nas_worker:stop(Pid),
            case Answer of
                {ok, #{<<"status">> := <<"unknown">>}} ->
                    say("the worker answers: ~ts (OS process ~b)", [Worker, OsPid]);
                Other ->
                    {error, {worker_check_failed, Worker, Other}}
            end;
        {error, Reason} ->
            {error, {worker_check_failed, Worker, Reason}}
    end.

%% The repository this module was compiled from: src/ is in its root.
repository() ->
    Source = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:dirname(filename:dirname(Source)).

%% Changes when a file pip would install changes, or how pip is asked to.
stamp(Source, PipArgs, SystemSite) ->
    Files = lists:sort(lists:flatmap(fun(Name) -> files(filename:join(Source, Name)) end, ?SOURCES)),
    Digest = erlang:md5(term_to_binary({[{F, read(F)} || F <- Files], PipArgs, SystemSite})),
    list_to_binary([io_lib:format("~2.16.0b", [B]) || <<B>> <= Digest]).

files(Path) ->
    case filelib:is_dir(Path) of
        true -> [F || F <- filelib:wildcard(filename:join(Path, "**/*.{py,c,h}"))];
        false -> [Path || filelib:is_regular(Path)]
    end.

read(File) ->
    {ok, Bin} = file:read_file(File),
    Bin.

run(Exe, Args) ->
    Port = open_port({spawn_executable, Exe}, [{args, Args}, exit_status, stderr_to_stdout, binary]),
    collect(Port, Exe, Args, []).

collect(Port, Exe, Args, Output) ->
    receive
        {Port, {data, Data}} -> collect(Port, Exe, Args, [Output, Data]);
        {Port, {exit_status, 0}} -> ok;
        {Port, {exit_status, Status}} ->
            {error, {command_failed, [Exe | Args], Status, iolist_to_binary(Output)}}
    end.

say(Format, Args) ->
    io:format("beam_nas_install: " ++ Format ++ "~n", Args).

text(B) when is_binary(B) -> unicode:characters_to_list(B);
text(L) -> L.
