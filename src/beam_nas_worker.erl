%% @doc A gen_server that owns one Python worker port and speaks the ErlPort
%% wire protocol to it: `{'C', Id, M, F, Args}' calls, `{'r', Id, R}' and
%% `{'e', Id, Error}' replies, `'M'' casts, `'P'' prints and Python->Erlang calls.
%%
%% Several calls may be in flight at once (up to `max_concurrent'); replies
%% may come back in any order. Timeouts are kept by this server, so a caller
%% always gets an answer: on a timeout the Python side is asked to cancel the
%% call, and a worker that has not finished it within `cancel_grace' ms is
%% killed, which ends this server so that its supervisor restarts it.
%%
%% Every frame is checked against the worker's frame limit before it is
%% written (the `max_frame_size' option, also given to the worker, and what
%% the `packet' header can say): a call over it is answered
%% `{error, {too_large, Bytes, Limit}}' alone, and the worker never sees it.
-module(beam_nas_worker).
-behaviour(gen_server).

-export([start_link/1, child_spec/1, call/4, call/5, cast/4, stop/1, os_pid/1]).
-export([default_options/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(PING_ID, 0).
-define(CONTROL_MODULE, 'erlport_worker.jobs').
-define(WORKER_EXECUTABLE, "erlport-worker").
-define(OPAQUE, '$erlport.opaque').

-record(state, {
    port :: port(),
    os_pid :: non_neg_integer(),
    opts :: map(),
    %% The largest frame the worker takes: max_frame_size, or less with a small packet.
    limit :: pos_integer(),
    next_id = ?PING_ID + 1 :: pos_integer(),
    %% Calls running in Python (each holds a slot), Id => {caller, From} | cast | cancelled.
    pending = #{} :: map(),
    %% Cancellation requests sent to Python, their Id => the cancelled call's Id.
    cancel_requests = #{} :: map(),
    %% Calls waiting for a free slot (max_concurrent): their Ids in order, and
    %% Id => {{caller, From} | cast, {M, F, A}}.
    queue = queue:new() :: queue:queue(),
    waiting = #{} :: map(),
    %% Id => timeout TimerRef (or none), for every caller still owed an answer.
    timers = #{} :: map(),
    %% Calls that timed out while Python ran them, Id => grace TimerRef.
    cancelled = #{} :: map()
}).

%%% API

%% @doc The options and their defaults. `python' is the executable run with the
%% stock ErlPort command line; `undefined' means the project's `erlport-worker'
%% (see `beam_nas_config:find_worker/1' for where it is looked for).
%% `allow' (a list of module names) restricts what calls can reach, as the
%% worker's `--allow' does; `undefined' lets any caller run any Python code.
%% `max_frame_size' is the largest frame, in bytes, sent to the worker.
%% `runs_root' is where searches put their run directories (the worker's
%% `$CEREBROS_RUNS_DIR'). The application environment of `beam_nas' sets
%% defaults for all but `name'; options given here win.
-spec default_options() -> map().
default_options() ->
    #{name => undefined,
      python => undefined,
      python_path => [],
      env => [],
      cd => undefined,
      packet => 4,
      use_stdio => true,
      compressed => 0,
      buffer_size => 65536,
      max_frame_size => 256 * 1024 * 1024,
      allow => undefined,
      max_concurrent => 8,
      timeout => 30000,
      cancel_grace => 5000,
      start_timeout => 30000,
      runs_root => undefined,
      output => standard_io}.

%% @doc Starts the worker process and waits until Python answers a first call,
%% so a worker that cannot start returns `{error, Reason}' here.
-spec start_link(map()) -> {ok, pid()} | {error, term()}.
start_link(Options) when is_map(Options) ->
    case validate(Options) of
        {ok, Opts = #{name := undefined}} -> gen_server:start_link(?MODULE, Opts, []);
        {ok, Opts = #{name := Name}} when is_atom(Name) ->
            gen_server:start_link({local, Name}, ?MODULE, Opts, []);
        {ok, Opts = #{name := Name}} -> gen_server:start_link(Name, ?MODULE, Opts, []);
        {error, _} = Error -> Error
    end.

-spec child_spec(map()) -> supervisor:child_spec().
child_spec(Options) ->
    #{id => maps:get(id, Options, ?MODULE),
      start => {?MODULE, start_link, [maps:remove(id, Options)]},
      restart => permanent,
      shutdown => 5000,
      type => worker,
      modules => [?MODULE]}.

%% @doc Calls `Module.Function(*Args)' in Python with the server's default timeout.
-spec call(gen_server:server_ref(), atom(), atom(), list()) -> {ok, term()} | {error, term()}.
call(Server, Module, Function, Args) ->
    call(Server, Module, Function, Args, default).

%% @doc Calls `Module.Function(*Args)' in Python. `Timeout' is in ms,
%% `infinity', or `default' (the server's `timeout' option).
-spec call(gen_server:server_ref(), atom(), atom(), list(), timeout() | default) ->
    {ok, term()} | {error, term()}.
call(Server, Module, Function, Args, Timeout)
  when is_atom(Module), is_atom(Function), is_list(Args),
       (Timeout =:= default orelse Timeout =:= infinity orelse
        (is_integer(Timeout) andalso Timeout >= 0)) ->
    try
        gen_server:call(Server, {call, Module, Function, Args, Timeout}, infinity)
    catch
        exit:{Reason, {gen_server, call, _}} -> {error, {worker_down, Reason}}
    end;
call(_Server, Module, Function, Args, Timeout) ->
    {error, {badarg, [{module, Module}, {function, Function}, {args, Args},
                      {timeout, Timeout}]}}.

%% @doc Runs `Module.Function(*Args)' without waiting; its result is discarded
%% and a Python exception is logged.
-spec cast(gen_server:server_ref(), atom(), atom(), list()) -> ok.
cast(Server, Module, Function, Args)
  when is_atom(Module), is_atom(Function), is_list(Args) ->
    gen_server:cast(Server, {cast, Module, Function, Args}).

-spec stop(gen_server:server_ref()) -> ok.
stop(Server) ->
    gen_server:stop(Server).

%% @doc The OS process id of the Python worker.
-spec os_pid(gen_server:server_ref()) -> non_neg_integer().
os_pid(Server) ->
    gen_server:call(Server, os_pid).

%%% gen_server callbacks

-spec init(map()) -> {ok, #state{}} | {stop, term()}.
init(Opts) ->
    process_flag(trap_exit, true),
    case open_worker(Opts) of
        {ok, Port, Ping} ->
            {os_pid, OsPid} = erlang:port_info(Port, os_pid),
            #{packet := Packet, max_frame_size := MaxFrame} = Opts,
            State = #state{port = Port, os_pid = OsPid, opts = Opts,
                           limit = min(MaxFrame, (1 bsl (8 * Packet)) - 1)},
            ok = send_frame(Ping, State),
            await_ping(State, deadline(maps:get(start_timeout, Opts)));
        {error, Reason} ->
            {stop, Reason}
    end.

-spec handle_call(term(), gen_server:from(), #state{}) ->
    {noreply, #state{}} | {reply, non_neg_integer(), #state{}}.
handle_call({call, M, F, A, Timeout}, From, State) ->
    {noreply, submit({caller, From}, {M, F, A}, Timeout, State)};
handle_call(os_pid, _From, State) ->
    {reply, State#state.os_pid, State}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast({cast, M, F, A}, State) ->
    {noreply, submit(cast, {M, F, A}, infinity, State)}.

-spec handle_info(term(), #state{}) -> {noreply, #state{}} | {stop, term(), #state{}}.
handle_info({Port, {data, Data}}, State = #state{port = Port}) ->
    case decode_frame(Data) of
        {ok, Frame} -> handle_frame(Frame, State);
        {error, Reason} -> fail_all({protocol_error, Reason}, State)
    end;
handle_info({Port, {exit_status, Status}}, State = #state{port = Port}) ->
    fail_all({worker_exit, Status}, State);
handle_info({'EXIT', Port, Reason}, State = #state{port = Port}) ->
    fail_all({worker_exit, Reason}, State);
handle_info({timeout, _Ref, {call_timeout, Id}}, State) ->
    {noreply, call_timed_out(Id, State)};
handle_info({timeout, _Ref, {cancel_grace, Id}}, State = #state{cancelled = C}) ->
    case maps:is_key(Id, C) of
        true ->
            logger:warning("beam_nas_worker: call ~p ignored cancellation for ~p ms;"
                           " killing worker ~p", [Id, maps:get(cancel_grace, State#state.opts),
                                                  State#state.os_pid]),
            kill_os_process(State#state.os_pid);
        false ->
            ok
    end,
    {noreply, State};
handle_info({erlang_call_result, Id, Reply}, State) ->
    send_erlang_reply(Id, Reply, State),
    {noreply, State};
handle_info({'EXIT', _From, Reason}, State) when Reason =/= normal ->
    {stop, Reason, State};
handle_info(_Other, State) ->
    {noreply, State}.

%% Closing the port closes the worker's input, which makes it exit; one that
%% lingers (busy in C code, say) is killed so that no Python process outlives us.
-spec terminate(term(), #state{}) -> ok.
terminate(Reason, State = #state{port = Port, os_pid = OsPid}) ->
    reply_all({worker_down, Reason}, State),
    catch port_close(Port),
    case wait_os_exit(OsPid, 2000) of
        true -> ok;
        false -> kill_os_process(OsPid)
    end.

%%% Starting the port

%% The application environment's values are checked apart, so that an error
%% says whether the options or the environment hold a bad value.
validate(Options) ->
    Defaults = default_options(),
    FromEnv = beam_nas_config:worker_defaults(maps:keys(Defaults) -- [name, python]),
    case [K || K <- maps:keys(Options), not maps:is_key(K, Defaults)] of
        [] ->
            case {bad_values(FromEnv), bad_values(Options)} of
                {[], []} -> {ok, maps:merge(maps:merge(Defaults, FromEnv), Options)};
                {[_ | _] = Bad, _} -> {error, {bad_app_env, beam_nas, Bad}};
                {[], Bad} -> {error, {bad_options, Bad}}
            end;
        Unknown ->
            {error, {unknown_options, Unknown, {known, maps:keys(Defaults)}}}
    end.

bad_values(Opts) ->
    [{K, V} || {K, V} <- maps:to_list(Opts), not valid_option(K, V)].

valid_option(packet, P) -> lists:member(P, [1, 2, 4]);
valid_option(use_stdio, B) -> is_boolean(B);
valid_option(compressed, L) -> is_integer(L) andalso L >= 0 andalso L =< 9;
valid_option(K, N) when K =:= buffer_size; K =:= max_concurrent; K =:= max_frame_size ->
    is_integer(N) andalso N > 0;
valid_option(allow, A) ->
    A =:= undefined orelse (is_list(A) andalso A =/= [] andalso lists:all(fun is_module_name/1, A));
valid_option(K, T) when K =:= timeout; K =:= cancel_grace; K =:= start_timeout ->
    T =:= infinity orelse (is_integer(T) andalso T >= 0);
valid_option(python, P) -> P =:= undefined orelse io_lib:char_list(P) orelse is_binary(P);
valid_option(python_path, Ps) -> is_list(Ps) andalso lists:all(fun is_text/1, Ps);
valid_option(env, Env) ->
    is_list(Env) andalso lists:all(fun({K, V}) -> is_text(K) andalso (is_text(V) orelse V =:= false);
                                      (_) -> false end, Env);
valid_option(K, D) when K =:= cd; K =:= runs_root -> D =:= undefined orelse is_text(D);
valid_option(output, O) -> O =:= standard_io orelse is_pid(O);
valid_option(name, N) -> N =:= undefined orelse is_atom(N) orelse is_tuple(N).

is_text(T) -> is_binary(T) orelse io_lib:char_list(T).

is_module_name(A) when is_atom(A) -> is_module_name(atom_to_list(A));
is_module_name(T) ->
    is_text(T) andalso
        re:run(T, "^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*$", [unicode]) =/= nomatch.

%% Returns the port and the first call to send: a control call when the
%% worker is the project's (any module may be outside `allow'), else os.getpid.
open_worker(Opts = #{packet := Packet, use_stdio := Stdio, compressed := Level,
                     buffer_size := Buffer}) ->
    case python_command(maps:get(python, Opts), Opts) of
        {ok, Exe, ExtraArgs, Ping} ->
            Args = ExtraArgs ++ ["-u", "-m", "erlport.cli",
                                 "--packet=" ++ integer_to_list(Packet),
                                 case Stdio of true -> "--use_stdio"; false -> "--nouse_stdio" end,
                                 "--compressed=" ++ integer_to_list(Level),
                                 "--buffer_size=" ++ integer_to_list(Buffer)],
            PortOpts = [{args, Args}, {packet, Packet}, {env, port_env(Opts)},
                        binary, exit_status, hide,
                        case Stdio of true -> use_stdio; false -> nouse_stdio end]
                       ++ [{cd, to_list(D)} || D <- [maps:get(cd, Opts)], D =/= undefined],
            try
                {ok, open_port({spawn_executable, Exe}, PortOpts), Ping}
            catch
                error:Reason -> {error, {worker_start_failed, Exe, Reason}}
            end;
        {error, _} = Error ->
            Error
    end.

%% The executable and its leading arguments come from
%% `beam_nas_config:find_worker/1'. The project's own worker is also told how
%% many calls to run at once (`max_concurrent'), its frame limit and the `allow'
%% list, before those arguments (so they can override). Any other Python cannot
%% enforce `allow', so it is refused rather than ignored.
python_command(Python, Opts) ->
    case beam_nas_config:find_worker(Python) of
        {ok, Exe, Extra} -> worker_command(Exe, Extra, Opts);
        {error, _} = Error -> Error
    end.

worker_command(Exe, Extra, Opts = #{max_concurrent := MaxConcurrent, max_frame_size := MaxFrame,
                                    allow := Allow}) ->
    case {filename:basename(Exe), Allow} of
        {?WORKER_EXECUTABLE, _} ->
            Flags = ["--concurrency=" ++ integer_to_list(MaxConcurrent),
                     "--max-frame-size=" ++ integer_to_list(MaxFrame)]
                ++ ["--allow=" ++ module_name(M) || M <- allow_list(Opts)],
            {ok, Exe, Flags ++ Extra, {'C', ?PING_ID, ?CONTROL_MODULE, running, []}};
        {_, undefined} ->
            {ok, Exe, Extra, {'C', ?PING_ID, os, getpid, []}};
        {_, _} ->
            {error, {allow_needs_erlport_worker, Exe}}
    end.

allow_list(#{allow := undefined}) -> [];
allow_list(#{allow := Modules}) -> Modules.

module_name(M) when is_atom(M) -> atom_to_list(M);
module_name(M) -> to_list(M).

port_env(#{python_path := Paths, env := Env, runs_root := RunsRoot}) ->
    Inherited = case os:getenv("PYTHONPATH") of
                    false -> [];
                    P -> [P]
                end,
    PythonPath = lists:join(":", [to_list(D) || D <- Paths] ++ Inherited),
    [{"PYTHONPATH", lists:flatten(PythonPath)} || PythonPath =/= []]
        ++ [{to_list(K), case V of false -> false; _ -> to_list(V) end} || {K, V} <- Env]
        ++ [{"CEREBROS_RUNS_DIR", filename:absname(to_list(RunsRoot))} || RunsRoot =/= undefined].

to_list(B) when is_binary(B) -> unicode:characters_to_list(B);
to_list(L) -> L.

deadline(infinity) -> infinity;
deadline(Ms) -> erlang:monotonic_time(millisecond) + Ms.

time_left(infinity) -> infinity;
time_left(Deadline) -> max(0, Deadline - erlang:monotonic_time(millisecond)).

%% The first call's answer proves that the worker is up. Frames Python sends
%% before it (prints, say) are handled as usual.
await_ping(State = #state{port = Port}, Deadline) ->
    receive
        {Port, {data, Data}} ->
            case decode_frame(Data) of
                {ok, {r, ?PING_ID, _Answer}} ->
                    {ok, State};
                {ok, {e, ?PING_ID, Error}} ->
                    {stop, {worker_start_failed, Error}};
                {ok, Frame} ->
                    case handle_frame(Frame, State) of
                        {noreply, State1} -> await_ping(State1, Deadline);
                        {stop, Reason, _} -> kill_os_process(State#state.os_pid), {stop, Reason}
                    end;
                {error, Reason} ->
                    kill_os_process(State#state.os_pid),
                    {stop, {protocol_error, Reason}}
            end;
        {Port, {exit_status, Status}} ->
            {stop, {worker_exit, Status}};
        %% A worker that exits before it reads the ping can close the port on the
        %% ping's write (epipe) before its exit status arrives.
        {'EXIT', Port, Reason} ->
            kill_os_process(State#state.os_pid),
            {stop, {worker_exit, Reason}}
    after time_left(Deadline) ->
        kill_os_process(State#state.os_pid),
        {stop, {worker_start_timeout, maps:get(start_timeout, State#state.opts)}}
    end.

%%% Calls from Erlang to Python

submit(Owner, MFA, Timeout0, State = #state{next_id = Id, timers = Timers, opts = Opts}) ->
    Timeout = case Timeout0 of default -> maps:get(timeout, Opts); _ -> Timeout0 end,
    Timers1 = case {Owner, Timeout} of
                  {cast, _} -> Timers;
                  {_, infinity} -> Timers#{Id => none};
                  _ -> Timers#{Id => erlang:start_timer(Timeout, self(), {call_timeout, Id})}
              end,
    State1 = State#state{next_id = Id + 1, timers = Timers1,
                         queue = queue:in(Id, State#state.queue),
                         waiting = (State#state.waiting)#{Id => {Owner, MFA}}},
    dispatch(State1).

%% Sends queued calls while there are free slots. A cancelled call keeps its
%% slot until Python answers it: it is still using a Python thread.
dispatch(State = #state{queue = Q, pending = P, opts = #{max_concurrent := Max}}) ->
    case map_size(P) < Max andalso queue:out(Q) of
        {{value, Id}, Q1} ->
            {{Owner, {M, F, A}}, Waiting} = maps:take(Id, State#state.waiting),
            State1 = State#state{queue = Q1, waiting = Waiting},
            case send_frame({'C', Id, M, F, A}, State1) of
                ok -> dispatch(State1#state{pending = P#{Id => Owner}});
                TooLarge -> dispatch(refuse(Id, Owner, TooLarge, State1))
            end;
        _ ->
            State
    end.

%% A call that cannot be sent is answered here; the worker never saw it.
refuse(Id, {caller, From}, Reason, State) ->
    gen_server:reply(From, {error, Reason}),
    forget_timer(Id, State);
refuse(_Id, cast, Reason, State) ->
    log_cast_error({error, Reason}),
    State.

call_timed_out(Id, State = #state{timers = Timers}) ->
    case maps:take(Id, Timers) of
        error ->
            State;
        {_, Timers1} ->
            State1 = State#state{timers = Timers1},
            case maps:take(Id, State#state.waiting) of
                {{{caller, From}, _}, Waiting} ->
                    gen_server:reply(From, {error, timeout}),
                    State1#state{waiting = Waiting, queue = queue:delete(Id, State#state.queue)};
                error ->
                    cancel_running(Id, State1)
            end
    end.

cancel_running(Id, State = #state{pending = P, next_id = CancelId, opts = Opts}) ->
    {caller, From} = maps:get(Id, P),
    gen_server:reply(From, {error, timeout}),
    ok = send_frame({'C', CancelId, ?CONTROL_MODULE, cancel, [Id]}, State),
    Grace = erlang:start_timer(maps:get(cancel_grace, Opts), self(), {cancel_grace, Id}),
    State#state{next_id = CancelId + 1,
                pending = P#{Id := cancelled},
                cancel_requests = (State#state.cancel_requests)#{CancelId => Id},
                cancelled = (State#state.cancelled)#{Id => Grace}}.

%%% Frames from Python

handle_frame({r, Id, Result}, State) ->
    reply(Id, {ok, unwrap(Result)}, State);
handle_frame({e, Id, Error}, State) when is_integer(Id) ->
    reply(Id, {error, unwrap(Error)}, State);
handle_frame({'M', Dest, Message}, State) ->
    try unwrap(Dest) ! unwrap(Message)
    catch error:badarg -> logger:warning("beam_nas_worker: no process ~p for a Python cast", [Dest])
    end,
    {noreply, State};
handle_frame({'P', Text}, State) ->
    output(Text, State),
    {noreply, State};
handle_frame({'C', Id, M, F, A, Context}, State) ->
    Args = unwrap(A),
    case Context of
        'L' ->
            send_erlang_reply(Id, apply_caught(M, F, Args), State);
        _ ->
            Server = self(),
            spawn_link(fun() -> Server ! {erlang_call_result, Id, apply_caught(M, F, Args)} end)
    end,
    {noreply, State};
handle_frame(Frame, State) ->
    fail_all({protocol_error, {unexpected_frame, Frame}}, State).

reply(Id, Reply, State = #state{pending = P}) ->
    case maps:take(Id, P) of
        {{caller, From}, P1} ->
            gen_server:reply(From, Reply),
            {noreply, dispatch(forget_timer(Id, State#state{pending = P1}))};
        {cast, P1} ->
            log_cast_error(Reply),
            {noreply, dispatch(State#state{pending = P1})};
        {cancelled, P1} ->
            {Grace, C1} = maps:take(Id, State#state.cancelled),
            erlang:cancel_timer(Grace),
            {noreply, dispatch(State#state{pending = P1, cancelled = C1})};
        error ->
            %% An answer to a cancellation request: the cancelled call's own
            %% reply (or the grace timer) decides what happens next.
            case maps:take(Id, State#state.cancel_requests) of
                {_, Requests} -> {noreply, State#state{cancel_requests = Requests}};
                error -> fail_all({protocol_error, {unknown_reply_id, Id}}, State)
            end
    end.

forget_timer(Id, State = #state{timers = Timers}) ->
    case maps:take(Id, Timers) of
        {none, T1} -> State#state{timers = T1};
        {Ref, T1} -> erlang:cancel_timer(Ref), State#state{timers = T1};
        error -> State
    end.

log_cast_error({ok, _}) -> ok;
log_cast_error({error, Error}) -> logger:warning("beam_nas_worker: cast failed: ~tp", [Error]).

output(Text, #state{opts = #{output := standard_io}}) ->
    try io:put_chars(Text)
    catch error:_ -> io:format("~tp", [Text])
    end;
output(Text, #state{opts = #{output := Pid}}) ->
    Pid ! {beam_nas_output, self(), Text}.

%%% Calls from Python to Erlang

apply_caught(M, F, A) ->
    try {ok, apply(M, F, A)}
    catch Class:Reason:Stack -> {error, Class, Reason, Stack}
    end.

%% A reply over the frame limit becomes an error, which Python raises in the caller.
send_erlang_reply(Id, Reply, State) ->
    case send_frame(erlang_reply(Id, Reply), State) of
        ok -> ok;
        TooLarge -> ok = send_frame(erlang_reply(Id, {error, error, TooLarge, []}), State)
    end.

erlang_reply(Id, {ok, Result}) -> {r, Id, Result};
erlang_reply(Id, {error, Class, Reason, Stack}) -> {e, Id, {erlang, Class, Reason, Stack}}.

%%% Failure

%% The worker is gone or unusable: every caller learns it now, then this server
%% stops so that its supervisor starts a fresh worker.
fail_all(Reason, State) ->
    reply_all(Reason, State),
    {stop, Reason, State#state{pending = #{}, waiting = #{}, timers = #{}}}.

reply_all(Reason, #state{pending = P, waiting = W}) ->
    [gen_server:reply(From, {error, Reason}) || {caller, From} <- maps:values(P)],
    [gen_server:reply(From, {error, Reason}) || {{caller, From}, _} <- maps:values(W)],
    ok.

kill_os_process(OsPid) ->
    os:cmd("kill -9 " ++ integer_to_list(OsPid)),
    ok.

%% Polls for the OS process to be gone (reaped), for up to `Ms' milliseconds.
wait_os_exit(OsPid, Ms) ->
    case os_process_alive(OsPid) of
        false -> true;
        true when Ms =< 0 -> false;
        true -> timer:sleep(20), wait_os_exit(OsPid, Ms - 20)
    end.

os_process_alive(OsPid) ->
    case filelib:is_dir("/proc/self") of
        true -> filelib:is_dir("/proc/" ++ integer_to_list(OsPid));
        false -> os:cmd("kill -0 " ++ integer_to_list(OsPid) ++ " 2>&1") =:= ""
    end.

%%% Framing

%% Returns `{too_large, Bytes, Limit}' instead of sending a frame the worker
%% would refuse; a compressed frame counts its inflated size too.
send_frame(Term, #state{port = Port, limit = Limit, opts = #{compressed := Level}}) ->
    Frame = term_to_binary(Term, [{compressed, Level}]),
    case frame_size(Frame) of
        Bytes when Bytes =< Limit -> port_command(Port, Frame), ok;
        Bytes -> {too_large, Bytes, Limit}
    end.

frame_size(<<131, 80, Inflated:32, _/binary>> = Frame) -> max(byte_size(Frame), Inflated);
frame_size(Frame) -> byte_size(Frame).

decode_frame(Data) ->
    try {ok, binary_to_term(Data)}
    catch error:badarg -> {error, {undecodable_frame, byte_size(Data)}}
    end.

%% ErlPort's Python side hands back Erlang-only terms (pids, refs, funs) wrapped
%% as opaque tuples; this worker sends them natively, but both must work.
unwrap(T = {?OPAQUE, erlang, Bin}) when is_binary(Bin) ->
    try binary_to_term(<<131, Bin/binary>>)
    catch error:badarg -> T
    end;
unwrap(T) when is_tuple(T) ->
    list_to_tuple([unwrap(E) || E <- tuple_to_list(T)]);
unwrap([H | T]) ->
    [unwrap(H) | unwrap(T)];
unwrap(M) when is_map(M) ->
    maps:from_list([{unwrap(K), unwrap(V)} || {K, V} <- maps:to_list(M)]);
unwrap(T) ->
    T.
