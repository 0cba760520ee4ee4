"""Names and labels of what the plugin makes on the host.

Every vcluster gets a namespace of its own, labelled with the run id, worker, slot and spec
hash, so that a reaper can find leftovers and a later run can resume a paused cluster of the
same spec.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

__all__ = [
    "ANNOTATION_PARKED_AT",
    "ANNOTATION_TEST",
    "ANNOTATION_TESTS_BEFORE",
    "LABEL_MANAGED",
    "LABEL_NAME",
    "LABEL_RUN_ID",
    "LABEL_SLOT",
    "LABEL_SPEC_HASH",
    "LABEL_STATE",
    "LABEL_WORKER",
    "PRESERVED_STATES",
    "WARM_STATE",
    "control_plane_selector",
    "is_control_plane",
    "label_value",
    "run_selector",
    "short_hash",
    "slot_label",
    "vcluster_name",
]

LABEL_MANAGED = "pytest-vcluster/managed"
LABEL_RUN_ID = "pytest-vcluster/run-id"
LABEL_WORKER = "pytest-vcluster/worker"
LABEL_SPEC_HASH = "pytest-vcluster/spec-hash"
LABEL_SLOT = "pytest-vcluster/slot"
LABEL_NAME = "pytest-vcluster/name"
#: ``active`` while a run uses the cluster; ``paused`` or ``kept`` once a teardown left it on
#: the host on purpose (a reaper lists those and removes them only when asked); ``warm`` once
#: a run parked it, reset and proven clean, for a later run to adopt (see
#: :mod:`~pytest_vcluster.host.warm`).
LABEL_STATE = "pytest-vcluster/state"
PRESERVED_STATES = ("paused", "kept")
WARM_STATE = "warm"
ANNOTATION_TEST = "pytest-vcluster/test"
#: When a warm cluster was parked, by the host's clock (ISO 8601).
ANNOTATION_PARKED_AT = "pytest-vcluster/parked-at"
#: How many tests a warm cluster served before it was parked.
ANNOTATION_TESTS_BEFORE = "pytest-vcluster/tests-before"

_MAX_NAME = 40


def short_hash(text: str, length: int = 10) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def vcluster_name(label: str, key: str) -> str:
    """A DNS-1123 label of at most 40 characters: ``pv-<readable part>-<hash of key>``.

    ``label`` is for people (the test name); ``key`` makes it unique (run, worker, slot).
    """
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    suffix = short_hash(key)
    room = _MAX_NAME - len("pv-") - len(suffix) - 1
    slug = slug[:room].strip("-")
    return f"pv-{slug}-{suffix}" if slug else f"pv-{suffix}"


def label_value(text: str) -> str:
    """``text`` made valid as a label value (63 characters, alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    return value or "none"


def slot_label(slot: str) -> str:
    """The label value of a slot (slots are node ids: too long and free-form for a label)."""
    return short_hash(slot, 16)


#: The chart's labels on a vcluster's control-plane pods and workload (``release`` is its name).
_CONTROL_PLANE_APP = "vcluster"


def control_plane_selector(name: str) -> str:
    """The label selector of a vcluster's control-plane pods and workload."""
    return f"app={_CONTROL_PLANE_APP},release={name}"


def is_control_plane(labels: Mapping[str, str], name: str) -> bool:
    """True for the labels :func:`control_plane_selector` selects."""
    return labels.get("app") == _CONTROL_PLANE_APP and labels.get("release") == name


def run_selector(run_id: str, worker: str) -> str:
    """The label selector of the namespaces one run's process (xdist worker) made."""
    return (
        f"{LABEL_MANAGED}=true,{LABEL_RUN_ID}={label_value(run_id)},"
        f"{LABEL_WORKER}={label_value(worker)}"
    )
