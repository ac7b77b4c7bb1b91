"""A trained forecaster as a standalone artifact: the whole predict path as one ONNX graph."""
