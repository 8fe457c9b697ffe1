"""What can be chosen (models, families, targets, recommended values) and one run's settings, RunConfig.
"""
