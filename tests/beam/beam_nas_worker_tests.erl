%% EUnit tests of beam_nas_worker, beam_nas_pool and beam_nas_dispatcher on a
%% real node with real Python workers. tests/beam/test_beam_side.py runs each
%% generator below in its own node; the worker command and the folder of
%% priv_jobs.py come from BEAM_NAS_TEST_PYTHON and BEAM_NAS_TEST_PYPATH.
-module(beam_nas_worker_tests).
-behaviour(supervisor).
-include_lib("eunit/include/eunit.hrl").
-export([init/1]).

%% The supervisor callback of the one-worker supervisors below.
init({Flags, Specs}) ->
    {ok, {Flags, Specs}}.

%%% Helpers

options() ->
    options(#{}).

options(Extra) ->
    maps:merge(#{python => os:getenv("BEAM_NAS_TEST_PYTHON"),
                 python_path => [os:getenv("BEAM_NAS_TEST_PYPATH")]}, Extra).

start() ->
    start(#{}).

start(Extra) ->
    {ok, W} = beam_nas_worker:start_link(options(Extra)),
    W.

%% A test that runs `Body(W, OsPid)' with a fresh worker, stopped afterwards.
with_worker(Extra, Body) ->
    {timeout, 60, fun() ->
        W = start(Extra),
        try Body(W, beam_nas_worker:os_pid(W))
        after catch beam_nas_worker:stop(W)
        end
    end}.

%% A test that runs `Body(Sup, W, OsPid)' with a worker under a one_for_one
%% supervisor `Sup', shut down afterwards.
with_supervised(Extra, Body) ->
    {timeout, 60, fun() ->
        Spec = beam_nas_worker:child_spec(options(Extra)),
        {ok, Sup} = supervisor:start_link(?MODULE, {#{strategy => one_for_one}, [Spec]}),
        unlink(Sup),
        [{_, W, _, _}] = supervisor:which_children(Sup),
        try Body(Sup, W, beam_nas_worker:os_pid(W))
        after exit(Sup, shutdown)
        end
    end}.

%% Waits for `Sup' to run a worker other than `Old', and returns it.
restarted_worker(Sup, Old) ->
    Current = fun() -> [{_, W, _, _}] = supervisor:which_children(Sup), W end,
    wait_until(fun() -> is_pid(Current()) andalso Current() =/= Old end, 10000),
    Current().

jobs(W, F, A) ->
    beam_nas_worker:call(W, priv_jobs, F, A, 20000).

os_alive(OsPid) ->
    filelib:is_dir("/proc/" ++ integer_to_list(OsPid))
        andalso not zombie(OsPid).

zombie(OsPid) ->
    case file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/stat") of
        {ok, Stat} -> [_, State | _] = string:split(lists:last(string:split(Stat, ")", trailing)), " ", all),
                      State =:= <<"Z">>;
        {error, _} -> false
    end.

%% Polls `Fun' until it returns true; fails the test after `Ms' ms.
wait_until(Fun, Ms) when Ms =< 0 ->
    ?assert(Fun());
wait_until(Fun, Ms) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(50), wait_until(Fun, Ms - 50)
    end.

%% The worker still answers, from the same OS process.
assert_same_worker(W, OsPid) ->
    ?assertEqual({ok, alive}, jobs(W, echo, [alive])),
    ?assertEqual(OsPid, beam_nas_worker:os_pid(W)).

%% Python's print may arrive in several pieces; gathers `Size' bytes of it.
collect_output(_W, Size, Text) when byte_size(Text) >= Size ->
    Text;
collect_output(W, Size, Text) ->
    receive {beam_nas_output, W, More} -> collect_output(W, Size, <<Text/binary, More/binary>>)
    after 5000 -> error({no_output, Text})
    end.

%% Starts `N' calls that each hold a Python thread for `Seconds', and returns
%% once all of them run in Python; each caller sends {held, Result} to us.
hold(W, N, Seconds) ->
    Self = self(),
    [spawn(fun() -> Self ! {held, jobs(W, hold, [Self, Seconds])} end) || _ <- lists:seq(1, N)],
    [receive <<"started">> -> ok after 10000 -> error(hold_not_started) end || _ <- lists:seq(1, N)],
    ok.

kill9(OsPid) ->
    os:cmd("kill -9 " ++ integer_to_list(OsPid)).

%% Starts N callers of Fun(I) at once and returns their results in order.
parallel(N, Fun) ->
    Self = self(),
    Pids = [spawn_link(fun() -> Self ! {self(), Fun(I)} end) || I <- lists:seq(1, N)],
    [receive {P, R} -> R after 60000 -> error({no_reply, P}) end || P <- Pids].

%%% Normal calls and values

calls_test_() ->
    {timeout, 60, fun() ->
        W = start(),
        ?assertEqual({ok, 3.0}, beam_nas_worker:call(W, math, sqrt, [9])),
        ?assertEqual({ok, 5}, beam_nas_worker:call(W, operator, add, [2, 3], 5000)),
        Term = #{<<"list">> => [1, -2, 3.5, 1 bsl 70], <<"nested">> => {tuple, [<<"bin">>]},
                 <<"empty">> => [], <<"bytes">> => <<0, 255, 128>>},
        ?assertEqual({ok, Term}, jobs(W, echo, [Term])),
        {ok, PyPid} = jobs(W, getpid, []),
        ?assertEqual(beam_nas_worker:os_pid(W), PyPid),
        beam_nas_worker:stop(W),
        wait_until(fun() -> not os_alive(PyPid) end, 5000)
    end}.

unicode_test_() ->
    with_worker(#{}, fun(W, _OsPid) ->
        Text = <<"héllo wörld, 世界, emoji 🎉"/utf8>>,
        ?assertEqual({ok, Text}, jobs(W, echo, [Text])),
        Atom = 'ünïcødé_世界',
        ?assertEqual({ok, Atom}, jobs(W, echo, [Atom])),
        {ok, [_TypeName, AtomText]} = jobs(W, describe, [Atom]),
        ?assertEqual(atom_to_binary(Atom, utf8), AtomText),
        ?assertEqual({ok, 'Ωmega'}, jobs(W, make_atom, [<<"Ωmega"/utf8>>]))
    end).

large_payloads_test_() ->
    with_worker(#{}, fun(W, _OsPid) ->
        Big = crypto:strong_rand_bytes(10 * 1024 * 1024),
        ?assertEqual({ok, Big}, jobs(W, echo, [Big])),
        Floats = [float(I) / 7 || I <- lists:seq(1, 100000)],
        ?assertEqual({ok, Floats}, jobs(W, echo, [Floats]))
    end).

nan_result_is_an_error_test_() ->
    with_worker(#{}, fun(W, OsPid) ->
        ?assertMatch({error, {python, _, _, _}}, jobs(W, not_a_number, [])),
        assert_same_worker(W, OsPid)
    end).

python_exception_test_() ->
    with_worker(#{}, fun(W, OsPid) ->
        {error, {python, Class, Message, Traceback}} = jobs(W, fail, [<<"bad input">>]),
        ?assert(lists:suffix("ValueError", atom_to_list(Class))),
        ?assertNotEqual(nomatch, string:find(Message, "bad input")),
        ?assert(is_list(Traceback) andalso Traceback =/= []),
        ?assertMatch({error, {python, _, _, _}}, beam_nas_worker:call(W, no_such_module, f, [])),
        assert_same_worker(W, OsPid)
    end).

%%% Output during calls

print_and_c_level_output_test_() ->
    {timeout, 60, fun() ->
        [begin
             W = start(#{output => self(), use_stdio => Stdio}),
             ?assertEqual({ok, 5}, jobs(W, say, [<<"hello">>])),
             ?assertEqual(<<"hello\n">>, collect_output(W, 6, <<>>)),
             ?assertEqual({ok, <<"survived">>}, jobs(W, c_level_output, [])),
             ?assertEqual({ok, 3}, jobs(W, echo, [3])),
             beam_nas_worker:stop(W)
         end || Stdio <- [true, false]]
    end}.

%%% Messages and calls from Python

python_sends_and_calls_erlang_test_() ->
    with_worker(#{}, fun(W, _OsPid) ->
        ?assertEqual({ok, <<"sent">>}, jobs(W, send_to, [self(), {hello, <<"from python">>}])),
        receive {hello, <<"from python">>} -> ok after 5000 -> error(no_message) end,
        ?assertEqual({ok, [3, 2, 1]}, jobs(W, call_erlang, [lists, reverse, [[1, 2, 3]]])),
        ?assertMatch({error, {python, _, _, _}}, jobs(W, call_erlang, [erlang, error, [boom]])),
        ?assertEqual({ok, W}, jobs(W, owner, [])),
        <<131, Wrapped/binary>> = term_to_binary({self(), make_ref()}),
        ?assertMatch({ok, {Self, Ref}} when Self =:= self() andalso is_reference(Ref),
                     jobs(W, stock_opaque, [Wrapped])),
        ?assertEqual({ok, 4}, jobs(W, echo, [4]))
    end).

%%% Concurrency

concurrent_callers_test_() ->
    with_worker(#{max_concurrent => 8}, fun(W, _OsPid) ->
        Results = parallel(500, fun(I) ->
                                    Payload = {I, crypto:strong_rand_bytes(I rem 64)},
                                    {Payload, jobs(W, echo, [Payload])}
                                end),
        ?assertEqual(500, length(Results)),
        [?assertEqual({ok, P}, R) || {P, R} <- Results]
    end).

queued_call_times_out_test_() ->
    with_worker(#{max_concurrent => 1}, fun(W, _OsPid) ->
        hold(W, 1, 1),
        %% Waits in the gen_server behind the running call, and gives up there.
        ?assertEqual({error, timeout}, beam_nas_worker:call(W, priv_jobs, echo, [queued], 200)),
        receive {held, R} -> ?assertEqual({ok, <<"held">>}, R) after 10000 -> error(not_held) end,
        ?assertEqual({ok, 8}, jobs(W, echo, [8]))
    end).

pool_spreads_calls_test_() ->
    {timeout, 90, fun() ->
        {ok, Pool} = beam_nas_pool:start_link(#{size => 2, worker => options()}),
        OsPids = lists:usort([P || {ok, P} <- parallel(2, fun(_) ->
                                  beam_nas_pool:call(Pool, priv_jobs, burn, [30000000], 20000) end)]),
        ?assertEqual(lists:sort([beam_nas_worker:os_pid(W) || W <- beam_nas_pool:workers(Pool)]),
                     OsPids),
        Results = parallel(500, fun(I) -> {I, beam_nas_pool:call(Pool, priv_jobs, echo, [I])} end),
        [?assertEqual({ok, I}, R) || {I, R} <- Results],
        unlink(Pool),
        exit(Pool, shutdown),
        wait_until(fun() -> not lists:any(fun os_alive/1, OsPids) end, 10000)
    end}.

pool_call_all_asks_every_worker_test_() ->
    {timeout, 60, fun() ->
        {ok, Pool} = beam_nas_pool:start_link(#{size => 2, worker => options()}),
        Workers = beam_nas_pool:workers(Pool),
        Answers = beam_nas_pool:call_all(Pool, os, getpid, [], 10000),
        ?assertEqual(lists:sort(Workers), lists:sort([W || {W, _} <- Answers])),
        [?assertEqual({ok, beam_nas_worker:os_pid(W)}, Answer) || {W, Answer} <- Answers],
        unlink(Pool),
        exit(Pool, shutdown)
    end}.

%%% Failures

worker_killed_mid_call_test_() ->
    with_supervised(#{}, fun(Sup, W, OsPid) ->
        hold(W, 3, 30),
        kill9(OsPid),
        %% All three answers arrive long before the 30 s sleeps would end.
        [receive {held, R} -> ?assertEqual({error, {worker_exit, 137}}, R)
         after 10000 -> error(caller_not_answered)
         end || _ <- [1, 2, 3]],
        W2 = restarted_worker(Sup, W),
        ?assertEqual({ok, ok}, jobs(W2, echo, [ok])),
        ?assertNotEqual(OsPid, beam_nas_worker:os_pid(W2))
    end).

timeout_cancels_python_call_test_() ->
    with_worker(#{}, fun(W, OsPid) ->
        ?assertEqual({error, timeout}, beam_nas_worker:call(W, priv_jobs, cancellable, [20, self()], 1000)),
        receive Outcome -> ?assertEqual(<<"cancelled">>, Outcome)
        after 10000 -> error(python_not_cancelled)
        end,
        assert_same_worker(W, OsPid)
    end).

timeout_without_cancel_kills_worker_test_() ->
    with_supervised(#{cancel_grace => 500}, fun(Sup, W, OsPid) ->
        ?assertEqual({error, timeout}, beam_nas_worker:call(W, priv_jobs, hold, [self(), 30], 300)),
        wait_until(fun() -> not os_alive(OsPid) end, 10000),
        ?assertEqual({ok, 7}, jobs(restarted_worker(Sup, W), echo, [7]))
    end).

brutal_kill_leaves_no_python_test_() ->
    {timeout, 60, fun() ->
        [begin
             W = start(#{use_stdio => Stdio}),
             unlink(W),
             OsPid = beam_nas_worker:os_pid(W),
             hold(W, 1, 30),
             exit(W, kill),
             wait_until(fun() -> not os_alive(OsPid) end, 10000)
         end || Stdio <- [true, false]]
    end}.

supervisor_shutdown_leaves_no_python_test_() ->
    with_supervised(#{}, fun(Sup, W, OsPid) ->
        hold(W, 1, 30),
        exit(Sup, shutdown),
        wait_until(fun() -> not os_alive(OsPid) end, 10000)
    end).

worker_that_cannot_start_test_() ->
    {timeout, 60, fun() ->
        process_flag(trap_exit, true),
        %% its exit status (1), or epipe when it was gone before the ping was written
        ?assertMatch({error, {worker_exit, Why}} when Why =:= 1; Why =:= epipe,
                     beam_nas_worker:start_link(options(#{python => "false"}))),
        ?assertMatch({error, {worker_not_found, _}},
                     beam_nas_worker:start_link(options(#{python => "/nonexistent/python"}))),
        ?assertMatch({error, {unknown_options, [pyhton], _}},
                     beam_nas_worker:start_link(#{pyhton => "python3"})),
        ?assertMatch({error, {bad_options, [{packet, 3}]}}, beam_nas_worker:start_link(#{packet => 3})),
        ?assertMatch({error, {unknown_options, [workers], _}}, beam_nas_pool:start_link(#{workers => 2})),
        ?assertMatch({error, {shutdown, {failed_to_start_child, _, {worker_exit, 1}}}},
                     beam_nas_pool:start_link(#{size => 2, worker => options(#{python => "false"})}))
    end}.

restart_intensity_is_bounded_test_() ->
    {timeout, 60, fun() ->
        %% A launcher that starts the real worker once, then fails on every restart.
        Dir = string:trim(os:cmd("mktemp -d")),
        Launcher = filename:join(Dir, "flaky"),
        Log = filename:join(Dir, "starts"),
        ok = file:write_file(Launcher, [
            "#!/bin/sh\necho start >> ", Log, "\n",
            "[ -e ", Dir, "/started ] && exit 3\ntouch ", Dir, "/started\n",
            "exec ", os:getenv("BEAM_NAS_TEST_PYTHON"), " \"$@\"\n"]),
        ok = file:change_mode(Launcher, 8#755),
        {ok, Pool} = beam_nas_pool:start_link(#{size => 1, intensity => 2, period => 30,
                                                worker => options(#{python => Launcher})}),
        unlink(Pool),
        Ref = monitor(process, Pool),
        [W] = beam_nas_pool:workers(Pool),
        kill9(beam_nas_worker:os_pid(W)),
        receive {'DOWN', Ref, process, Pool, Reason} -> ?assertEqual(shutdown, Reason)
        after 20000 -> error(pool_kept_restarting)
        end,
        {ok, Starts} = file:read_file(Log),
        %% The first start, then one failed restart per unit of intensity.
        ?assertEqual(1 + 2, length(binary:matches(Starts, <<"start">>))),
        ?assertMatch({error, {pool_down, _}}, beam_nas_pool:call(Pool, priv_jobs, echo, [1]))
    end}.

%%% Oversized calls and the allow list

%% A call over the frame limit is refused before it is written: its caller
%% alone gets {too_large, Bytes, Limit}; a call in flight and the OS process
%% carry on. `Payload' is the oversized argument.
assert_refused_alone(W, OsPid, Payload, Limit) ->
    hold(W, 1, 1),
    {error, {too_large, Bytes, Limit}} = jobs(W, echo, [Payload]),
    ?assert(Bytes > Limit),
    receive {held, Held} -> ?assertEqual({ok, <<"held">>}, Held) after 20000 -> error(no_held) end,
    assert_same_worker(W, OsPid).

call_over_the_default_frame_limit_fails_alone_test_() ->
    with_worker(#{}, fun(W, OsPid) ->
        assert_refused_alone(W, OsPid, binary:copy(<<7>>, 257 * 1024 * 1024), 256 * 1024 * 1024)
    end).

call_over_the_packet_size_fails_alone_test_() ->
    with_worker(#{packet => 2}, fun(W, OsPid) ->
        assert_refused_alone(W, OsPid, binary:copy(<<7>>, 70000), 65535),
        Fits = binary:copy(<<7>>, 60000),
        ?assertEqual({ok, Fits}, jobs(W, echo, [Fits]))
    end).

compressed_call_counts_its_inflated_size_test_() ->
    with_worker(#{compressed => 6, max_frame_size => 1000000}, fun(W, OsPid) ->
        assert_refused_alone(W, OsPid, binary:copy(<<0>>, 2000000), 1000000)
    end).

compressed_call_may_inflate_up_to_the_frame_limit_test_() ->
    %% 80 MiB inflated is over the codec's default inflate cap (64 MiB), not the frame limit.
    with_worker(#{compressed => 6}, fun(W, OsPid) ->
        Size = 80 * 1024 * 1024,
        ?assertEqual({ok, Size}, beam_nas_worker:call(W, builtins, len, [binary:copy(<<0>>, Size)], 60000)),
        assert_same_worker(W, OsPid)
    end).

erlang_reply_over_the_frame_limit_is_an_error_in_python_test_() ->
    with_worker(#{max_frame_size => 1000000}, fun(W, OsPid) ->
        {error, {python, 'erlport_worker.api.ErlangError', Message, _}} =
            jobs(W, call_erlang, [binary, copy, [<<1>>, 2000000]]),
        ?assertMatch({match, _}, re:run(Message, "too_large")),
        assert_same_worker(W, OsPid)
    end).

pool_survives_a_run_of_oversized_calls_test_() ->
    {timeout, 60, fun() ->
        {ok, Pool} = beam_nas_pool:start_link(#{size => 2, worker => options(#{packet => 2})}),
        OsPids = lists:sort([beam_nas_worker:os_pid(W) || W <- beam_nas_pool:workers(Pool)]),
        Big = binary:copy(<<7>>, 70000),
        [?assertMatch({error, {too_large, _, 65535}}, beam_nas_pool:call(Pool, priv_jobs, echo, [Big]))
         || _ <- lists:seq(1, 6)],
        ?assertEqual({ok, 1}, beam_nas_pool:call(Pool, priv_jobs, echo, [1])),
        ?assertEqual(OsPids, lists:sort([beam_nas_worker:os_pid(W) || W <- beam_nas_pool:workers(Pool)])),
        unlink(Pool),
        exit(Pool, shutdown)
    end}.

allow_option_test_() ->
    with_worker(#{allow => [priv_jobs, <<"math">>]}, fun(W, _OsPid) ->
        ?assertEqual({ok, 1}, jobs(W, echo, [1])),
        ?assertEqual({ok, 3.0}, beam_nas_worker:call(W, math, sqrt, [9])),
        NotAllowed = 'erlport_worker.allow.NotAllowed',
        ?assertMatch({error, {python, NotAllowed, _, _}}, beam_nas_worker:call(W, os, getcwd, [])),
        %% priv_jobs imports os and time: neither is reachable through it.
        ?assertMatch({error, {python, NotAllowed, _, _}}, jobs(W, 'os.system', [<<"true">>])),
        ?assertMatch({error, {python, NotAllowed, _, _}}, jobs(W, 'time.sleep', [0]))
    end).

bad_allow_options_are_refused_test_() ->
    {timeout, 60, fun() ->
        ?assertMatch({error, {bad_options, [{allow, []}]}}, beam_nas_worker:start_link(options(#{allow => []}))),
        ?assertMatch({error, {bad_options, [{allow, ["os;rm"]}]}},
                     beam_nas_worker:start_link(options(#{allow => ["os;rm"]}))),
        ?assertMatch({error, {bad_options, [{allow, "os"}]}}, beam_nas_worker:start_link(options(#{allow => "os"}))),
        %% Another Python cannot enforce the list: refused, not ignored.
        ?assertMatch({error, {allow_needs_erlport_worker, _}},
                     beam_nas_worker:start_link(options(#{python => "python3", allow => [math]})))
    end}.

%%% Options

env_and_cd_options_test_() ->
    Dir = string:trim(os:cmd("mktemp -d")),
    with_worker(#{env => [{"BEAM_NAS_GREETING", <<"grüß"/utf8>>}], cd => Dir}, fun(W, _OsPid) ->
        ?assertEqual({ok, <<"grüß"/utf8>>}, beam_nas_worker:call(W, os, getenv, [<<"BEAM_NAS_GREETING">>])),
        {ok, Cwd} = beam_nas_worker:call(W, os, getcwd, []),
        ?assertEqual(filename:absname(Dir), binary_to_list(Cwd))
    end).

packet_and_fd_options_test_() ->
    {timeout, 60, fun() ->
        [begin
             W = start(#{packet => Packet, use_stdio => Stdio, compressed => Level}),
             ?assertEqual({ok, [Packet, Stdio]}, jobs(W, echo, [[Packet, Stdio]])),
             beam_nas_worker:stop(W)
         end || {Packet, Stdio, Level} <- [{1, true, 0}, {2, false, 6}, {4, false, 9}]]
    end}.
