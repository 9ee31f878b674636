"""Execution-provider registry, option construction (CUDA/TensorRT/NNAPI too), sessions and node assignment."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from mnetctl.errors import BadInput, EnvironmentMissing
from mnetctl.runtime import (
    CPU_PROVIDER,
    EP_REGISTRY,
    EPRequest,
    as_requests,
    assignment_from_profile,
    cpu_session,
    create_session,
    ep_status,
    parse_ep_list,
    parse_ep_options,
    profile_events,
    provider_options,
    random_feeds,
    resolve_ep,
    summarize_op_events,
)
from mnetctl.runtime.session import _plan

SHORT_NAMES = ["cpu", "cuda", "tensorrt", "openvino", "nnapi", "qnn", "xnnpack", "coreml", "dml"]


def test_registry_has_every_ep_with_provider_and_hint():
    assert list(EP_REGISTRY) == SHORT_NAMES
    providers = set()
    for name, info in EP_REGISTRY.items():
        assert info.name == name
        assert info.provider.endswith("ExecutionProvider")
        assert info.kind in ("builtin", "plugin")
        assert info.install_hint and info.packages
        providers.add(info.provider)
    assert len(providers) == len(EP_REGISTRY)
    assert EP_REGISTRY["qnn"].kind == "plugin" and "onnxruntime_qnn" in EP_REGISTRY["qnn"].plugin_modules
    assert "onnxruntime-openvino" in EP_REGISTRY["openvino"].packages
    assert "onnxruntime-gpu" in EP_REGISTRY["tensorrt"].packages


def test_resolve_and_parse_ep_names():
    assert resolve_ep("TensorRT").name == "tensorrt"
    assert resolve_ep("TensorrtExecutionProvider").name == "tensorrt"
    assert resolve_ep("openvinoexecutionprovider").name == "openvino"
    assert parse_ep_list("openvino, cpu,openvino") == ["openvino", "cpu"]
    with pytest.raises(BadInput, match="unknown execution provider 'tpu'"):
        parse_ep_list("tpu,cpu")
    with pytest.raises(BadInput):
        parse_ep_list(" , ")


def test_tensorrt_options_from_jetson_profile():
    from mnetctl.profiles import load_profile

    prof = load_profile("jetson-orin-nano")
    trt = next(e for e in prof.eps if e.name == "tensorrt")
    opts = provider_options("tensorrt", trt.options)
    assert opts["trt_fp16_enable"] == "True"
    assert opts["trt_engine_cache_enable"] == "True"
    assert opts["trt_engine_cache_path"].endswith("jetson-orin-nano")
    assert opts["trt_timing_cache_enable"] == "True"
    assert opts["trt_max_workspace_size"] == "2147483648"
    assert opts["device_id"] == "0"  # registry default kept
    assert all(isinstance(v, str) for v in opts.values())


def test_cuda_nnapi_qnn_openvino_option_spelling():
    cuda = provider_options("cuda", {"device_id": 1})
    assert cuda["device_id"] == "1" and cuda["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    # NNAPI flags and QNN booleans are 1/0 (QNN ignores "True": it accepts only 0 or 1).
    assert provider_options("nnapi", {"NNAPI_FLAG_USE_FP16": True, "NNAPI_FLAG_CPU_DISABLED": False}) == {
        "NNAPI_FLAG_CPU_DISABLED": "0",
        "NNAPI_FLAG_USE_FP16": "1",
    }
    qnn = provider_options("qnn", {"enable_htp_fp16_precision": True, "soc_model": "SM8550", "htp_arch": 73})
    assert qnn == {"backend_type": "htp", "enable_htp_fp16_precision": "1", "htp_arch": "73", "soc_model": "SM8550"}
    ov = provider_options("openvino", {"enable_qdq_optimizer": True, "num_streams": 1.0})
    assert ov == {"device_type": "CPU", "enable_qdq_optimizer": "True", "num_streams": "1"}
    assert provider_options("xnnpack", threads=4) == {"intra_op_num_threads": "4"}
    assert provider_options("cpu", threads=4) == {}


def test_requests_keep_order_and_options():
    reqs = as_requests([EPRequest("TensorRT", {"trt_fp16_enable": True}), "cuda", ("cpu", {}), "cuda"])
    assert [r.name for r in reqs] == ["tensorrt", "cuda", "cpu"]
    assert reqs[0].options == {"trt_fp16_enable": True}
    assert [r.name for r in as_requests(None)] == ["cpu"]


@pytest.mark.parametrize("name,title", [("tensorrt", "TensorRT"), ("cuda", "CUDA"), ("nnapi", "NNAPI"), ("coreml", "CoreML")])
def test_missing_gpu_and_mobile_eps_are_environment_errors(name, title):
    import onnxruntime as ort

    if EP_REGISTRY[name].provider in ort.get_available_providers():
        pytest.skip(f"{title} is available on this host")
    with pytest.raises(EnvironmentMissing) as err:
        _plan(as_requests(name), allow_fallback=False, threads=None)
    assert title in err.value.message and f"({name})" in err.value.message
    assert EP_REGISTRY[name].install_hint in err.value.hint
    status = ep_status(name)
    assert not status.available and status.hint == EP_REGISTRY[name].install_hint


def test_cpu_session_assignment_matches_profiler(tiny_model):
    info = create_session(tiny_model, "cpu", threads=1)
    assert info.used == [CPU_PROVIDER]
    assert info.assignment.source == "session"
    counts = info.assignment.counts
    assert set(counts) == {CPU_PROVIDER} and counts[CPU_PROVIDER] > 20
    assert info.assignment.ops[CPU_PROVIDER]["Conv"] == 27  # V1: stem + 13 x (dw + pw) convolutions (BN folded)
    assert not info.fallback_dict()["fell_back"]
    # The profiler sees the same providers; its kernels come after CPU fusions (Conv+Clip -> FusedConv), so fewer.
    with tempfile.TemporaryDirectory() as tmp:
        prof = create_session(tiny_model, "cpu", threads=1, profile_prefix=os.path.join(tmp, "p"))
        feeds = random_feeds(prof.session, batch=1)
        prof.session.run(None, feeds)
        events = profile_events(prof.session)
    from_prof = assignment_from_profile(events)
    assert from_prof.source == "profiling"
    assert set(from_prof.counts) == set(counts)
    assert 27 <= from_prof.counts[CPU_PROVIDER] <= counts[CPU_PROVIDER]
    rows = summarize_op_events(events, runs=1, top=5)
    assert len(rows) == 5 and rows[0]["total_ms"] >= rows[-1]["total_ms"]
    assert {r["provider"] for r in rows} == {CPU_PROVIDER}


def test_allow_fallback_records_what_fell_back(tiny_model):
    import onnxruntime as ort

    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("TensorRT is available on this host")
    info = create_session(tiny_model, "tensorrt,cuda", allow_fallback=True)
    fb = info.fallback_dict()
    assert fb["fell_back"] and fb["unavailable"] == ["tensorrt", "cuda"]
    assert info.used == [CPU_PROVIDER]
    with pytest.raises(EnvironmentMissing, match="TensorRT"):
        create_session(tiny_model, "tensorrt,cuda,cpu")


def test_batch_override_and_feeds(tiny_model):
    info = create_session(tiny_model, "cpu", batch=3)
    feeds = random_feeds(info.session, batch=3)
    (arr,) = feeds.values()
    assert arr.shape == (3, 3, 128, 128) and arr.dtype == np.float32
    assert info.session.get_inputs()[0].shape[0] == 3  # the free batch axis was fixed for the providers
    (out,) = info.session.run(None, feeds)
    assert out.shape == (3, 1000)


def test_uint8_model_feeds(tmp_path):
    from mnetctl.builder import build_model, save_model

    path = tmp_path / "u8.onnx"
    save_model(build_model("v1", 0.25, 96, input_format="uint8-nhwc"), path)
    sess = create_session(path, "cpu").session
    (arr,) = random_feeds(sess, batch=1).values()
    assert arr.dtype == np.uint8 and arr.shape == (1, 96, 96, 3)


def test_cpu_session_signature_unchanged(tiny_model):
    sess = cpu_session(tiny_model, threads=1)
    assert sess.get_providers() == [CPU_PROVIDER]
    sess2 = cpu_session(tiny_model.read_bytes())
    assert sess2.get_inputs()[0].name == "input"


def test_corrupt_model_is_bad_input(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BadInput):
        create_session(bad, "cpu")


def test_ep_options_parse_and_name_the_parameter():
    assert parse_ep_options(["openvino.device_type=GPU", " qnn.backend_type = cpu ", "openvino.device_type=NPU"]) == {
        "openvino": {"device_type": "NPU"},
        "qnn": {"backend_type": "cpu"},
    }
    for bad in ("device_type=GPU", "openvino.device_type", ".x=1", "openvino.=1"):
        with pytest.raises(BadInput, match="ep_options item .* must look like EP.KEY=VALUE") as err:
            parse_ep_options([bad])
        assert "--ep-option" not in err.value.message


def test_session_options_carry_config_and_spinning_stop():
    from mnetctl.runtime import session_options

    so = session_options(2, {"session.intra_op.allow_spinning": "0"}, stop_idle_spinning=True)
    assert so.intra_op_num_threads == 2
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.force_spinning_stop") == "1"
    with pytest.raises(RuntimeError, match="does not have configuration"):  # off unless asked
        session_options().get_session_config_entry("session.force_spinning_stop")


def test_cpu_session_and_create_session_take_config(tiny_model):
    sess = cpu_session(tiny_model, threads=1, config={"session.inter_op.allow_spinning": "0"}, stop_idle_spinning=True)
    assert sess.get_session_options().get_session_config_entry("session.force_spinning_stop") == "1"
    info = create_session(tiny_model, "cpu", threads=1, config={"session.intra_op.allow_spinning": "0"})
    assert info.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
