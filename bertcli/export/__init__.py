"""`bertcli export`: a model as ONNX (fp32, and int8 behind an accuracy gate) in a directory that serves alone."""
