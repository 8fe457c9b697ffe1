"""How long a run will take: the step's work against a hand count, the calibration kept per machine, the plan."""
import json

import pytest

import lorakit
from lorakit.common.errors import ConfigError
from lorakit.memory import calibration as C
from lorakit.memory import settings_of
from lorakit.memory.planner import planning
from lorakit.memory.timing import TimePlan, about, plan_time, step_work

# tiny-llama: hidden 64, inter 128, 2 layers, 4 heads of 16 (2 kv heads), vocab 1536, tied head
LAYER_WEIGHTS = 64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 64 * 128 + 64 * 128 + 128 * 64  # q k v o gate up down
TOKENS = 2 * 8
LIN = 2 * TOKENS * 2 * LAYER_WEIGHTS  # every linear of both layers, one pass
ATTN = 4 * 2 * 8 * 8 * 4 * 16 * 2  # q @ k^T and p @ v: batch x seq^2 x heads x head_dim x layers
HEAD = 2 * TOKENS * 64 * 1536
LORA = 2 * TOKENS * 2 * 8 * ((64 + 64) + (64 + 32))  # rank 8 on q_proj and v_proj of both layers
# under LoRA on a frozen base, layer 0's q/k/v (and q's and v's A) read the embeddings: no input gradient
NO_GRAD = 2 * TOKENS * (64 * (64 + 8) + 64 * 32 + 64 * (32 + 8))
CAL = C.Calibration("float32", train_gflops=10.0, decode_gflops=5.0, elementwise_gbs=2.0, dequant_gbs=1.0,
                    adamw_ns_per_param=2.0, layer_overhead_s=0.001, attention_gflops=1.0, dropout_ns_per_element=3.0)


def work(**kw):
    p = planning(settings_of("tiny-llama", batch_size=2, seq_len=8, dtype="float32", **kw), device="cpu")
    return step_work(p)


def test_lora_flops_match_a_hand_count():
    w = work()  # the base frozen: its activations' gradients (one pass), no weight gradients; attention's two
    assert w.matmul_flops == (LIN + ATTN + HEAD + LORA) + (LIN + HEAD + 2 * ATTN + 2 * LORA - NO_GRAD)
    assert w.trained_params == 2 * 8 * ((64 + 64) + (64 + 32)) and w.dequant_bytes == 0


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_count_is_torchs_own_flop_counter_plus_attention(method):
    """torch's FlopCounterMode over a real forward and backward of tiny-llama counts every matmul but the CPU
    attention kernel's: the plan is exactly that plus its attention (forward once, backward twice)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lorakit.adapters.lora import attach_lora

    model = lorakit.load_model("tiny-llama", device="cpu").model
    if method == "lora":
        model = attach_lora(model, rank=8, target_modules=["q_proj", "v_proj"], dropout=0.0)
    model.train()
    ids = torch.randint(0, 1000, (2, 8))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    assert work(method=method).matmul_flops == counter.get_total_flops() + 3 * ATTN


def test_attention_and_dropout_are_priced_at_their_own_probes_rates():
    """Attention's matmuls run far below the big matmul's rate (their own probe), and LoRA's dropout draws a
    mask per element of each adapted input (per forward: a recomputation draws again)."""
    no_drop, drop, ck = work(dropout=0.0), work(dropout=0.05), work(dropout=0.05, gradient_checkpointing=True)
    assert drop.attention_flops == 3 * ATTN and ck.attention_flops == 4 * ATTN
    assert no_drop.dropout_elements == 0 and drop.dropout_elements == TOKENS * 2 * (64 + 64)  # q, v inputs x 2 layers
    assert ck.dropout_elements == 2 * drop.dropout_elements
    assert drop.seconds(CAL) - no_drop.seconds(CAL) == pytest.approx(drop.dropout_elements * 3.0e-9)
    at_matmul_rate = C.Calibration(**{**CAL.as_dict(), "attention_gflops": CAL.train_gflops})
    assert drop.seconds(CAL) - drop.seconds(at_matmul_rate) == pytest.approx(3 * ATTN * (1 / 1e9 - 1 / 10e9))


def test_full_fine_tuning_adds_the_weight_gradients():
    full, lora = work(method="full"), work()
    assert full.matmul_flops == (LIN + ATTN + HEAD) + (2 * (LIN + HEAD) + 2 * ATTN)
    assert full.matmul_flops > lora.matmul_flops
    assert full.trained_params == 2 * LAYER_WEIGHTS + 1536 * 64 + 5 * 64  # the layers, embedding, 5 norms


def test_qlora_adds_dequantizing_every_weight_per_forward_and_backward():
    q, lora = work(quant="nf4"), work()
    assert q.matmul_flops == lora.matmul_flops + NO_GRAD  # peft's k-bit preparation turns input grads on
    assert q.dequant_bytes == 2 * 2 * LAYER_WEIGHTS * 4  # forward and backward, fp32 compute
    assert q.seconds(CAL) > lora.seconds(CAL)


def test_checkpointing_adds_a_forward_of_the_layers():
    ck, lora = work(gradient_checkpointing=True), work()
    assert ck.matmul_flops - lora.matmul_flops == LIN + ATTN + LORA + NO_GRAD  # and the input grads on
    assert work(quant="nf4", gradient_checkpointing=True).dequant_bytes == 3 * 2 * LAYER_WEIGHTS * 4


def test_the_labelled_head_runs_at_the_labelled_rows_only():
    p = planning(settings_of("tiny-llama", batch_size=2, seq_len=8, labelled_head=True), device="cpu")
    every = step_work(planning(settings_of("tiny-llama", batch_size=2, seq_len=8), device="cpu"))
    five = step_work(p, {"batch_size": 2, "seq_len": 8, "labelled": 5})
    assert every.matmul_flops - five.matmul_flops == 2 * (TOKENS - 5) * 64 * 1536 * 2  # forward + input grads


def test_dora_adds_b_times_a_per_forward():
    dora, lora = work(use_dora=True), work()
    assert dora.matmul_flops - lora.matmul_flops == 2 * 2 * 8 * (64 * 64 + 64 * 32)
    assert dora.trained_params - lora.trained_params == 2 * (64 + 32)  # a magnitude per output feature


def test_a_decoding_step_of_fewer_rows_than_the_probes_takes_as_long_as_the_probes():
    """Decoding reads every weight per step, whatever the batch: 16 prompts decode no faster per step than 32
    (the probe's rows), so the same tokens for half the prompts take about as long, not a quarter as long."""
    from lorakit.memory.timing import generation_seconds

    p = planning(settings_of("smollm2-135m", batch_size=2, seq_len=8), device="cpu")
    at = {n: generation_seconds(p, CAL, n, 8, 40) - generation_seconds(p, CAL, n, 8, 0) for n in (8, 16, 32)}
    assert at[16] == pytest.approx(at[32], rel=0.05) and at[8] == pytest.approx(at[32], rel=0.05)


@pytest.fixture
def home(monkeypatch, tmp_path):
    monkeypatch.setenv("LORAKIT_HOME", str(tmp_path))
    calls = []

    def measure(dtype, hidden, inter):
        calls.append((dtype, hidden, inter))
        return CAL
    monkeypatch.setattr(C, "measure", measure)
    return tmp_path, calls


def test_the_calibration_is_measured_once_per_machine_and_shape_then_read(home):
    tmp_path, calls = home
    assert C.calibrate("float32", 64, 128) == CAL
    assert C.calibrate("float32", 64, 128) == CAL  # read back from the file, not measured
    assert calls == [("float32", 64, 128)]
    saved = json.loads((tmp_path / "capability.json").read_text())
    assert [[c["train_gflops"] for c in v] for k, v in saved.items() if "timing float32 64x128" in k] == [[10.0]]
    C.calibrate("float32", 64, 128, fresh=True)
    C.calibrate("float32", 576, 1536)
    assert len(calls) == 3


def test_a_plan_prices_with_the_median_of_the_last_calibrations(home, monkeypatch):
    """A shared machine's speed moves within seconds: each fresh calibration is kept with the last ``KEPT``, and
    every figure is their median, so one probe caught at a fast or slow moment does not price every later plan."""
    from dataclasses import replace

    tmp_path, calls = home
    speeds = iter([100.0, 300.0, 90.0, 110.0, 50.0])
    monkeypatch.setattr(C, "measure", lambda *a: calls.append(a) or replace(CAL, train_gflops=next(speeds)))
    monkeypatch.setattr(C, "KEPT", 3)
    assert [C.calibrate("float32", 64, 128, fresh=True).train_gflops for _ in range(5)] == \
        [100.0, 200.0, 100.0, 110.0, 90.0]  # of [100], [100, 300], [100, 300, 90], [300, 90, 110], [90, 110, 50]
    assert C.calibrate("float32", 64, 128).train_gflops == 90.0 and len(calls) == 5  # read, not measured
    assert C.calibrate("float32", 64, 128).adamw_ns_per_param == CAL.adamw_ns_per_param


def test_figures_kept_by_an_earlier_version_are_read_or_measured_again(home):
    """One calibration kept as a dict (before the history) still counts; figures with other fields are measured."""
    from lorakit.models.compute_dtype import keep

    tmp_path, calls = home
    keep("timing float32 64x128", CAL.as_dict())
    assert C.calibrate("float32", 64, 128) == CAL and calls == []
    keep("timing float32 64x128", {**CAL.as_dict(), "gone": 1.0})
    assert C.calibrate("float32", 64, 128) == CAL and len(calls) == 1


def test_the_probes_measure_something(monkeypatch):
    monkeypatch.setattr(C, "_seconds", lambda fn, min_seconds=0.0: (fn(), 1e-3)[1])  # one call each: quick
    cal = C.measure("float32", 64, 128)
    assert cal.elementwise_gbs > 0 and cal.dequant_gbs > 0 and cal.adamw_ns_per_param > 0 and cal.train_gflops > 0
    assert cal.attention_gflops > 0 and cal.dropout_ns_per_element > 0


def test_plan_time_prices_the_steps_and_the_evaluation(home):
    cfg = lorakit.RunConfig(model="tiny-llama", max_steps=6, batch_size=2, seq_len=8, labelled_head=False)
    plan = plan_time(cfg)
    assert isinstance(plan, TimePlan) and plan.steps == 6
    assert plan.train_s == pytest.approx(6 * plan.step_s)
    assert plan.step_s == pytest.approx(step_work(planning(cfg.settings, device="cpu")).seconds(CAL))
    assert plan.total_s == pytest.approx(plan.load_s + plan.train_s + plan.eval_s)
    assert plan.calibration["train_gflops"] == 10.0 and plan.text.startswith("about ")
    assert plan_time(cfg, eval_passes=0).eval_s == 0 < plan_time(cfg, eval_passes=1).eval_s < plan.eval_s
    assert plan_time(cfg, eval_new_tokens=96).eval_s > plan.eval_s
    short = plan_time(cfg, [{"batch_size": 2, "seq_len": 4}] * 3)  # the run's own batches
    assert short.steps == 3 and short.train_s < 3 * plan.step_s


def test_plan_time_names_what_it_cannot_take(home):
    with pytest.raises(ConfigError, match="settings"):
        plan_time("tiny-llama")
    with pytest.raises(ConfigError, match="batches"):
        plan_time(lorakit.RunConfig(model="tiny-llama"), [])


@pytest.mark.parametrize("seconds,text", [(12, "about 10 s"), (2, "about 5 s"), (100, "about 2 min"),
                                          (7200, "about 2.0 h")])
def test_about(seconds, text):
    assert about(seconds) == text
