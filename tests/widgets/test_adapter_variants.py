"""The Adapter panel's variant controls (DoRA, rsLoRA, init, LoftQ iterations, LoRA+ ratio): widgets
only forward values; the form prices DoRA's magnitudes and RunConfig's refusals show under the fields."""
from lorakit.widgets.form import Form, ModelSummary


def _controller(tiny, **values):
    from lorakit.widgets import StudioController

    return StudioController(store=False, **dict(tiny, **values))


def test_variant_controls_forward_values_and_show_refusals(tiny):
    from lorakit.widgets import AdapterPanel

    c = _controller(tiny)
    panel = AdapterPanel(c, autoload=False)
    assert (panel.use_dora.value, panel.use_rslora.value, panel.init.value) == (False, False, "default")
    panel.use_dora.value = True
    panel.use_rslora.value = True
    panel.loraplus_lr_ratio.value = 16.0
    assert (c.values["use_dora"], c.values["use_rslora"], c.values["loraplus_lr_ratio"]) == (True, True, 16.0)
    assert panel.loftq_iter.disabled
    panel.init.value = "loftq"  # on an unquantized base: refused, naming quant
    assert c.values["init"] == "loftq" and "quant='nf4'" in panel.message("init")
    assert not panel.loftq_iter.disabled
    c.set(quant="nf4")
    assert panel.message("init") == "" and "init" not in c.problems
    panel.loftq_iter.value = 0
    assert "loftq_iter must be an integer >= 1" in panel.message("loftq_iter")
    panel.loftq_iter.value = 2
    panel.loraplus_lr_ratio.value = 0.5
    assert ">= 1" in panel.message("loraplus_lr_ratio")
    panel.loraplus_lr_ratio.value = 0.0
    assert set(c.problems) == set()
    c.set(init="pissa")  # from code: the dropdown follows
    assert panel.init.value == "pissa"
    assert c.wait(600)


def test_form_counts_dora_magnitudes():
    from lorakit.adapters.lora import LinearGroup

    groups = [LinearGroup("q_proj", 2, 64, 64, 2 * 64 * 64), LinearGroup("v_proj", 2, 64, 32, 2 * 64 * 32)]
    model = ModelSummary("tiny-llama", 200_000, 2, "LlamaForCausalLM", 0.1, groups)
    lora = Form(model="tiny-llama", rank=4, target_modules=("q_proj", "v_proj")).trainable(model)[0]
    dora = Form(model="tiny-llama", rank=4, target_modules=("q_proj", "v_proj"), use_dora=True).trainable(model)[0]
    assert lora == 2 * 4 * (64 + 64) + 2 * 4 * (64 + 32)
    assert dora - lora == 2 * 64 + 2 * 32  # one magnitude per output feature of each adapted layer
