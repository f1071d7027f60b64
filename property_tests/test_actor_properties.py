"""Hypothesis checks of the actor kernel's invariants (SPEC section 7).

Each test states its invariant in its name. Trio programs run inside the sync
``@given`` tests with ``trio.run(..., clock=MockClock(autojump_threshold=0))``:
virtual time jumps whenever every task is blocked, so sleeps cost nothing and a
hang shows up as a ``trio.fail_after`` deadline rather than a stuck test.

The stateful machine at the end drives one long-lived Trio loop, in a helper
thread, a step at a time.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Literal, final

import attrs
import pytest
import trio
import trio.testing
from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

import actors
from actors._mailbox import CLOSED, Mailbox

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

# Virtual seconds after which a program that has not finished counts as hung.
HANG = 10_000


def run_with_mock_clock(main: Callable[[], Awaitable[None]]) -> None:
    """Run *main* under an autojumping mock clock; fail if it has not finished by ``HANG``."""

    async def bounded() -> None:
        with trio.fail_after(HANG):
            await main()

    trio.run(bounded, clock=trio.testing.MockClock(autojump_threshold=0))


async def pause(checkpoints: int, delay: float) -> None:
    for _ in range(checkpoints):
        await trio.lowlevel.checkpoint()
    if delay:
        await trio.sleep(delay)


def all_leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from all_leaves(exc)
        else:
            yield exc


# -- 1. ordering: per sender -> receiver FIFO --------------------------------


@final
@attrs.frozen
class Send:
    """One message from a sender: how it is sent, after what pause."""

    how: Literal["tell", "tell_nowait", "ask", "ask_nowait"]
    checkpoints: int
    delay: float


sends = st.builds(
    Send,
    how=st.sampled_from(["tell", "tell_nowait", "ask", "ask_nowait"]),
    checkpoints=st.integers(0, 2),
    delay=st.sampled_from([0.0, 0.0, 0.001, 0.01]),
)


class Receiver(actors.Actor[tuple[int, int], None]):
    def __init__(self, pauses: list[int]) -> None:
        self.pauses = pauses or [0]
        self.received: list[tuple[int, int]] = []

    async def handle(self, message: tuple[int, int]) -> None:
        await pause(self.pauses[len(self.received) % len(self.pauses)], 0.0)
        self.received.append(message)


@given(capacity=st.integers(0, 4), ops=st.lists(st.sampled_from(["put", "take"]), max_size=30))
def test_a_mailbox_is_a_bounded_fifo_that_drains_what_it_holds(capacity: int, ops: list[str]) -> None:
    """Without waiting tasks, a mailbox of *capacity* takes a message iff it holds
    fewer than *capacity*, gives them back oldest first, and drains the rest in order."""
    mailbox = Mailbox(capacity)
    model: list[tuple[int, None]] = []
    for i, op in enumerate(ops):
        if op == "put":
            if len(model) < capacity:
                mailbox.put_nowait((i, None))
                model.append((i, None))
            else:
                with pytest.raises(trio.WouldBlock):
                    mailbox.put_nowait((i, None))
        else:
            assert mailbox.take_nowait() == (model.pop(0) if model else None)
        assert len(mailbox) == len(model)
    assert mailbox.drain() == tuple(model)
    assert mailbox.take_nowait() is CLOSED


@given(
    senders=st.lists(st.lists(sends, max_size=12), min_size=1, max_size=4),
    mailbox_size=st.integers(0, 8),
    receiver_pauses=st.lists(st.integers(0, 2), max_size=4),
)
def test_messages_from_one_sender_are_handled_in_send_order(
    senders: list[list[Send]], mailbox_size: int, receiver_pauses: list[int]
) -> None:
    """Whatever the interleaving of several senders and however each sends
    (tell, tell_nowait retried when full, ask, ask_nowait), the receiver handles
    each sender's messages exactly once and in the order they were sent."""
    receiver = Receiver(receiver_pauses)

    async def sender(ref: actors.ActorRef[tuple[int, int], None], who: int, plan: list[Send]) -> None:
        replies = []
        for seq, send in enumerate(plan):
            await pause(send.checkpoints, send.delay)
            message = (who, seq)
            if send.how == "tell":
                await ref.tell(message)
            elif send.how == "ask":
                await ref.ask(message)
            else:
                while True:
                    try:
                        if send.how == "tell_nowait":
                            ref.tell_nowait(message)
                        else:
                            replies.append(ref.ask_nowait(message))
                        break
                    except actors.MailboxFullError:
                        await trio.lowlevel.checkpoint()
        for reply in replies:
            await reply.wait()

    async def main() -> None:
        async with actors.open_system() as system:
            ref = await system.spawn(receiver, mailbox_size=mailbox_size)
            async with trio.open_nursery() as nursery:
                for who, plan in enumerate(senders):
                    nursery.start_soon(sender, ref, who, plan)

    run_with_mock_clock(main)
    note(f"received: {receiver.received}")
    for who, plan in enumerate(senders):
        assert [seq for sender_, seq in receiver.received if sender_ == who] == list(range(len(plan)))


@final
class Gated(actors.Actor[int, None]):
    """Handles nothing until its gate opens, then records what it handles."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.received: list[int] = []

    async def handle(self, message: int) -> None:
        await self.gate.wait()
        self.received.append(message)


@given(
    mailbox_size=st.integers(0, 4),
    waiting_order=st.permutations(range(6)).flatmap(lambda p: st.integers(1, 6).map(lambda n: p[:n])),
    how=st.sampled_from(["tell", "ask"]),
)
def test_senders_waiting_on_a_full_mailbox_are_served_in_the_order_they_began_to_wait(
    mailbox_size: int, waiting_order: list[int], how: str
) -> None:
    """When the mailbox is full, each sender parks; once the actor drains it,
    the parked senders' messages are handled in the order the senders began to
    wait (whatever their names or start order), after what was already queued."""
    gated = Gated()

    async def send(ref: actors.ActorRef[int, None], message: int) -> None:
        if how == "tell":
            await ref.tell(message)
        else:
            await ref.ask(message)

    async def main() -> None:
        async with actors.open_system() as system:
            ref = await system.spawn(gated, mailbox_size=mailbox_size)
            async with trio.open_nursery() as nursery:
                queued = [100 + i for i in range(mailbox_size + 1)]  # one in the handler, the rest queued
                for message in queued:
                    nursery.start_soon(send, ref, message)
                    await trio.testing.wait_all_tasks_blocked()
                for message in waiting_order:  # each parks before the next starts
                    nursery.start_soon(send, ref, message)
                    await trio.testing.wait_all_tasks_blocked()
                gated.gate.set()
            await trio.testing.wait_all_tasks_blocked()  # the actor handled what the last tells queued
            assert gated.received == [*queued, *waiting_order]
            ref.stop_nowait()

    run_with_mock_clock(main)


# -- 2. structure: nothing outlives the system block -------------------------


Policy = Literal["escalate", "restart", "stop"]
policies: st.SearchStrategy[Policy] = st.sampled_from(["escalate", "restart", "stop"])


def supervision(policy: Policy) -> actors.Supervision:
    if policy == "restart":
        return actors.Supervision.restart(2, within=5.0)
    return actors.Supervision.escalate() if policy == "escalate" else actors.Supervision.stop()


@final
@attrs.frozen
class Spawn:
    """Spawn actor number ``len(earlier)`` under ``parent`` (``None``: top level)."""

    parent: int | None
    policy: Policy
    shielded: bool


@final
@attrs.frozen
class Tell:
    actor: int
    message: Literal["ok", "fail", "slow", "ask-fail"]


@final
@attrs.frozen
class Stop:
    actor: int
    wait: bool


@final
@attrs.frozen
class Cancel:
    actor: int


@final
@attrs.frozen
class Sleep:
    seconds: float


Op = Spawn | Tell | Stop | Cancel | Sleep
Ending = Literal["leave", "raise", "cancel system"]


@st.composite
def programs(draw: st.DrawFn) -> tuple[list[Op], Ending]:
    """A random life for an actor tree: spawns, failures, stops and cancels, then an ending."""
    ops: list[Op] = []
    spawned = 0
    for _ in range(draw(st.integers(2, 14))):
        if spawned == 0 or draw(st.integers(0, 3)) == 0:
            parent = draw(st.none() | st.integers(0, spawned - 1)) if spawned else None
            ops.append(Spawn(parent, draw(policies), draw(st.booleans())))
            spawned += 1
            continue
        actor = draw(st.integers(0, spawned - 1))
        kind = draw(st.sampled_from(["tell", "tell", "tell", "stop", "cancel", "sleep"]))
        if kind == "tell":
            ops.append(Tell(actor, draw(st.sampled_from(["ok", "fail", "fail", "slow", "ask-fail"]))))
        elif kind == "stop":
            ops.append(Stop(actor, draw(st.booleans())))
        elif kind == "cancel":
            ops.append(Cancel(actor))
        else:
            ops.append(Sleep(draw(st.sampled_from([0.0, 0.5, 3.0]))))
    return ops, draw(st.sampled_from(["leave", "raise", "cancel system"]))


class BodyError(Exception):
    """Raised by the system block's body for the "raise" ending."""


class Node(actors.Actor[object, object]):
    """An actor that can fail, be slow, spawn children, and records its handler's ``finally``."""

    def __init__(self, books: dict[str, int]) -> None:
        self.books = books

    async def handle(self, message: object) -> object:
        self.books["entered"] += 1
        try:
            if isinstance(message, Spawn):
                return await self.spawn(node(self.books, message), supervision=supervision(message.policy))
            if message in ("fail", "ask-fail"):
                raise ValueError(message)
            if message == "slow":
                await trio.sleep(2)
            return message
        finally:
            self.books["exited"] += 1


class ShieldedNode(Node):
    shielded = True


def node(books: dict[str, int], spawn: Spawn) -> Node:
    return ShieldedNode(books) if spawn.shielded else Node(books)


@given(program=programs())
def test_no_actor_task_is_alive_after_its_system_block_whatever_happened(
    program: tuple[list[Op], Ending],
) -> None:
    """After the ``open_system`` block ends (left, raised from, or cancelled, with
    any mix of escalated, restarted and stopped failures, stops and cancels
    inside), no actor is alive, no task is left under the caller, and every
    handler's ``finally`` ran."""
    ops, ending = program
    books = {"entered": 0, "exited": 0}
    refs: list[actors.ActorRef[object, object] | None] = []
    after: dict[str, object] = {}

    async def spawn(system: actors.ActorSystem, op: Spawn) -> actors.ActorRef[object, object] | None:
        if op.parent is None:
            return await system.spawn(node(books, op), supervision=supervision(op.policy))
        parent = refs[op.parent]
        if parent is None:
            return None
        try:
            return await parent.ask(op)  # type: ignore[return-value]
        except actors.ActorStoppedError:
            return None

    async def apply(system: actors.ActorSystem, op: Op) -> None:
        if isinstance(op, Spawn):
            refs.append(await spawn(system, op))
            return
        if isinstance(op, Sleep):
            await trio.sleep(op.seconds)
            return
        target = refs[op.actor]
        if target is None:
            return
        try:
            if isinstance(op, Tell) and op.message == "ask-fail":
                with pytest.raises(ValueError, match=r"^ask-fail$"):
                    await target.ask(op.message)
            elif isinstance(op, Tell):
                await target.tell(op.message)
            elif isinstance(op, Stop) and op.wait:
                await target.stop()
            elif isinstance(op, Stop):
                target.stop_nowait()
            else:
                target.cancel()
        except actors.ActorStoppedError:
            pass

    async def main() -> None:
        try:
            async with actors.open_system() as system:
                for op in ops:
                    await apply(system, op)
                if ending == "raise":
                    raise BodyError
                if ending == "cancel system":
                    system.cancel()
        except BaseExceptionGroup as group:
            leaves = list(all_leaves(group))
            event("the block raised " + " and ".join(sorted({type(e).__name__ for e in leaves})))
            assert [e for e in leaves if not isinstance(e, ValueError | BodyError)] == []
        else:
            event("the block ended quietly")
        after["statistics"] = system.statistics()
        after["tasks"] = [n.child_tasks for n in trio.lowlevel.current_task().child_nurseries]

    run_with_mock_clock(main)
    assert after["statistics"] == actors.SystemStatistics(())
    assert after["tasks"] == []
    assert not any(ref is not None and ref.is_alive for ref in refs)
    assert books["entered"] == books["exited"]


# -- 4. delivery: every ask completes ----------------------------------------


@final
@attrs.frozen
class Ask:
    actor: int
    delay: float
    fail: bool
    timeout: float | None


@final
@attrs.frozen
class Kill:
    at: float
    actor: int
    how: Literal["cancel", "stop", "stop_nowait", "fail"]


# Restarts without a practical limit, so that no failure escalates and cancels the askers.
WORKER_POLICIES = {"restart": actors.Supervision.restart(10**6), "stop": actors.Supervision.stop()}


class Worker(actors.Actor[tuple[str, float, bool], str]):
    async def handle(self, message: tuple[str, float, bool]) -> str:
        text, delay, fail = message
        await trio.sleep(delay)
        if fail:
            raise ValueError(text)
        return text


@given(
    workers=st.lists(st.sampled_from(["restart", "stop"]), min_size=1, max_size=4),
    askers=st.lists(
        st.lists(
            st.builds(
                Ask,
                actor=st.integers(0, 3),
                delay=st.sampled_from([0.0, 0.1, 1.0, 5.0]),
                fail=st.booleans(),
                timeout=st.none() | st.sampled_from([0.5, 2.0]),
            ),
            max_size=8,
        ),
        min_size=1,
        max_size=4,
    ),
    kills=st.lists(
        st.builds(
            Kill,
            at=st.sampled_from([0.0, 0.05, 0.5, 1.0, 4.0]),
            actor=st.integers(0, 3),
            how=st.sampled_from(["cancel", "stop", "stop_nowait", "fail"]),
        ),
        max_size=4,
    ),
    mailbox_size=st.integers(0, 3),
)
def test_every_ask_completes_with_a_reply_or_an_error_under_random_deaths(
    workers: list[Literal["restart", "stop"]], askers: list[list[Ask]], kills: list[Kill], mailbox_size: int
) -> None:
    """While actors are cancelled, stopped and failing at random times, every
    ``ask`` ends with the handler's reply, the handler's error, ``AskTimeoutError``
    or ``ActorStoppedError``: none hangs."""
    outcomes: list[str] = []

    async def asker(
        refs: list[actors.ActorRef[tuple[str, float, bool], str]], who: int, plan: list[Ask]
    ) -> None:
        for i, ask in enumerate(plan):
            text = f"{who}.{i}"
            try:
                reply = await refs[ask.actor % len(refs)].ask(
                    (text, ask.delay, ask.fail), timeout=ask.timeout
                )
            except ValueError as exc:
                outcomes.append("error" if ask.fail and str(exc) == text else f"wrong error {exc!r}")
            except actors.AskTimeoutError:
                outcomes.append("timeout" if ask.timeout is not None else "timeout without a timeout")
            except actors.ActorStoppedError:
                outcomes.append("stopped")
            else:
                outcomes.append("reply" if reply == text and not ask.fail else f"wrong reply {reply!r}")

    async def killer(refs: list[actors.ActorRef[tuple[str, float, bool], str]], kill: Kill) -> None:
        await trio.sleep(kill.at)
        ref = refs[kill.actor % len(refs)]
        try:
            if kill.how == "cancel":
                ref.cancel()
            elif kill.how == "stop":
                await ref.stop()
            elif kill.how == "stop_nowait":
                ref.stop_nowait()
            else:
                await ref.tell(("kill", 0.0, True))
        except actors.ActorStoppedError:
            pass

    async def main() -> None:
        async with actors.open_system() as system:
            refs = [
                await system.spawn(Worker(), supervision=WORKER_POLICIES[policy], mailbox_size=mailbox_size)
                for policy in workers
            ]
            async with trio.open_nursery() as nursery:
                for who, plan in enumerate(askers):
                    nursery.start_soon(asker, refs, who, plan)
                for kill in kills:
                    nursery.start_soon(killer, refs, kill)

    run_with_mock_clock(main)
    note(f"outcomes: {outcomes}")
    for outcome in set(outcomes):
        event(f"an ask ended: {outcome}")
    assert len(outcomes) == sum(len(plan) for plan in askers)
    assert set(outcomes) <= {"reply", "error", "timeout", "stopped"}


# -- a stateful machine for actor lifecycles ---------------------------------


class TrioThread:
    """One Trio loop with one open actor system, in a helper thread, driven a step at a time.

    Hypothesis' stateful machines call their rules synchronously; each rule
    here runs one coroutine in the loop with ``trio.from_thread.run`` and lets
    the actors settle before it returns.
    """

    def __init__(self) -> None:
        self.system: actors.ActorSystem | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._leave: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="trio for a state machine")
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by close()
            self.error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._leave = trio.Event()
        async with actors.open_system() as system:
            self.system = system
            self._ready.set()
            await self._leave.wait()

    def call(self, step: Callable[[actors.ActorSystem], Awaitable[object]]) -> object:
        """Run ``step(system)`` in the loop, then wait until every actor is blocked."""
        assert self.system is not None

        async def settled() -> object:
            assert self.system is not None
            result = await step(self.system)
            await trio.testing.wait_all_tasks_blocked()
            return result

        return trio.from_thread.run(settled, trio_token=self._token)

    def close(self) -> None:
        """Leave the system block and end the loop; re-raise what it raised."""
        if self._leave is not None and self.error is None:
            trio.from_thread.run_sync(self._leave.set, trio_token=self._token)
        self._thread.join()
        if self.error is not None:
            raise self.error


class Life(actors.Actor[str, object]):
    """Counts what it handled and spawns children on request; journals its hooks."""

    def __init__(self, journal: list[tuple[str, int]], number: int) -> None:
        self.journal = journal
        self.number = number
        self.count = 0

    async def on_start(self) -> None:
        self.journal.append(("start", self.number))

    async def handle(self, message: str) -> object:
        if message == "fail":
            raise ValueError(f"actor {self.number} failed")
        if message.startswith("spawn "):
            number = int(message.split()[1])
            return await self.spawn(
                Life(self.journal, number), name=f"a{number}", supervision=actors.Supervision.stop()
            )
        self.count += 1
        return self.count

    async def on_stop(self) -> None:
        self.journal.append(("stop", self.number))


@final
@attrs.define
class Model:
    """What the machine expects of one actor."""

    parent: int | None
    policy: Literal["restart", "stop"]
    count: int = 0
    restarts: int = 0
    state: Literal["running", "stopped", "cancelled", "failed"] = "running"
    children: list[int] = attrs.field(factory=list)


class ActorLifecycles(RuleBasedStateMachine):
    """Spawn, tell, ask, fail, stop and cancel actors (and children) in any
    order: after every step the kernel agrees with a simple model of who is
    alive, and leaving the system stops everything left, running ``on_stop``
    for every actor that was not cancelled."""

    refs = Bundle("refs")

    def __init__(self) -> None:
        super().__init__()
        self.loop = TrioThread()
        self.journal: list[tuple[str, int]] = []
        self.models: dict[int, Model] = {}
        self.handles: dict[int, actors.ActorRef[str, object]] = {}

    def _running(self, number: int) -> bool:
        return self.models[number].state == "running"

    def _end(self, number: int, state: Literal["stopped", "cancelled", "failed"]) -> None:
        model = self.models[number]
        if model.state != "running":
            return
        model.state = state
        for child in model.children:
            # Children end with their parent: cancelled with it, else drained and stopped.
            self._end(child, "cancelled" if state == "cancelled" else "stopped")

    def _ask(self, number: int, message: str) -> object:
        ref = self.handles[number]

        async def step(system: actors.ActorSystem) -> object:
            try:
                return await ref.ask(message)
            except actors.ActorStoppedError:
                return "stopped"

        return self.loop.call(step)

    @initialize(target=refs, policy=st.sampled_from(["restart", "stop"]))
    def first(self, policy: Literal["restart", "stop"]) -> int:
        return self._spawn(policy)

    @rule(target=refs, policy=st.sampled_from(["restart", "stop"]))
    def spawn(self, policy: Literal["restart", "stop"]) -> int:
        return self._spawn(policy)

    def _spawn(self, policy: Literal["restart", "stop"]) -> int:
        number = len(self.models)

        def build() -> Life:
            return Life(self.journal, number)

        ref = self.loop.call(
            lambda system: system.spawn(
                build,
                name=f"a{number}",
                supervision=actors.Supervision.restart(10**6)
                if policy == "restart"
                else actors.Supervision.stop(),
            )
        )
        self.models[number] = Model(None, policy)
        self.handles[number] = ref  # type: ignore[assignment]
        return number

    @rule(target=refs, parent=refs)
    def spawn_child(self, parent: int) -> int:
        number = len(self.models)
        got = self._ask(parent, f"spawn {number}")
        if not self._running(parent):
            assert got == "stopped"
            return parent  # nothing was spawned
        assert isinstance(got, actors.ActorRef)
        self.models[number] = Model(parent, "stop")
        self.models[parent].children.append(number)
        self.handles[number] = got
        return number

    @rule(actor=refs)
    def ask(self, actor: int) -> None:
        got = self._ask(actor, "count")
        model = self.models[actor]
        if self._running(actor):
            model.count += 1
            assert got == model.count
        else:
            assert got == "stopped"

    @rule(actor=refs)
    def fail(self, actor: int) -> None:
        ref = self.handles[actor]

        async def step(system: actors.ActorSystem) -> object:
            try:
                await ref.tell("fail")
            except actors.ActorStoppedError:
                return "stopped"
            return None

        got = self.loop.call(step)
        model = self.models[actor]
        if not self._running(actor):
            assert got == "stopped"
        elif model.policy == "restart":
            model.count = 0  # the factory built a fresh instance
            model.restarts += 1
        else:
            self._end(actor, "failed")

    @rule(actor=refs)
    def stop(self, actor: int) -> None:
        ref = self.handles[actor]
        self.loop.call(lambda system: ref.stop())
        self._end(actor, "stopped")

    @rule(actor=refs)
    def cancel(self, actor: int) -> None:
        ref = self.handles[actor]

        async def step(system: actors.ActorSystem) -> None:
            ref.cancel()
            await ref.wait_stopped()

        self.loop.call(step)
        self._end(actor, "cancelled")

    @invariant()
    def kernel_agrees_with_the_model(self) -> None:
        system = self.loop.system
        assert system is not None
        live = {s.name: s for s in system.statistics().actors}
        running = {f"a{n}": m for n, m in self.models.items() if m.state == "running"}
        assert set(live) == set(running)
        for name, model in running.items():
            assert live[name].parent == (None if model.parent is None else f"a{model.parent}")
            assert live[name].restarts == model.restarts
        for number, ref in self.handles.items():
            assert ref.is_alive == self._running(number)
            assert isinstance(ref.failure, ValueError) == (self.models[number].state == "failed")

    def teardown(self) -> None:
        system = self.loop.system
        self.loop.close()
        assert system is not None
        assert system.statistics().actors == ()
        assert not any(ref.is_alive for ref in self.handles.values())
        for number, model in self.models.items():
            if model.parent is None:
                self._end(number, "stopped")  # leaving the block stops what is left
        for number, model in self.models.items():
            # on_stop ran once per restart, and once more unless it was cancelled.
            stops = self.journal.count(("stop", number))
            assert stops == model.restarts + (model.state != "cancelled"), (number, model)


TestActorLifecycles = ActorLifecycles.TestCase
TestActorLifecycles.settings = settings(TestActorLifecycles.settings, stateful_step_count=15)
