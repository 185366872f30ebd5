"""What a tokenizer makes of text, token-length statistics of a dataset, and WordPiece vocabulary training."""
