"""Throttle: many updates become few redraws, nothing is lost, the last state is always drawn."""
from __future__ import annotations

from lorakit.widgets import Throttle


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class ManualTimer:
    """Records scheduled callbacks; the test fires them by hand (no real time involved)."""

    def __init__(self):
        self.pending = []

    def __call__(self, delay, fn):
        handle = _Handle(fn)
        self.pending.append(handle)
        return handle

    def fire_all(self):
        for h in list(self.pending):
            self.pending.remove(h)
            if not h.cancelled:
                h.fn()


class _Handle:
    def __init__(self, fn):
        self.fn, self.cancelled = fn, False

    def cancel(self):
        self.cancelled = True


def test_many_events_few_redraws():
    clock, timer, drawn = FakeClock(), ManualTimer(), []
    t = Throttle(lambda items: drawn.append(list(items)), interval=0.3, clock=clock, timer=timer)
    for i in range(300):  # 300 steps logged over 3 seconds: 100 per second
        t.push(i)
        clock.now += 0.01
        if i % 30 == 29:  # the timer thread gets a chance now and then
            timer.fire_all()
    t.flush()  # the end of the run
    assert t.pushed == 300
    assert t.redraws <= 3 / 0.3 + 2, t.redraws  # a few per second at most
    assert t.redraws >= 2
    assert [i for batch in drawn for i in batch] == list(range(300))  # every point, in order


def test_first_push_draws_at_once_and_trailing_flush_catches_up():
    clock, timer, drawn = FakeClock(), ManualTimer(), []
    t = Throttle(lambda items: drawn.append(list(items)), interval=0.3, clock=clock, timer=timer)
    t.push("a")
    assert drawn == [["a"]]  # no waiting for the first loss point
    t.push("b")
    t.push("c")
    assert drawn == [["a"]] and len(timer.pending) == 1  # coalesced behind one timer
    clock.now += 0.3
    timer.fire_all()
    assert drawn == [["a"], ["b", "c"]]
    t.flush()  # nothing queued: nothing drawn
    assert t.redraws == 2


def test_flush_cancels_the_timer_and_redraw_errors_are_reported():
    clock, timer, errors = FakeClock(), ManualTimer(), []

    def boom(items):
        raise RuntimeError("cannot draw")

    t = Throttle(boom, interval=0.3, clock=clock, timer=timer, on_error=errors.append)
    t.push(1)
    t.push(2)
    t.flush()
    assert [str(e) for e in errors] == ["cannot draw", "cannot draw"]
    assert all(h.cancelled for h in timer.pending)


def test_real_timer_delivers_the_trailing_update():
    import threading

    done = threading.Event()
    drawn = []

    def redraw(items):
        drawn.extend(items)
        if "last" in items:
            done.set()

    t = Throttle(redraw, interval=0.05)
    t.push("first")
    t.push("last")  # within the interval: left to the timer thread
    assert done.wait(30)
    assert drawn == ["first", "last"]


def test_train_panel_through_the_controller_redraws_a_few_times_and_keeps_every_point():
    from lorakit.run.events import RunFinished, RunStarted, StepLogged
    from lorakit.widgets import StudioController, TrainPanel

    c = StudioController(store=False, model="tiny-llama")
    panel = TrainPanel(c, interval=0.3)
    clock, timer = FakeClock(), ManualTimer()
    panel.throttle.clock, panel.throttle.timer = clock, timer  # the panel's own throttle, on a fake clock
    draw, drawn = panel.chart.show, []
    panel.chart.show = lambda steps, *a, **k: (drawn.append(len(steps)), draw(steps, *a, **k))  # count redraws
    c.feed(RunStarted("r1", None, 10, 100))
    for step in range(1, 301):  # 300 steps over 3 fake seconds, through the sink LiveCallback uses
        c.feed(StepLogged("r1", step, 300, 10.0 / step, 1e-3, 1000.0, step / 100))
        clock.now += 0.01
        if step % 30 == 0:  # the timer thread gets a chance now and then
            timer.fire_all()
    c.feed(RunFinished("r1", "finished", None))
    assert panel.throttle.pushed >= 300
    assert 2 <= len(drawn) <= 3 / 0.3 + 3, drawn  # a few redraws per second, not one per step
    assert drawn[-1] == 300 and panel.chart.train_points == [(s, 10.0 / s) for s in range(1, 301)]
    assert "finished" in panel.status_text and panel.progress.value == 300
