"""Talking to a base and its adapters: one loaded base, adapters by name, streamed answers.
"""
