%% @doc The least-busy dispatcher of a `beam_nas_pool': hands out the worker
%% with the fewest calls in flight and takes it back when the call is done.
%% A caller that dies mid-call is noticed through a monitor, so the counts
%% never drift.
-module(beam_nas_dispatcher).
-behaviour(gen_server).

-export([start_link/2, checkout/1, checkin/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-record(state, {
    pool :: pid(),
    size :: pos_integer(),
    busy = #{} :: #{pid() => non_neg_integer()},   % worker => calls in flight
    tickets = #{} :: #{reference() => pid()}       % caller monitor => worker
}).

-spec start_link(pid(), pos_integer()) -> {ok, pid()}.
start_link(Pool, Size) ->
    gen_server:start_link(?MODULE, {Pool, Size}, []).

%% @doc A worker for one call, and the ticket to give back with `checkin/2'.
-spec checkout(pid()) -> {ok, pid(), reference()} | {error, term()}.
checkout(Dispatcher) ->
    try gen_server:call(Dispatcher, checkout, infinity)
    catch exit:{Reason, _} -> {error, {pool_down, Reason}}
    end.

-spec checkin(pid(), reference()) -> ok.
checkin(Dispatcher, Ticket) ->
    gen_server:cast(Dispatcher, {checkin, Ticket}).

-spec init({pid(), pos_integer()}) -> {ok, #state{}}.
init({Pool, Size}) ->
    {ok, #state{pool = Pool, size = Size}}.

-spec handle_call(checkout, gen_server:from(), #state{}) ->
    {reply, {ok, pid(), reference()} | {error, no_workers}, #state{}}.
handle_call(checkout, {Caller, _}, State0) ->
    State = refresh(State0),
    case maps:to_list(State#state.busy) of
        [] ->
            {reply, {error, no_workers}, State};
        Loads ->
            {_, Worker} = lists:min([{N, W} || {W, N} <- Loads]),
            Ticket = erlang:monitor(process, Caller),
            {reply, {ok, Worker, Ticket},
             State#state{busy = maps:update_with(Worker, fun(N) -> N + 1 end, State#state.busy),
                         tickets = (State#state.tickets)#{Ticket => Worker}}}
    end.

-spec handle_cast({checkin, reference()}, #state{}) -> {noreply, #state{}}.
handle_cast({checkin, Ticket}, State) ->
    erlang:demonitor(Ticket, [flush]),
    {noreply, release(Ticket, State)}.

-spec handle_info({'DOWN', reference(), process, pid(), term()}, #state{}) -> {noreply, #state{}}.
handle_info({'DOWN', Ref, process, Pid, _}, State = #state{busy = Busy}) ->
    case maps:is_key(Pid, Busy) of
        true -> {noreply, State#state{busy = maps:remove(Pid, Busy)}};
        false -> {noreply, release(Ref, State)}
    end.

release(Ticket, State = #state{busy = Busy, tickets = Tickets}) ->
    case maps:take(Ticket, Tickets) of
        {Worker, T1} ->
            Busy1 = case Busy of
                        #{Worker := N} -> Busy#{Worker := N - 1};
                        _ -> Busy
                    end,
            State#state{busy = Busy1, tickets = T1};
        error ->
            State
    end.

%% When a worker is missing (at start, or after one died), asks the
%% supervisor for the ones it has (re)started. Asked lazily, at checkout,
%% because the supervisor cannot answer while it is still starting us.
refresh(State = #state{busy = Busy, size = Size}) when map_size(Busy) >= Size ->
    State;
refresh(State = #state{pool = Pool, busy = Busy}) ->
    New = [W || W <- beam_nas_pool:workers(Pool), not maps:is_key(W, Busy)],
    [erlang:monitor(process, W) || W <- New],
    State#state{busy = maps:merge(maps:from_list([{W, 0} || W <- New]), Busy)}.
