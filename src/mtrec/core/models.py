"""The architectures by name: build one from a spec, or load a checkpoint of any of them."""

from __future__ import annotations

from pathlib import Path

import torch

from mtrec.core.esmm import ESMM
from mtrec.core.independent import IndependentTowers
from mtrec.core.mmoe import MMoE
from mtrec.core.multitask import ModelSpec, MultiTaskModel, spec_from_dict
from mtrec.core.ple import PLE
from mtrec.core.shared_bottom import SharedBottom

ARCHITECTURES: dict[str, type[MultiTaskModel]] = {
    "independent": IndependentTowers,
    "shared_bottom": SharedBottom,
    "mmoe": MMoE,
    "ple": PLE,
    "esmm": ESMM,
}


def build_model(spec: ModelSpec) -> MultiTaskModel:
    """A freshly initialised model of ``spec.architecture``."""
    try:
        cls = ARCHITECTURES[spec.architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture {spec.architecture!r}; known: {sorted(ARCHITECTURES)}"
        ) from None
    return cls(spec)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> MultiTaskModel:
    """Rebuild any model saved with :meth:`MultiTaskModel.save`."""
    blob = torch.load(path, map_location=map_location, weights_only=True)
    model = build_model(spec_from_dict(blob["spec"]))
    model.load_state_dict(blob["state"])
    return model
