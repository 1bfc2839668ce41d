"""Helpers of bench/alert_quality.py: the world (world), the simulated days (sim), the matching and
figures (score), the causes of misses and false alarms (explain)."""
