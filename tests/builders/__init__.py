"""Builders of tiny random model files in the exact key layouts of the real ones (test and live-test fixtures)."""
