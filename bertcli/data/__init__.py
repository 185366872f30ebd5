"""Reading input: file formats, streamed records, whole tables, column choice, labels and the packaged corpora.

Every command reads through here, so formats, column detection and the messages for bad data (file,
line/row, column, fix) are the same everywhere. Only `tables` imports `datasets`.
"""
