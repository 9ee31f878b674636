"""Static int8 post-training quantization, one job per module (lower modules first):

  settings   QuantSettings and the per-architecture defaults (data)
  grid       weights that already lie on a checkpoint's 8-bit grid, and the plan that keeps them there
  nodes      naming the nodes ORT's optimiser leaves nameless; selecting nodes by pattern and the narrow layers kept float
  storage    int8 storage for float layers (folded at load), all-zero zero points dropped, ORT's names shortened
  calibrate  feeding real images to ONNX Runtime's calibrators
  speed      `measure_speedup`: the float and the int8 model timed interleaved on a device profile; does int8 pay?
  pipeline   `quantize_model`: simplify -> pre-process -> calibrate -> quantize -> record -> evaluate -> time -> publish

`mnetctl.quantize_model` is the entry point; `mnetctl.simplify` is the separate onnxsim step it starts with.
"""
