"""Leaves every room may use: errors, number formats, devices, the cache home, lazy library names, quiet libraries.
"""
