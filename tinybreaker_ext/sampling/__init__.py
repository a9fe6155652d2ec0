"""Sigma schedules, reference samplers and denoiser wrappers (exact ports of the reference's numerics)."""
