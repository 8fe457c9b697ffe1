"""One run: train(), the Trainer bridge to events, the evaluation before and after, experiment trackers as sinks.
"""
