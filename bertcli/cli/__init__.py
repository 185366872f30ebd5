"""The Typer app. Keep module level free of torch/transformers/datasets so `bertcli --help` stays instant."""
