"""A run as data: the events training emits and the RunRecord that sums them up.
"""
