"""Weight sources for the graphs `mnetctl.graph` emits.

A source returns `{layer_name: (weight, bias)}` for the layers of `ArchConfig.param_layers()`, in ONNX
layout (OIHW for convs, [out, in] for the classifier), float32.
"""
