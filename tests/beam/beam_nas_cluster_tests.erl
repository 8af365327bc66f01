%% EUnit tests of a cluster session (beam_nas_cluster) against stand-in
%% lenders: plain processes in the cluster's pg group that answer as a
%% beam_nas_lender would, and report what they were sent. No Python here: the
%% real lenders and workers are in cluster_scenarios.erl.
-module(beam_nas_cluster_tests).

-include_lib("eunit/include/eunit.hrl").

-define(VERSION, #{<<"package">> => <<"1">>}).

%% A stand-in lender: answers hello with `Version' and one slot, forwards every
%% other message to the test, and answers each job as `Answer(Token, Job)' says
%% (a message to send back to the session, or none).
lender(Name, Version, Answer) ->
    Test = self(),
    Pid = spawn(fun() ->
        ok = pg:join(beam_nas_cluster, Name, self()),
        Test ! {joined, self()},
        serve(Test, Version, Answer)
    end),
    receive {joined, Pid} -> Pid end.

serve(Test, Version, Answer) ->
    receive
        {beam_nas_hello, Session} ->
            Session ! {beam_nas_hello, self(), #{version => Version, slots => 1, node => node()}};
        {beam_nas_run, Session, Token, _Hash, Job} = Message ->
            Test ! {self(), Message},
            case Answer(Token, Job) of
                none -> ok;
                Reply -> Session ! Reply
            end;
        Other ->
            Test ! {self(), Other}
    end,
    serve(Test, Version, Answer).

name() ->
    list_to_binary("c" ++ integer_to_list(erlang:unique_integer([positive]))).

open(Name) ->
    beam_nas_cluster:open(Name, self(), ?VERSION, <<"hash">>, <<"data">>).

setup() ->
    ok = beam_nas_cluster:ensure_scope().

a_job_whose_worker_keeps_dying_fails_after_four_runs_test() ->
    setup(),
    Name = name(),
    Lender = lender(Name, ?VERSION, fun(Token, _) ->
        {beam_nas_failed, lender_pid(), Token, {worker_exit, 137}, retry} end),
    {ok, Session} = open(Name),
    {error, Why} = beam_nas_cluster:run(Session, #{<<"kind">> => <<"train">>}),
    ?assertMatch({match, _}, re:run(Why, "ran 4 times")),
    ?assertEqual(4, length(received_runs(Lender))),
    [] = beam_nas_cluster:close(Session).

a_python_error_fails_the_job_at_once_test() ->
    setup(),
    Name = name(),
    Lender = lender(Name, ?VERSION, fun(Token, _) ->
        {beam_nas_failed, lender_pid(), Token, {python, 'builtins.ValueError', <<"bad">>, []}, final} end),
    {ok, Session} = open(Name),
    {error, Why} = beam_nas_cluster:run(Session, #{}),
    ?assertMatch({match, _}, re:run(Why, "ValueError")),
    ?assertEqual(1, length(received_runs(Lender))).

a_lender_of_another_version_is_refused_before_any_job_test() ->
    setup(),
    Name = name(),
    Older = lender(Name, #{<<"package">> => <<"0">>}, fun(_, _) -> none end),
    {error, Why} = open(Name),
    ?assertMatch({match, _}, re:run(Why, "was refused: its version package 0 differs from the coordinator's package 1")),
    receive {Older, {beam_nas_refused, _, Why}} -> ok after 5000 -> error(not_told) end,
    ?assertEqual([], received_runs(Older)).

a_lost_lenders_job_runs_on_another_and_the_data_is_sent_on_request_test() ->
    setup(),
    Name = name(),
    Doomed = lender(Name, ?VERSION, fun(_, _) -> exit(self(), kill) end),
    {ok, Session} = open(Name),
    Caller = self(),
    spawn(fun() -> Caller ! {ran, beam_nas_cluster:run(Session, #{<<"n">> => 1})} end),
    receive {Doomed, {beam_nas_run, _, _, _, _}} -> ok after 5000 -> error(never_ran) end,
    Spare = lender(Name, ?VERSION, fun(Token, _) -> {beam_nas_done, lender_pid(), Token, <<"result">>} end),
    {ok, #{<<"result">> := <<"result">>, <<"attempts">> := 2, <<"node">> := _}} =
        receive {ran, Ran} -> Ran after 5000 -> error(not_rerun) end,
    Session ! {beam_nas_data_request, Spare, <<"hash">>},
    receive {Spare, {beam_nas_data, <<"hash">>, <<"data">>}} -> ok after 5000 -> error(no_data) end.

stop_reaches_the_running_jobs_and_marks_those_dispatched_until_resume_test() ->
    setup(),
    Name = name(),
    Lender = lender(Name, ?VERSION, fun(_, _) -> none end),
    {ok, Session} = open(Name),
    spawn(fun() -> beam_nas_cluster:run(Session, #{}) end),
    {beam_nas_run, _, Token, _, #{<<"stopped">> := false}} = next_run(Lender),
    ok = beam_nas_cluster:stop(Session),
    receive {Lender, {beam_nas_stop, Session, Token}} -> ok after 5000 -> error(no_stop) end,
    Session ! {beam_nas_done, Lender, Token, <<"cut short">>},
    spawn(fun() -> beam_nas_cluster:run(Session, #{}) end),
    {beam_nas_run, _, Second, _, #{<<"stopped">> := true}} = next_run(Lender),
    Session ! {beam_nas_done, Lender, Second, <<"cut short">>},
    ok = beam_nas_cluster:resume(Session),
    spawn(fun() -> beam_nas_cluster:run(Session, #{}) end),
    {beam_nas_run, _, _, _, #{<<"stopped">> := false}} = next_run(Lender),
    [] = beam_nas_cluster:close(Session),
    receive {Lender, {beam_nas_forget, Session}} -> ok after 5000 -> error(not_forgotten) end.

%% The stand-in's own pid, inside its answer function.
lender_pid() -> self().

next_run(Lender) ->
    receive {Lender, {beam_nas_run, _, _, _, _} = Run} -> Run after 5000 -> error(no_run) end.

%% The jobs `Lender' was sent, once none has come for 200 ms.
received_runs(Lender) ->
    receive {Lender, {beam_nas_run, _, _, _, _} = Run} -> [Run | received_runs(Lender)]
    after 200 -> []
    end.
