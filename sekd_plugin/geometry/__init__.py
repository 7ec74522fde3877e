"""Geometry shared by the benchmarks and the pipeline steps (robust estimators)."""
