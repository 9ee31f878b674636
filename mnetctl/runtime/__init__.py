"""ONNX Runtime for mnetctl: the execution-provider registry and the one place in the library that creates sessions.

  eps        the provider registry as data (EPInfo, EP_REGISTRY), name and option parsing, EPRequest
  ort        the onnxruntime import, session options, log level, thread check, the plain CPU session
  probe      which providers this environment has (built in, or plugin libraries and their devices)
  session    create_session on the requested providers, with no silent fallback; op_profile
  profiling  node assignment per provider and profiler-event parsing
  feeds      random inputs and IO binding for timed runs

Importers use the names below. Layers, lowest first: eps; ort (on eps); probe (on ort); profiling and feeds
(on nothing in runtime); session (on all of them).
"""

from __future__ import annotations

from .eps import (
    CPU_PROVIDER,
    EP_REGISTRY,
    EPInfo,
    EPRequest,
    as_requests,
    check_ep_options,
    option_value,
    parse_ep_list,
    parse_ep_option,
    parse_ep_options,
    provider_options,
    resolve_ep,
)
from .feeds import bind_io, keep_outputs, random_feeds
from .ort import CFG_ALLOW_SPINNING, GRAPH_OPT_LEVELS, THREADS_PER_CORE_LIMIT, check_threads, cpu_session, open_cpu_session, ort_log_level, session_options
from .probe import EPStatus, ep_status, onnxruntime_info, plugin_devices, plugin_library, simulated
from .profiling import NodeAssignment, assignment_from_profile, node_assignment, profile_events, summarize_op_events
from .session import SessionInfo, create_session, op_profile

__all__ = [
    "CFG_ALLOW_SPINNING",
    "GRAPH_OPT_LEVELS",
    "CPU_PROVIDER",
    "EP_REGISTRY",
    "EPInfo",
    "EPRequest",
    "EPStatus",
    "NodeAssignment",
    "SessionInfo",
    "THREADS_PER_CORE_LIMIT",
    "as_requests",
    "assignment_from_profile",
    "bind_io",
    "keep_outputs",
    "check_ep_options",
    "check_threads",
    "cpu_session",
    "open_cpu_session",
    "create_session",
    "ep_status",
    "node_assignment",
    "onnxruntime_info",
    "op_profile",
    "option_value",
    "ort_log_level",
    "parse_ep_list",
    "parse_ep_option",
    "parse_ep_options",
    "plugin_devices",
    "plugin_library",
    "profile_events",
    "provider_options",
    "random_feeds",
    "resolve_ep",
    "session_options",
    "simulated",
    "summarize_op_events",
]
