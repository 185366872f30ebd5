"""The one training loop (shared by finetune and pretrain), its checkpoints and run directory, and the finetune
skeleton that classification and NER fill in."""

IGNORE = -100  # the target of positions no loss is computed on (torch's cross_entropy ignore_index)
