"""Plumbing every layer may use: timing small pieces of work, units for display, argument checks, and the
statistics of measured shares (how far a share of right answers can move, paired comparisons).

Nothing here knows about models, hardware or lessons.
"""
