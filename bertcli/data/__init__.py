"""Reading input: file formats, streamed records, whole tables, column choice and labels.

The commands read tables and records through here, so formats, column detection and the messages for bad data
(file, line/row, column, fix) are the same everywhere (NER's CoNLL and pretraining's corpora have readers of their
own in their tasks). Only `tables` imports `datasets`.
"""
