"""Memory, measured and planned: bytes of tensors, what autograd saves, the five-category breakdown, the step peak, the
planner and the fit verdict.
"""
from lorakit.common.public import lazy_names

_NAMES = {  # public name -> the module of this room that defines it
    # (no "planning": the subpackage memory.planning owns that name; the function is memory.planner.planning)
    "MemoryBreakdown": "breakdown",
    "CATEGORIES": "breakdown",
    "measure": "breakdown",
    "StepPeak": "step_peak",
    "TrainingPeak": "step_peak",
    "TIMELINE_CATEGORIES": "timeline",
    "tallest": "timeline",
    "plan_memory": "planner",
    "plan_for_config": "planner",
    "plan_for_batch": "planner",
    "plan_for_steps": "planner",
    "config_settings": "planner",
    "settings_of": "planner",
    "RunPlan": "run_plan",
    "plan": "run_plan",
    "Fit": "fit",
    "fits": "fit",
    "accelerators": "fit",
    "THIS_MACHINE": "fit",
    "speeds": "fit",
    "plan_time": "timing",
    "TimePlan": "timing",
    "step_work": "timing",
    "about": "timing",
    "remaining_seconds": "timing",
    "calibrate": "calibration",
    "Calibration": "calibration",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
