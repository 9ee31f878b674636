"""Writers for other model formats: `tflite` (TFLite FlatBuffers for LiteRT and the Edge TPU).

graph_ops reads an ONNX classifier as plain ops, ranges measures the activation ranges a QDQ model lacks,
flatbuf holds a TFLite model in memory and serialises it, tflite lowers the ops and writes the file.
"""
