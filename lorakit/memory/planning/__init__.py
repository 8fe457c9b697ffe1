"""The planner's parts: what a model holds (``model``), the steady bytes of weights and optimizer
state (``states``), what autograd saves (``activations``) and the step's transient peak (``peak``).
``lorakit.memory.planner.plan_memory`` puts them together."""
