"""Measuring the course's models on this machine: decode and prefill timings, the overhead calibration that
the roofline needs for small models, profiles of where a step's time goes, and the measured side of
speculative decoding, cascades and early exit."""
