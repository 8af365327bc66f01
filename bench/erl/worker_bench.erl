%% Erlang-driven benchmark of Python port processes beside a process-per-call baseline.
%%
%% Run as `erl -noshell -s worker_bench main -extra Python PythonPath Rounds
%% Baseline Subjects...` (after -extra, arguments may start with a dash).
%% main([Python, PythonPath, Rounds, Baseline | Subjects]) times each subject in
%% turn and prints one tab-separated line per measurement:
%%   RESULT <subject>_<name> <unit> <value>
%% Subjects come as four arguments each: Name, Executable, its PYTHONPATH, and
%% extra arguments separated by spaces ("none" for none). Each is opened as stock
%% ErlPort opens Python (same command line and port options, minor_version 1
%% frames), so erlport-worker and stock ErlPort's own Python side are driven
%% alike. The subject named "floor" is instead a Python process that echoes raw
%% frames without decoding them (the cost of the pipes and of waking Python,
%% which no worker can beat). With Baseline "yes", the baseline starts
%% `python3 -c` per call, which reads one frame, decodes it with the project's
%% codec, and writes the result back: the old approach.
-module(worker_bench).
-export([main/0, main/1]).

-define(WAIT, 120000).
-define(BLOCK, 100).

-define(FLOOR_SCRIPT,
        "from erlport_worker.framing import FrameReader, FrameWriter\n"
        "r, w = FrameReader(0), FrameWriter(1)\n"
        "while (f := r.read()) is not None:\n"
        "    w.write(f)\n").

-define(BASELINE_SCRIPT,
        "import sys, codec.plain as p\n"
        "i, o = sys.stdin.buffer, sys.stdout.buffer\n"
        "n = int.from_bytes(i.read(4), 'big')\n"
        "v = p.decode(i.read(n))\n"
        "d = p.encode(v)\n"
        "o.write(len(d).to_bytes(4, 'big') + d)\n"
        "o.flush()\n").

main() ->
    main(init:get_plain_arguments()).

main([Python, PythonPath, RoundsText, Baseline | Subjects]) ->
    Rounds = list_to_integer(RoundsText),
    Floats = [I * 0.25 || I <- lists:seq(1, 100000)],
    Blob = binary:copy(list_to_binary(lists:seq(0, 255)), 10 * 1024 * 1024 div 256),
    Ports = [{Name, open_subject(Name, Executable, Path, Extra)}
             || {Name, Executable, Path, Extra} <- subjects(Subjects)],
    trivial_in_turns(Ports, Rounds),
    lists:foreach(fun({Name, Port}) ->
                          measure(Name, Port, Rounds, Floats, Blob),
                          port_close(Port)
                  end, Ports),
    case Baseline of
        "yes" -> baseline(Python, PythonPath, Floats, Blob);
        "no" -> ok
    end,
    halt(0).

subjects([Name, Executable, Path, Extra | Rest]) ->
    [{Name, Executable, Path, Extra} | subjects(Rest)];
subjects([]) -> [].

open_subject("floor", Python, PythonPath, _) ->
    open_port({spawn_executable, Python},
              [{args, ["-c", ?FLOOR_SCRIPT]}, {env, [{"PYTHONPATH", PythonPath}]},
               {packet, 4}, binary, exit_status]);
open_subject(_, Executable, PythonPath, Extra) ->
    "Python 3." ++ _ = os:cmd(Executable ++ " -V"),
    ExtraArgs = case Extra of "none" -> []; _ -> string:lexemes(Extra, " ") end,
    open_port({spawn_executable, Executable},
              [{args, ["-u", "-m", "erlport.cli", "--packet=4", "--use_stdio",
                       "--compressed=0", "--buffer_size=65536" | ExtraArgs]},
               {env, [{"PYTHONPATH", PythonPath}]}, {packet, 4}, binary, hide, exit_status]).

baseline(Python, PythonPath, Floats, Blob) ->
    Base = fun(Term) -> element(1, timer:tc(fun() -> Term = baseline(Python, PythonPath, Term) end)) end,
    BaseTrivial = [Base(3) || _ <- lists:seq(1, 10)],
    result("baseline_trivial_median", "us", percentile(BaseTrivial, 50)),
    result("baseline_trivial_p99", "us", percentile(BaseTrivial, 99)),
    result("baseline_calls_per_second_1_caller", "calls/s", 1.0e6 / percentile(BaseTrivial, 50)),
    result("baseline_floats_100k_median", "ms", percentile([Base(Floats) || _ <- lists:seq(1, 5)], 50) / 1000),
    result("baseline_binary_10mb_median", "ms", percentile([Base(Blob) || _ <- lists:seq(1, 5)], 50) / 1000).

%% Trivial calls one at a time, the subjects taking turns in blocks of ?BLOCK
%% calls, so that a change in the machine's load falls on all of them alike,
%% while each block still has calls back to back (what polling is for).
trivial_in_turns(Ports, Rounds) ->
    [3 = call(Port, 0, operator, add, [1, 2]) || {_, Port} <- Ports],
    Blocks = max(1, Rounds div ?BLOCK),
    Turns = [{Name, [trivial_us(Port, (Block - 1) * ?BLOCK + I) || I <- lists:seq(1, ?BLOCK)]}
             || Block <- lists:seq(1, Blocks), {Name, Port} <- Ports],
    lists:foreach(fun({Name, _}) ->
                          Samples = lists:append([S || {N, S} <- Turns, N =:= Name]),
                          result(Name ++ "_trivial_median", "us", percentile(Samples, 50)),
                          result(Name ++ "_trivial_p99", "us", percentile(Samples, 99))
                  end, Ports).

trivial_us(Port, Id) ->
    element(1, timer:tc(fun() -> 3 = call(Port, Id, operator, add, [1, 2]) end)).

measure(Who, Port, Rounds, Floats, Blob) ->
    result(Who ++ "_calls_per_second_8_callers", "calls/s", concurrent(Port, 8, Rounds)),
    result(Who ++ "_floats_100k_median", "ms", echo_ms(Port, Floats, 5)),
    result(Who ++ "_binary_10mb_median", "ms", echo_ms(Port, Blob, 5)).

result(Name, Unit, Value) ->
    io:format("RESULT\t~s\t~s\t~.3f~n", [Name, Unit, float(Value)]).

percentile(Samples, P) ->
    Sorted = lists:sort(Samples),
    lists:nth(max(1, min(length(Sorted), round(length(Sorted) * P / 100))), Sorted).

send(Port, Term) ->
    port_command(Port, term_to_binary(Term, [{minor_version, 1}])).

%% One call with the caller owning the port: the pure round trip. The floor
%% sends the request back; its last element is the argument list.
call(Port, Id, M, F, A) ->
    send(Port, {'C', Id, M, F, A}),
    receive
        {Port, {data, Data}} -> result(Id, M, F, binary_to_term(Data))
    after ?WAIT -> erlang:error(timeout)
    end.

result(Id, _, _, {r, Id, Result}) -> Result;
result(Id, operator, add, {'C', Id, _, _, [X, Y]}) -> X + Y;
result(Id, builtins, min, {'C', Id, _, _, [[X]]}) -> X.

%% An echo both workers can run: min([Term]) is Term (stock's lists refuse copy.copy).
echo_ms(Port, Term, Times) ->
    Samples = [element(1, timer:tc(fun() -> Term = call(Port, I, builtins, min, [[Term]]) end))
               || I <- lists:seq(1, Times)],
    percentile(Samples, 50) / 1000.

%% Callers send requests to an owner process that numbers them and routes
%% each reply back by id, as ErlPort's gen_server does.
concurrent(Port, Callers, Rounds) ->
    Owner = self(),
    PerCaller = max(1, Rounds div Callers),
    Start = erlang:monotonic_time(microsecond),
    Pids = [spawn_link(fun() -> caller(Owner, PerCaller) end) || _ <- lists:seq(1, Callers)],
    route(Port, 1, #{}, length(Pids)),
    Elapsed = erlang:monotonic_time(microsecond) - Start,
    Callers * PerCaller * 1.0e6 / Elapsed.

caller(Owner, 0) -> Owner ! caller_done;
caller(Owner, N) ->
    Owner ! {call, self(), [N, 1]},
    receive {reply, Result} -> Result = N + 1 end,
    caller(Owner, N - 1).

route(_Port, _Next, _Calls, 0) -> ok;
route(Port, Next, Calls, Running) ->
    receive
        {call, From, Args} ->
            send(Port, {'C', Next, operator, add, Args}),
            route(Port, Next + 1, Calls#{Next => From}, Running);
        {Port, {data, Data}} ->
            Reply = binary_to_term(Data),
            Id = element(2, Reply),
            Result = result(Id, operator, add, Reply),
            {From, Rest} = maps:take(Id, Calls),
            From ! {reply, Result},
            route(Port, Next, Rest, Running);
        caller_done ->
            route(Port, Next, Calls, Running - 1)
    after ?WAIT -> erlang:error(timeout)
    end.

%% --- the baseline: one Python process per call -------------------------------

baseline(Python, PythonPath, Term) ->
    Port = open_port({spawn_executable, Python},
                     [{args, ["-c", ?BASELINE_SCRIPT]}, {env, [{"PYTHONPATH", PythonPath}]},
                      {packet, 4}, binary, exit_status]),
    send(Port, Term),
    receive
        {Port, {data, Data}} ->
            Result = binary_to_term(Data),
            receive {Port, {exit_status, 0}} -> Result after ?WAIT -> erlang:error(no_exit) end
    after ?WAIT -> erlang:error(timeout)
    end.
