"""Plumbing every layer may use: timing small pieces of work, units for display, argument checks.

Nothing here knows about models, hardware or lessons.
"""
