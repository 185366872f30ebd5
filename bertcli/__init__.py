"""bertcli: the command-line toolkit for BERT-family models."""

__version__ = "0.1.0"
