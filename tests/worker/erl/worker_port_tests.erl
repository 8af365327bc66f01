%% Integration cases for erlport-worker on a real node.
%%
%% The port is opened exactly as stock ErlPort 0.11 opens its Python: the same
%% `-V' probe, the same command line, the same port options, and frames made
%% with term_to_binary(T, [{minor_version, 1}]). A small owner process plays
%% ErlPort's gen_server: it numbers calls, wraps pids, references, ports, funs
%% and bitstrings as '$erlport.opaque' (and never unwraps anything coming
%% back), runs Python's calls to Erlang, delivers casts as `Dest ! Message'
%% (stopping, as stock does, when Dest is not a pid or a name) and collects
%% 'P' output.
%%
%% main([Exe, PythonPath, Mode]) prints "CASES Name...", runs every case and
%% prints one line per case: "CASE Name ok" or "CASE Name FAIL Reason".
%% Mode is stdio or nouse_stdio.
-module(worker_port_tests).
-export([main/1, nested/1]).

-define(T, worker_targets).
-define(OWNER, worker_port_owner).
-define(WAIT, 10000).

main([Exe, PythonPath, ModeName]) ->
    Mode = list_to_atom(ModeName),
    Shared = start(Exe, [], PythonPath, Mode),
    register(?OWNER, Shared),
    Env = {Exe, PythonPath, Mode, Shared},
    Cases = [version, call, mapping, strict_mode, error, nan, pipelined, out_of_order,
             nested, print_and_fd, opaque_round_trip, pid_send, cast_to_wrapped_pid, progress,
             run_nas_progress, self, messages, cancel, floats,
             big_binary, malformed, port_close, sigterm],
    io:format("CASES ~s~n", [lists:join(" ", [atom_to_list(C) || C <- Cases])]),
    [report(Case, catch run(Case, Env)) || Case <- Cases],
    stop(element(4, Env)),
    halt(0).

report(Case, ok) -> io:format("CASE ~s ok~n", [Case]);
report(Case, Other) -> io:format("CASE ~s FAIL ~0p~n", [Case, Other]).

%% Erlang side of worker_targets:nested/1 (the nested case runs on the shared worker).
nested(Depth) -> call(?OWNER, ?T, nested, [Depth]).

%% --- cases ---------------------------------------------------------------

run(version, {Exe, _, _, _}) ->
    "Python 3." ++ _ = os:cmd(Exe ++ " -V"),
    ok;
run(call, Env) ->
    shared(Env, fun(P) -> 3 = call(P, ?T, add, [1, 2]), ok end);
run(mapping, Env) ->
    shared(Env, fun(P) ->
        <<"héllo"/utf8>> = call(P, ?T, greeting, []),
        nil = call(P, ?T, nothing, []),
        [<<"str">>, <<"bool">>, <<"NoneType">>, <<"dict">>] =
            call(P, ?T, kinds, [<<"x">>, true, nil, #{a => 1}]),
        ok end);
run(strict_mode, Env) ->
    with_port(Env, ["--strict"], fun(P) ->
        "héllo" = call(P, ?T, greeting, []),
        undefined = call(P, ?T, nothing, []),
        ok end);
run(error, Env) ->
    shared(Env, fun(P) ->
        {error, {python, 'builtins.ValueError', <<"bad">>, [Line | _]}} =
            catch_call(P, ?T, fail, [<<"bad">>]),
        true = is_binary(Line),
        2 = call(P, ?T, add, [1, 1]),
        ok end);
run(nan, Env) ->
    shared(Env, fun(P) ->
        {error, {python, 'erlport_worker.server.UnencodableResult', _, _}} =
            catch_call(P, ?T, nan, []),
        5 = call(P, ?T, echo, [5]),
        ok end);
run(pipelined, Env) ->
    shared(Env, fun(P) ->
        N = 10000,
        Refs = [{I, async_call(P, ?T, add, [I, 1])} || I <- lists:seq(1, N)],
        lists:foreach(fun({I, {Ref, _Id}}) -> Expected = I + 1, Expected = await(Ref) end,
                      Refs) end);
run(out_of_order, Env) ->
    shared(Env, fun(P) ->
        %% The long call runs until cancelled: the order cannot depend on timing.
        {Slow, SlowId} = async_call(P, ?T, wait_for_cancel, []),
        {Fast, _} = async_call(P, ?T, add, [1, 2]),
        3 = await(Fast),
        true = call(P, 'erlport_worker.jobs', cancel, [SlowId]),
        {error, {python, 'erlport_worker.jobs.JobCancelled', _, _}} = await_result(Slow),
        ok end);
run(nested, Env) ->
    shared(Env, fun(P) -> 50 = call(P, ?T, nested, [50]), ok end);
run(print_and_fd, Env) ->
    shared(Env, fun(P) ->
        <<"quiet">> = call(P, ?T, noisy, []),
        3 = call(P, ?T, add, [1, 2]),
        <<"printed line\n">> = printed(P),
        ok end);
run(opaque_round_trip, Env) ->
    with_port(Env, [], fun(P) ->
        Terms = [self(), make_ref(), hd(erlang:ports()), fun() -> ok end, fun lists:sum/1,
                 <<1:3>>, <<1, 2, 5:4>>],
        [T = call(P, copy, copy, [T]) || T <- Terms],
        Nested = [{self(), #{key => make_ref()}}, [<<7:7>>]],
        Nested = call(P, ?T, echo, [Nested]),
        ok end);
run(pid_send, Env) ->
    with_port(Env, [], fun(P) ->
        Self = self(),
        Self = call(P, ?T, send_back, [Self, {hello, 1}]),
        receive {hello, 1} -> ok after ?WAIT -> no_message end end);
run(cast_to_wrapped_pid, Env) ->
    with_port(Env, [], fun(P) ->
        <<"cast">> = call(P, ?T, cast_to, [self(), {note, 2}]),
        receive {note, 2} -> ok after ?WAIT -> no_message end end);
run(progress, Env) ->
    with_port(Env, [], fun(P) ->
        {Ref, Id} = async_call(P, ?T, progress, [self()]),
        <<"reported">> = await(Ref),
        receive {progress, Id, 0.5} -> ok after ?WAIT -> no_progress end end);
run(run_nas_progress, Env) ->
    with_port(Env, [], fun(P) ->
        Opts = #{<<"progress_to">> => self(), <<"seed">> => 1,
                 <<"budget">> => #{<<"max_trials">> => 1}},
        {Ref, _} = async_call(P, cerebros_service, run_nas, [#{<<"dataset_id">> => <<"iris">>}, Opts]),
        {ok, #{<<"status">> := <<"success">>, <<"run_id">> := RunId}} = await_result(Ref, 120000),
        receive {nas_progress, #{<<"run_id">> := RunId, <<"completed">> := 1}} -> ok
        after ?WAIT -> no_progress
        end end);
run(self, Env) ->
    shared(Env, fun(P) -> P = call(P, ?T, my_self, []), ok end);
run(messages, Env) ->
    shared(Env, fun(P) ->
        <<"installed">> = call(P, ?T, forward_messages, [self()]),
        P ! {cast, {note, 7}},
        receive {<<"got">>, {note, 7}} -> ok after ?WAIT -> no_message end end);
run(cancel, Env) ->
    with_port(Env, ["--concurrency", "1"], fun(P) ->
        {Ref, Id} = async_call(P, ?T, spin, []),
        wait_running(P),
        true = call(P, 'erlport_worker.jobs', cancel, [Id]),
        {error, {python, 'erlport_worker.jobs.JobCancelled', _, _}} = await_result(Ref),
        4 = call(P, ?T, add, [2, 2]),
        ok end);
run(floats, Env) ->
    shared(Env, fun(P) ->
        Floats = [I * 0.5 || I <- lists:seq(1, 100000)],
        Floats = call(P, ?T, echo, [Floats]),
        ok end);
run(big_binary, Env) ->
    shared(Env, fun(P) ->
        Bin = binary:copy(<<255, 0, 1, 2>>, 2500000),
        Bin = call(P, ?T, echo, [Bin]),
        ok end);
run(malformed, Env) ->
    with_port(Env, [], fun(P) ->
        P ! {raw, <<"not a term">>},
        {exit_status, 3} = exit_status(P),
        ok end);
run(port_close, Env) ->
    with_port(Env, [], fun(P) ->
        {_, _} = async_call(P, ?T, sleep_then, [300, <<"never">>]),
        wait_running(P),
        OsPid = os_pid(P),
        P ! close,
        gone = wait_gone(OsPid, 50),
        ok end);
run(sigterm, Env) ->
    with_port(Env, [], fun(P) ->
        3 = call(P, ?T, add, [1, 2]),
        os:cmd("kill -TERM " ++ integer_to_list(os_pid(P))),
        {exit_status, 0} = exit_status(P),
        ok end).

wait_running(P) ->
    case call(P, 'erlport_worker.jobs', running, []) of
        [] -> timer:sleep(10), wait_running(P);
        [_ | _] -> ok
    end.

wait_gone(_OsPid, 0) -> still_running;
wait_gone(OsPid, Tries) ->
    case os:cmd("kill -0 " ++ integer_to_list(OsPid) ++ " 2>/dev/null && echo alive") of
        "alive\n" -> timer:sleep(100), wait_gone(OsPid, Tries - 1);
        _ -> gone
    end.

%% --- the client API, as python:call/4 ------------------------------------

%% Most cases share one worker; those that need flags or end the worker get their own.
shared({_, _, _, P}, Fun) -> Fun(P).

with_port({Exe, PythonPath, Mode, _}, Extra, Fun) ->
    P = start(Exe, Extra, PythonPath, Mode),
    try Fun(P) after stop(P) end.

call(P, M, F, A) ->
    case catch_call(P, M, F, A) of
        {ok, Result} -> Result;
        {error, Error} -> erlang:error(Error)
    end.

catch_call(P, M, F, A) ->
    {Ref, _Id} = async_call(P, M, F, A),
    await_result(Ref).

async_call(P, M, F, A) ->
    Ref = make_ref(),
    P ! {call, self(), Ref, M, F, A},
    receive {Ref, id, Id} -> {Ref, Id} after ?WAIT -> erlang:error(no_id) end.

await(Ref) ->
    {ok, Result} = await_result(Ref),
    Result.

await_result(Ref) -> await_result(Ref, ?WAIT).

await_result(Ref, Wait) ->
    receive {Ref, Result} -> Result after Wait -> {error, timeout} end.

printed(P) -> ask(P, printed).
os_pid(P) -> ask(P, os_pid).
exit_status(P) -> ask(P, exit_status).

ask(P, What) ->
    P ! {What, self()},
    receive {P, What, Value} -> Value after ?WAIT -> {no_answer, What} end.

stop(P) ->
    P ! close,
    ok.

%% --- the port owner, as ErlPort's gen_server ------------------------------

start(Exe, Extra, PythonPath, Mode) ->
    Parent = self(),
    P = spawn(fun() -> init(Parent, Exe, Extra, PythonPath, Mode) end),
    receive {P, started} -> P after ?WAIT -> erlang:error(start_timeout) end.

init(Parent, Exe, Extra, PythonPath, Mode) ->
    "Python 3." ++ _ = os:cmd(Exe ++ " -V"),
    Stdio = case Mode of stdio -> "--use_stdio"; nouse_stdio -> "--nouse_stdio" end,
    Args = Extra ++ ["-u", "-m", "erlport.cli", "--packet=4", Stdio, "--compressed=0",
                     "--buffer_size=65536"],
    PortOpts = [{args, Args}, {env, [{"PYTHONPATH", PythonPath}]}, {packet, 4}]
        ++ [nouse_stdio || Mode =:= nouse_stdio] ++ [binary, hide, exit_status],
    Port = open_port({spawn_executable, os:find_executable(Exe)}, PortOpts),
    Parent ! {self(), started},
    loop(#{port => Port, next => 1, calls => #{}, printed => [], status => running,
           waiting => []}).

loop(S = #{port := Port, next := Next, calls := Calls}) ->
    receive
        {call, From, Ref, M, F, A} ->
            send(Port, {'C', Next, M, F, wrap(A)}),
            From ! {Ref, id, Next},
            loop(S#{next := Next + 1, calls := Calls#{Next => {From, Ref}}});
        {cast, Message} ->
            send(Port, {'M', wrap(Message)}),
            loop(S);
        {raw, Bin} ->
            port_command(Port, Bin),
            loop(S);
        {result, Id, Result} ->
            send(Port, {'r', Id, wrap(Result)}),
            loop(S);
        {failure, Id, Error} ->
            send(Port, {'e', Id, wrap(Error)}),
            loop(S);
        {Port, {data, Data}} ->
            case incoming(binary_to_term(Data), S) of
                {stop, Reason} -> catch port_close(Port), stopped(Reason, S);
                S1 -> loop(S1)
            end;
        {Port, {exit_status, Status}} ->
            [W ! {self(), exit_status, {exit_status, Status}} || W <- maps:get(waiting, S)],
            loop(S#{status := {exit_status, Status}, waiting := []});
        {printed, From} ->
            From ! {self(), printed, iolist_to_binary(lists:reverse(maps:get(printed, S)))},
            loop(S);
        {os_pid, From} ->
            {os_pid, OsPid} = erlang:port_info(Port, os_pid),
            From ! {self(), os_pid, OsPid},
            loop(S);
        {exit_status, From} ->
            case maps:get(status, S) of
                running -> loop(S#{waiting := [From | maps:get(waiting, S)]});
                Status -> From ! {self(), exit_status, Status}, loop(S)
            end;
        close ->
            catch port_close(Port),
            ok
    end.

incoming({'r', Id, Result}, S) -> answer(Id, {ok, Result}, S);
incoming({'e', Id, Error}, S) -> answer(Id, {error, Error}, S);
incoming({'C', Id, M, F, A, 'L'}, S = #{port := Port}) ->
    Owner = self(),
    Result = case {M, F} of
                 {erlang, self} -> Owner;
                 _ -> apply(M, F, A)
             end,
    send(Port, {'r', Id, wrap(Result)}),
    S;
incoming({'C', Id, M, F, A, 'N'}, S) ->
    Owner = self(),
    spawn(fun() ->
        try apply(M, F, A) of
            Result -> Owner ! {result, Id, Result}
        catch Class:Reason -> Owner ! {failure, Id, {erlang, Class, Reason, []}}
        end end),
    S;
incoming({'M', Dest, Message}, S) ->
    try Dest ! Message of
        _ -> S
    catch error:badarg -> {stop, {send_error, badarg}}
    end;
incoming({'P', Text}, S = #{printed := Printed}) ->
    S#{printed := [Text | Printed]};
incoming(Other, _S) ->
    erlang:error({invalid_protocol_message, Other}).

%% The instance has stopped, as stock's gen_server stops: every caller gets the reason.
stopped(Reason, S = #{calls := Calls}) ->
    [From ! {Ref, {error, Reason}} || {From, Ref} <- maps:values(Calls)],
    receive
        {call, From, Ref, _M, _F, _A} ->
            From ! {Ref, id, 0},
            From ! {Ref, {error, Reason}},
            stopped(Reason, S#{calls := #{}});
        {What, From} when is_pid(From) ->
            From ! {self(), What, {stopped, Reason}},
            stopped(Reason, S#{calls := #{}});
        close ->
            ok;
        _ ->
            stopped(Reason, S#{calls := #{}})
    end.

answer(Id, Result, S = #{calls := Calls}) ->
    {{From, Ref}, Rest} = maps:take(Id, Calls),
    From ! {Ref, Result},
    S#{calls := Rest}.

send(Port, Term) ->
    port_command(Port, term_to_binary(Term, [{minor_version, 1}])).

%% Pids, references, ports, funs and bitstrings travel as ErlPort opaques; the
%% way back is never unwrapped (stock's Python side sends the raw term).
wrap(T) when is_atom(T); is_number(T); is_binary(T) -> T;
wrap(T) when is_list(T) -> [wrap(X) || X <- T];
wrap(T) when is_tuple(T) -> list_to_tuple(wrap(tuple_to_list(T)));
wrap(T) when is_map(T) -> maps:from_list([{wrap(K), wrap(V)} || {K, V} <- maps:to_list(T)]);
wrap(T) ->
    <<131, Data/binary>> = term_to_binary(T, [{minor_version, 1}]),
    {'$erlport.opaque', erlang, Data}.
