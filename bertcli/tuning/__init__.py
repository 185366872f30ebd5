"""Runs over several seeds or a search space: mean +- std (`--seeds`) and `bertcli tune` (Optuna)."""
