"""A step's memory timeline (lorakit.memory.timeline): planned and measured, by category at each phase, for
LoRA, QLoRA (nf4) and full fine-tuning; on tiny-llama, and on SmolLM2 (e2e)."""
import json
import warnings

import pytest
import torch
from test_step_peak import _two_steps

import lorakit
from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.memory.planner import plan_for_steps
from lorakit.memory.step_peak import PHASES, StepPeak
from lorakit.memory.timeline import TIMELINE_CATEGORIES, PhaseLevel, measured_timeline, tallest
from lorakit.run import RunRecord

warnings.filterwarnings("ignore")
METHODS = [("lora", "none"), ("lora", "nf4"), ("full", "none")]


def _check_planned(p: MemoryBreakdown) -> None:
    """At each planned phase the categories add up to the moment's bytes, and the tallest is the peak."""
    phases = [phase for phase, _ in p.timeline]
    assert phases[:3] == ["forward", "logits-loss", "backward"] and phases[-1] == "optimizer step"
    for phase, parts in p.timeline:
        assert set(parts) == set(TIMELINE_CATEGORIES) and min(parts.values()) >= 0, (phase, parts)
        assert (parts["base_weights"], parts["adapters"]) == (p.base_weights, p.adapters)
    moments = dict(p.timeline)
    # after the forward: every activation, no gradient; at the optimizer step: every gradient, no activation
    assert moments["forward"]["activations"] == p.activations and moments["forward"]["gradients"] == 0
    assert moments["forward"]["transient"] == 0
    opt = moments["optimizer step"]
    assert (opt["gradients"], opt["optimizer"], opt["activations"]) == (p.gradients, p.optimizer, 0)
    # the moment the peak is planned at: the forward's bytes plus what sits on top (plan.transient)
    at = "end of backward" if "end of backward" in moments and p.peak_at == "backward" \
        and sum(moments["end of backward"].values()) == p.peak else p.peak_at
    if at in ("logits-loss", "backward"):
        assert sum(moments[at].values()) == sum(moments["forward"].values()) + sum(p.transient.values())
    assert tallest(p.timeline) == (at, p.peak)


def _check_measured(m, reading) -> None:
    """The measured trajectory's maximum is the measured peak, in the phase it names."""
    assert [phase for phase, _ in reading.timeline][0] == "forward"
    assert {phase for phase, _ in reading.timeline} <= set(PHASES)
    assert tallest(reading.timeline) == (reading.peak_at, reading.peak)
    for _, parts in reading.timeline:
        assert (parts["base_weights"], parts["adapters"]) == (m.base_weights, m.adapters)
    opt = dict(reading.timeline)["optimizer step"]
    # at the optimizer step the rise held is the gradients: the activations are freed by then
    assert opt["activations"] == 0 and opt["gradients"] == pytest.approx(m.gradients, rel=0.02, abs=4096)


@pytest.mark.parametrize("method,quant", METHODS)
def test_planned_and_measured_timelines_add_up_and_peak_at_the_peak(method, quant):
    model, opt, batch, peak = _two_steps(method, quant, False)
    m = lorakit.memory.breakdown.measure(model, opt)  # the resident categories: no extra forward
    assert len(peak.readings) == 2
    for reading in peak.readings:
        _check_measured(m, reading)
    step1, step2 = (dict(r.timeline) for r in peak.readings)
    assert step1["forward"]["optimizer"] == 0 and step2["forward"]["optimizer"] == m.optimizer
    assert step1["optimizer step"]["optimizer"] == pytest.approx(m.optimizer, rel=0.01)  # created in step 1
    cfg = lorakit.RunConfig(model="tiny-llama", method=method, quant=quant, labelled_head=False)
    p = plan_for_steps(cfg, peak.batches, device="cpu")
    _check_planned(p)
    assert p.peak == pytest.approx(peak.reading.peak, rel=0.01)


def test_a_tied_full_fine_tuning_plan_has_its_end_of_backward():
    p = lorakit.plan_memory("smollm2-135m", method="full", device="cpu", seq_len=32, batch_size=1)
    _check_planned(p)
    eob = dict(p.timeline)["end of backward"]
    assert eob["activations"] == 0 and eob["gradients"] == p.gradients and eob["transient"] > 0


def test_the_measured_attribution_by_phase():
    resident = {"base_weights": 100, "adapters": 10, "optimizer": 0, "gradients": 0}
    levels = [PhaseLevel("forward", 0, 50), PhaseLevel("logits-loss", 40, 70), PhaseLevel("backward", 45, 60),
              PhaseLevel("optimizer step", 8, 30)]
    tl = dict(measured_timeline(resident, levels, new_state=16))
    assert tl["forward"]["activations"] == 50
    assert (tl["logits-loss"]["activations"], tl["logits-loss"]["transient"]) == (40, 30)
    assert (tl["backward"]["activations"], tl["backward"]["transient"]) == (45, 15)
    assert (tl["optimizer step"]["gradients"], tl["optimizer step"]["optimizer"],
            tl["optimizer step"]["transient"]) == (8, 16, 6)
    assert all(sum(parts.values()) == 110 + lv.top for lv, parts in zip(levels, tl.values(), strict=True))


def test_an_allocation_takes_the_phase_of_the_ops_enclosing_it_not_of_a_sibling_that_ended():
    """The profiler's ops as (start, -end, rank) (rank: index in forward, backward, logits-loss, optimizer step):
    an optimizer op [0, 10], a backward op [10, 20] starting as it ends, a loss op [12, 15] inside that one."""
    from lorakit.memory.timeline import _phase_each

    ops = sorted([(0, -10, 3), (10, -20, 1), (12, -15, 2)])
    mems = [(t, i, 1) for i, t in enumerate((5, 11, 13, 17, 25))]
    assert [phase for _, _, _, phase in _phase_each(mems, ops)] == \
        ["optimizer step", "backward", "logits-loss", "backward", "forward"]


def test_a_step_peak_without_categories_has_no_timeline():
    sp = StepPeak("cpu")
    sp.start(resident=0)
    (torch.randn(64, 64, requires_grad=True) * 2).sum().backward()
    assert sp.stop().timeline is None


def test_a_run_stores_both_timelines_and_old_records_still_load():
    run = lorakit.train(lorakit.RunConfig(model="tiny-llama", max_steps=2, train_examples=8, eval_examples=2),
                        store=False)
    assert run.status == "finished", run.reason
    m, p = run.memory, run.planned_memory
    assert tallest(m.timeline) == (m.peak_at, m.peak)
    _check_planned(p)
    back = RunRecord.from_dict(json.loads(json.dumps(run.to_dict())))  # as stored
    assert back.memory.timeline == m.timeline and back.planned_memory.timeline == p.timeline
    old = m.as_dict()
    del old["timeline"]
    assert MemoryBreakdown.from_dict(old).timeline is None and MemoryBreakdown.from_dict(old).peak == m.peak


@pytest.mark.e2e
@pytest.mark.parametrize("method,quant", METHODS)
def test_smollm2_timelines_for_two_steps(method, quant):
    """Two steps of SmolLM2 by hand (lorakit.train's own path is the tiny-llama test above), 2 x 64 tokens."""
    from lorakit.models.loading import load_model

    model = load_model("smollm2-135m", quant=quant, device="cpu").model
    model, opt, batch, peak = _two_steps(method, quant, False, shape=(2, 64), model=model)
    m = lorakit.memory.breakdown.measure(model, opt)  # the resident categories: no extra forward
    for reading in peak.readings:
        _check_measured(m, reading)
    cfg = lorakit.RunConfig(model="smollm2-135m", method=method, quant=quant, labelled_head=False)
    p = plan_for_steps(cfg, peak.batches, device="cpu")
    _check_planned(p)
    assert p.peak == pytest.approx(peak.reading.peak, rel=0.03)

class _FakeAllocator:
    """torch.cuda's allocator figures, driven by hand: the CUDA path without a GPU."""

    def __init__(self, allocated: int):
        self.allocated = self.peak = allocated

    def set(self, allocated: int, peak: int) -> None:
        self.allocated, self.peak = allocated, max(self.peak, peak)

    def install(self, monkeypatch) -> None:
        def reset(_device=None):
            self.peak = self.allocated

        for name, fn in dict(synchronize=lambda _d=None: None, reset_peak_memory_stats=reset,
                             memory_allocated=lambda _d=None: self.allocated,
                             max_memory_allocated=lambda _d=None: self.peak,
                             max_memory_reserved=lambda _d=None: self.peak + 8, memory_reserved=lambda _d=None: 0,
                             mem_get_info=lambda _d=None: (0, 0)).items():
            monkeypatch.setattr(torch.cuda, name, fn)


def test_the_cuda_timeline_comes_from_the_allocator_at_the_phase_marks(monkeypatch):
    fake = _FakeAllocator(100)  # 100 bytes held before the step (an earlier model, say): not this step's
    fake.install(monkeypatch)
    sp = StepPeak("cuda:0")
    sp.start(1000, parts={"base_weights": 900, "adapters": 100})
    fake.set(150, 160)  # the forward: activations, and a buffer of 10 freed before it ended
    sp.mark("backward")
    fake.set(110, 180)  # backward: 30 on top of the activations held, then they are freed
    sp.mark("optimizer step")
    fake.set(100, 130)
    reading = sp.stop()
    assert (reading.peak, reading.peak_at) == (1080, "backward")
    tl = dict(reading.timeline)
    assert list(tl) == ["forward", "backward", "optimizer step"]
    assert tl["forward"]["activations"] == 60
    assert (tl["backward"]["activations"], tl["backward"]["transient"]) == (50, 30)
    assert (tl["optimizer step"]["gradients"], tl["optimizer step"]["transient"]) == (10, 20)
    assert tallest(reading.timeline) == ("backward", 1080)
