"""Grids of runs, here or as Ray tasks.
"""
