"""Comparing runs: the table (compare()), the charts and the HTML/CSV report.
"""
