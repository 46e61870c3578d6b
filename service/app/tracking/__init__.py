"""The tracker on its own, outside the onboard runtime: ``prescient track`` (live or offline),
a tick driver that times it, MOT scoring against ground truth (motmetrics) and synthetic scenes
for tests and benchmarks."""
