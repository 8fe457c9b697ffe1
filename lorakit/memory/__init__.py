"""Memory, measured and planned: bytes of tensors, what autograd saves, the five-category breakdown, the step peak, the
planner and the fit verdict.
"""
