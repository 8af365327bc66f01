%% @doc One search's trials spread over the nodes that lend their pools to a
%% cluster (`beam_nas_lender'): the coordinator's side.
%%
%% The study stays in the Python worker that received `run_nas'; with
%% `opts.cluster' its runner calls `open/5', then `run/2' once per job (from a
%% Python thread each, blocking until the job's result), `stop/1', `resume/1',
%% `slots/1' and `close/1'. A session (this gen_server, one per search) keeps
%% the jobs in a queue and gives each to a lender with a free slot. Members are
%% the lenders in the `pg' group named after the cluster (scope
%% `beam_nas_cluster'), read again every `?REFRESH_MS': a node that joins gets
%% work at its next free slot. A lender whose node goes down or is
%% disconnected, or that dies, has its jobs put back at the head of the queue;
%% so has a job whose worker exited, up to `?MAX_ATTEMPTS' runs. A lender whose
%% version (`cerebros_cluster.version()') is not the coordinator's is refused
%% before it gets a job. Failure semantics: docs/beam.md.
-module(beam_nas_cluster).
-behaviour(gen_server).

-export([open/5, run/2, slots/1, stop/1, resume/1, close/1, info/1, sessions/1, lend/2, ensure_scope/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(SCOPE, ?MODULE).
-define(REFRESH_MS, 200).
-define(HELLO_MS, 10000).
%% How long open/5 looks for a lender before it says there is none: a scope
%% started just now learns the other nodes' groups within a round trip.
-define(SETTLE_MS, 1000).
-define(MAX_ATTEMPTS, 4).

-record(job, {from, term :: map(), lender = none :: pid() | none, attempts = 0 :: non_neg_integer()}).
-record(state, {
    name :: binary(),
    owner :: pid(),
    version :: map(),
    hash :: binary(),
    data :: binary(),
    %% Lenders accepted: pid => #{node, slots, busy, given (jobs so far)}.
    members = #{} :: map(),
    %% Lenders asked for their version and not answered yet: pid => true.
    hello = #{} :: map(),
    %% Lenders refused: pid => why, as text.
    refused = #{} :: map(),
    queue = queue:new() :: queue:queue(binary()),
    jobs = #{} :: #{binary() => #job{}},
    stopped = false :: boolean(),
    next = 1 :: pos_integer(),
    %% Who waits in open/5 for the first answers, and until when it may wait for
    %% a lender to appear.
    opening = none,
    settle :: integer()
}).

%%% API

%% @doc Starts the session of a search over cluster `Name' and waits until every
%% lender of the cluster has answered (or `?HELLO_MS'). `Owner' is the worker
%% running the search (the session ends with it), `Version' its version,
%% `Data' the search's data (an ETF binary) named by `Hash'. Returns
%% `{ok, Session}', or `{error, Text}' when no lender was accepted.
-spec open(binary(), pid(), map(), binary(), binary()) -> {ok, pid()} | {error, binary()}.
open(Name, Owner, Version, Hash, Data) ->
    ok = ensure_scope(),
    {ok, Session} = gen_server:start(?MODULE, {to_binary(Name), Owner, Version, Hash, Data}, []),
    case gen_server:call(Session, await_members, infinity) of
        ok -> {ok, Session};
        {error, _} = Error -> Error
    end.

%% @doc Runs one job somewhere in the cluster and returns
%% `{ok, #{<<"node">>, <<"attempts">>, <<"result">>}}', or `{error, Text}'.
-spec run(pid(), map()) -> {ok, map()} | {error, binary()}.
run(Session, Job) ->
    try gen_server:call(Session, {run, Job}, infinity)
    catch exit:{Reason, _} -> {error, text("the cluster session ended: ~p", [Reason])}
    end.

%% @doc The slots of the lenders accepted now.
-spec slots(pid()) -> non_neg_integer().
slots(Session) ->
    gen_server:call(Session, slots, infinity).

%% @doc The jobs running and those started until `resume/1' see their stop
%% (Python's `should_stop()') at their next mini-batch.
-spec stop(pid()) -> ok.
stop(Session) ->
    gen_server:call(Session, stop, infinity).

-spec resume(pid()) -> ok.
resume(Session) ->
    gen_server:call(Session, resume, infinity).

%% @doc Stops the jobs still running, answers their callers `{error, _}' and
%% ends the session; returns the warnings (nodes refused) as text.
-spec close(pid()) -> [binary()].
close(Session) ->
    try gen_server:call(Session, close, infinity)
    catch exit:_ -> []
    end.

%% @doc What the session knows: members (node => slots and busy), jobs queued
%% and running (token => node), the nodes refused.
-spec info(pid()) -> map().
info(Session) ->
    gen_server:call(Session, info, infinity).

%% @doc The sessions of cluster `Name' on this node (the searches it coordinates).
-spec sessions(binary() | atom() | string()) -> [pid()].
sessions(Name) ->
    ok = ensure_scope(),
    pg:get_local_members(?SCOPE, {session, to_binary(Name)}).

%% @doc Lends `Pool' to the cluster `Name': starts a `beam_nas_lender' linked to
%% the caller (`beam_nas_lender:child_spec/1' for a supervisor).
-spec lend(binary() | atom() | string(), supervisor:sup_ref()) -> {ok, pid()} | {error, term()}.
lend(Name, Pool) ->
    beam_nas_lender:start_link(#{cluster => Name, pool => Pool}).

%% @doc Starts the `pg' scope of clusters on this node unless it runs (the
%% application starts it; a node without the application gets it here).
-spec ensure_scope() -> ok.
ensure_scope() ->
    case pg:start(?SCOPE) of
        {ok, _} -> ok;
        {error, {already_started, _}} -> ok
    end.

%%% gen_server

-spec init({binary(), pid(), map(), binary(), binary()}) -> {ok, #state{}}.
init({Name, Owner, Version, Hash, Data}) ->
    erlang:monitor(process, Owner),
    ok = pg:join(?SCOPE, {session, Name}, self()),
    erlang:send_after(?HELLO_MS, self(), hello_timeout),
    {ok, refresh(#state{name = Name, owner = Owner, version = Version, hash = Hash, data = Data,
                        settle = erlang:monotonic_time(millisecond) + ?SETTLE_MS})}.

-spec handle_call(term(), gen_server:from(), #state{}) ->
    {reply, term(), #state{}} | {noreply, #state{}} | {stop, normal, term(), #state{}}.
handle_call(await_members, From, State) ->
    opened(State#state{opening = From});
handle_call({run, Term}, From, State = #state{next = N, queue = Q}) ->
    Token = text("~s/~p/~b", [node(), self(), N]),
    Job = #job{from = From, term = Term},
    {noreply, dispatch(State#state{next = N + 1, queue = queue:in(Token, Q),
                                   jobs = (State#state.jobs)#{Token => Job}})};
handle_call(slots, _From, State = #state{members = Members}) ->
    {reply, lists:sum([S || #{slots := S} <- maps:values(Members)]), State};
handle_call(stop, _From, State = #state{jobs = Jobs}) ->
    [Lender ! {beam_nas_stop, self(), Token} || {Token, #job{lender = Lender}} <- maps:to_list(Jobs),
                                                 Lender =/= none],
    {reply, ok, State#state{stopped = true}};
handle_call(resume, _From, State) ->
    {reply, ok, State#state{stopped = false}};
handle_call(close, _From, State) ->
    Warnings = refusals(State),
    end_session(State),
    {stop, normal, Warnings, State};
handle_call(info, _From, State = #state{members = Members, jobs = Jobs}) ->
    Running = maps:from_list([{Token, node(L)} || {Token, #job{lender = L}} <- maps:to_list(Jobs), L =/= none]),
    {reply, #{members => maps:from_list([{N, M} || #{node := N} = M <- maps:values(Members)]),
              queued => queue:len(State#state.queue), running => Running,
              refused => refusals(State)}, State}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast(_Message, State) ->
    {noreply, State}.

-spec handle_info(term(), #state{}) -> {noreply, #state{}} | {stop, normal, #state{}}.
handle_info(refresh, State = #state{opening = none}) ->
    {noreply, dispatch(refresh(State))};
handle_info(refresh, State) ->
    opened(refresh(State));
handle_info(hello_timeout, State = #state{opening = none}) ->
    {noreply, State};
handle_info(hello_timeout, State) ->
    opened(State#state{hello = #{}});
handle_info({beam_nas_hello, Lender, Info}, State) ->
    case maps:take(Lender, State#state.hello) of
        {true, Hello} -> welcome(Lender, Info, State#state{hello = Hello});
        error -> {noreply, State}
    end;
handle_info({beam_nas_data_request, Lender, Hash}, State = #state{hash = Hash, data = Data}) ->
    Lender ! {beam_nas_data, Hash, Data},
    {noreply, State};
handle_info({beam_nas_done, Lender, Token, Result}, State) ->
    {noreply, dispatch(finished(Lender, Token, {ok, Result}, State))};
handle_info({beam_nas_failed, Lender, Token, Reason, retry}, State) ->
    {noreply, dispatch(requeue(Lender, [Token], Reason, State))};
handle_info({beam_nas_failed, Lender, Token, Reason, final}, State) ->
    {noreply, dispatch(finished(Lender, Token, {error, text("~tp", [Reason])}, State))};
handle_info({'DOWN', _, process, Owner, _}, State = #state{owner = Owner}) ->
    end_session(State),
    {stop, normal, State};
handle_info({'DOWN', _, process, Lender, Reason}, State) ->
    Tokens = [T || {T, #job{lender = L}} <- maps:to_list(State#state.jobs), L =:= Lender],
    State1 = State#state{members = maps:remove(Lender, State#state.members),
                         hello = maps:remove(Lender, State#state.hello)},
    State2 = requeue(Lender, Tokens, {lender_down, node(Lender), Reason}, State1),
    case State2#state.opening of
        none -> {noreply, dispatch(State2)};
        _ -> opened(State2)
    end;
handle_info(_Other, State) ->
    {noreply, State}.

%%% Members

%% Asks the group's lenders not seen yet for their version; runs again in ?REFRESH_MS.
refresh(State = #state{name = Name, members = Members, hello = Hello, refused = Refused}) ->
    erlang:send_after(?REFRESH_MS, self(), refresh),
    New = [L || L <- pg:get_members(?SCOPE, Name),
                not maps:is_key(L, Members), not maps:is_key(L, Hello), not maps:is_key(L, Refused)],
    [begin erlang:monitor(process, L), L ! {beam_nas_hello, self()} end || L <- New],
    State#state{hello = maps:merge(Hello, maps:from_list([{L, true} || L <- New]))}.

welcome(Lender, #{version := Version, slots := Slots, node := Node},
        State = #state{version = Version, members = Members}) ->
    State1 = State#state{members = Members#{Lender => #{node => Node, slots => Slots, busy => 0, given => 0}}},
    case State1#state.opening of
        none -> {noreply, dispatch(State1)};
        _ -> opened(State1)
    end;
welcome(Lender, #{version := Theirs, node := Node}, State = #state{version = Ours}) ->
    Why = text("node ~s was refused: its version ~ts differs from the coordinator's ~ts",
               [Node, show(Theirs), show(Ours)]),
    logger:warning("beam_nas_cluster ~ts: ~ts", [State#state.name, Why]),
    Lender ! {beam_nas_refused, self(), Why},
    State1 = State#state{refused = (State#state.refused)#{Lender => Why}},
    case State1#state.opening of
        none -> {noreply, State1};
        _ -> opened(State1)
    end.

%% Answers open/5 once every lender seen has answered: ok with a member; with
%% none, the error, but not before ?SETTLE_MS (a lender may yet appear).
opened(State = #state{opening = none}) ->
    {noreply, State};
opened(State = #state{opening = From, hello = Hello, members = Members})
  when map_size(Hello) =:= 0, map_size(Members) > 0 ->
    gen_server:reply(From, ok),
    {noreply, dispatch(State#state{opening = none})};
opened(State = #state{opening = From, hello = Hello}) when map_size(Hello) =:= 0 ->
    case erlang:monotonic_time(millisecond) >= State#state.settle of
        true ->
            Why = case refusals(State) of
                      [] -> text("no node lends its workers to the cluster ~ts (beam_nas_cluster:lend/2, "
                                 "or config :beam_nas, cluster: ...)", [State#state.name]);
                      Refusals -> iolist_to_binary(lists:join(<<"; ">>, Refusals))
                  end,
            gen_server:reply(From, {error, Why}),
            {stop, normal, State};
        false ->
            {noreply, State}
    end;
opened(State) ->
    {noreply, State}.

refusals(#state{refused = Refused}) ->
    lists:sort(maps:values(Refused)).

%%% Jobs

%% Gives queued jobs to the members with the most free slots, and among them to
%% the one given the fewest jobs so far (a node that joins gets the next one).
dispatch(State = #state{queue = Q, members = Members}) ->
    Free = [{S - B, -G, L} || {L, #{slots := S, busy := B, given := G}} <- maps:to_list(Members), S > B],
    case {Free, queue:out(Q)} of
        {[_ | _], {{value, Token}, Q1}} ->
            {_, _, Lender} = lists:max(Free),
            Job = maps:get(Token, State#state.jobs),
            Term = (Job#job.term)#{<<"stopped">> => State#state.stopped},
            Lender ! {beam_nas_run, self(), Token, State#state.hash, Term},
            dispatch(State#state{queue = Q1,
                                 members = given(Lender, busy(Lender, 1, Members)),
                                 jobs = (State#state.jobs)#{Token := Job#job{lender = Lender,
                                                                             attempts = Job#job.attempts + 1}}});
        _ ->
            State
    end.

finished(Lender, Token, Reply, State = #state{jobs = Jobs}) ->
    case Jobs of
        #{Token := #job{from = From, lender = Lender, attempts = Attempts}} ->
            gen_server:reply(From, case Reply of
                                       {ok, Result} -> {ok, #{<<"node">> => atom_to_binary(node(Lender)),
                                                              <<"attempts">> => Attempts,
                                                              <<"result">> => Result}};
                                       Error -> Error
                                   end),
            State#state{jobs = maps:remove(Token, Jobs), members = busy(Lender, -1, State#state.members)};
        _ ->  % a job since given to another lender (this one was presumed lost), or no longer wanted
            State
    end.

%% Puts `Lender''s jobs `Tokens' back at the head of the queue, in token order;
%% a job that has run ?MAX_ATTEMPTS times fails instead.
requeue(Lender, Tokens, Reason, State) ->
    lists:foldr(fun(Token, S = #state{jobs = Jobs}) ->
        case Jobs of
            #{Token := Job = #job{lender = Lender, attempts = Attempts}} when Attempts >= ?MAX_ATTEMPTS ->
                finished(Lender, Token, {error, text("the job ran ~b times and its node or worker went "
                                                     "away each time; the last: ~tp", [Attempts, Reason])},
                         S#state{jobs = Jobs#{Token := Job}});
            #{Token := Job = #job{lender = Lender}} ->
                S#state{jobs = Jobs#{Token := Job#job{lender = none}}, queue = queue:in_r(Token, S#state.queue),
                        members = busy(Lender, -1, S#state.members)};
            _ ->
                S
        end
    end, State, lists:sort(Tokens)).

busy(Lender, Delta, Members) ->
    case Members of
        #{Lender := M = #{busy := B}} -> Members#{Lender := M#{busy := B + Delta}};
        _ -> Members
    end.

given(Lender, Members) ->
    #{Lender := M = #{given := G}} = Members,
    Members#{Lender := M#{given := G + 1}}.

%% Tells the lenders to stop this session's jobs, and the callers that it ended.
end_session(#state{jobs = Jobs, members = Members}) ->
    [L ! {beam_nas_forget, self()} || L <- maps:keys(Members)],
    [gen_server:reply(From, {error, <<"the search's cluster session was closed">>})
     || #job{from = From} <- maps:values(Jobs)],
    ok.

%%% Text

text(Format, Args) ->
    unicode:characters_to_binary(io_lib:format(Format, Args)).

show(Version) when is_map(Version) ->
    lists:join(", ", [io_lib:format("~ts ~ts", [K, V]) || {K, V} <- lists:sort(maps:to_list(Version))]);
show(Other) ->
    io_lib:format("~tp", [Other]).

to_binary(B) when is_binary(B) -> B;
to_binary(A) when is_atom(A) -> atom_to_binary(A);
to_binary(L) when is_list(L) -> unicode:characters_to_binary(L).
