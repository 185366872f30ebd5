"""Devices, precision and processes: the only place that decides where and how a model runs."""
