"""Inference the sentence-transformers way: tokenize, length-sort, pad each batch to its longest, restore input order.

A model runs behind `Backend`, one method shared by torch and ONNX Runtime, so every task, the CLI and the
server batch and score the same way whatever runs the model.
"""
