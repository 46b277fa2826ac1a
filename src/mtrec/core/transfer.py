"""Transfer strategies: how a target-domain model starts from the source-domain one and what
training on the target may change.

Parameter transfer (``zero_shot``, ``frozen``, ``finetune``, ``l2sp``) starts from the source
model's weights; instance transfer (``sample_weighted``, ``joint``) starts from random weights
and trains on target rows plus drawn source rows. Each strategy is an object with one job;
``get_strategy`` makes a fresh one per training run (L2-SP keeps the source weights it pulls
towards) and raises on unknown names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch

from mtrec.core.importance import importance_weights
from mtrec.core.multitask import MultiTaskModel

Columns = Mapping[str, torch.Tensor]


class Strategy:
    """Default behaviour: start from every source weight, train everything, no penalty."""

    name = "finetune"
    needs_source = True
    trains = True
    mixes_source_rows = False

    def prepare(self, model: MultiTaskModel, source: MultiTaskModel | None) -> MultiTaskModel:
        """Copy what the source model learned (parameters, BatchNorm statistics) into
        ``model`` (same spec required). The other buffers (the side data) stay the target
        model's own: they describe the data it trains on."""
        if source is None:
            raise ValueError(f"{self.name} needs the pretrained source model")
        # The rating offset is the current data's mean, not a learned weight.
        if replace(source.spec, rating_mean=model.spec.rating_mean) != model.spec:
            raise ValueError(f"source model spec {source.spec} does not match {model.spec}")
        model.load_state_dict(model.state_dict() | source.learned_state())
        return model

    def source_weights(
        self, model: MultiTaskModel, target: Columns, source: Columns, seed: int
    ) -> torch.Tensor:
        """Relative probability of drawing each source row (instance transfer only)."""
        raise NotImplementedError(f"{self.name} trains on target rows only")

    def penalty(self, model: MultiTaskModel) -> torch.Tensor | None:
        """Extra loss added to the task loss while training on the target (none here)."""
        return None


class Finetune(Strategy):
    """Model transfer: start from every source weight, then train all of them on the target."""


class Scratch(Strategy):
    """Baseline: the target model starts from random weights; the source is not used."""

    name = "scratch"
    needs_source = False

    def prepare(self, model: MultiTaskModel, source: MultiTaskModel | None) -> MultiTaskModel:
        return model


class ZeroShot(Strategy):
    """The source model applied to the target as it is: no target training at all."""

    name = "zero_shot"
    trains = False


class Frozen(Strategy):
    """Feature transfer: the shared encoder and shared layers keep their source weights;
    only the task heads, the item-id embeddings and the genre head train on the target."""

    name = "frozen"

    def prepare(self, model: MultiTaskModel, source: MultiTaskModel | None) -> MultiTaskModel:
        model = super().prepare(model, source)
        shared = set(model.shared_parameter_names())
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name not in shared)
        return model


class L2SP(Strategy):
    """Fine-tuning that stays near the source: λ‖θ - θ_source‖² over the transferred weights.

    Li et al., "Explicit Inductive Bias for Transfer Learning with Convolutional Networks",
    ICML 2018.
    """

    name = "l2sp"

    def __init__(self, strength: float) -> None:
        self.strength = strength
        self.anchor: dict[str, torch.Tensor] = {}

    def prepare(self, model: MultiTaskModel, source: MultiTaskModel | None) -> MultiTaskModel:
        model = super().prepare(model, source)
        shared = set(model.shared_parameter_names())
        self.anchor = {n: p.detach().clone() for n, p in model.named_parameters() if n in shared}
        return model

    def penalty(self, model: MultiTaskModel) -> torch.Tensor:
        params = dict(model.named_parameters())
        return self.strength * sum(
            ((params[n] - start.to(params[n].device)) ** 2).sum()
            for n, start in self.anchor.items()
        )


class Joint(Scratch):
    """Multi-domain training: target rows plus uniformly drawn source rows, from scratch."""

    name = "joint"
    mixes_source_rows = True

    def source_weights(
        self, model: MultiTaskModel, target: Columns, source: Columns, seed: int
    ) -> torch.Tensor:
        return torch.ones(len(source["user"]))


def row_features(model: MultiTaskModel, columns: Columns) -> torch.Tensor:
    """What the domain classifier sees of a row: user and item side features (not genres)."""
    encoder = model.encoder
    return torch.cat(
        [encoder.user_features[columns["user"]], encoder.item_features[columns["item"]]], dim=1
    )


class SampleWeighted(Joint):
    """Instance transfer: source rows drawn in proportion to their importance weight
    p_target(x) / p_source(x) from a source-vs-target domain classifier."""

    name = "sample_weighted"

    def __init__(self, clip: float) -> None:
        self.clip = clip

    def source_weights(
        self, model: MultiTaskModel, target: Columns, source: Columns, seed: int
    ) -> torch.Tensor:
        return importance_weights(
            row_features(model, source), row_features(model, target), self.clip, seed
        )


STRATEGIES = ("scratch", "zero_shot", "frozen", "finetune", "l2sp", "sample_weighted", "joint")


def get_strategy(name: str, l2sp_strength: float = 0.0, importance_clip: float = 10.0) -> Strategy:
    """A fresh strategy object for one training run."""
    makers = {
        "scratch": Scratch,
        "zero_shot": ZeroShot,
        "frozen": Frozen,
        "finetune": Finetune,
        "l2sp": lambda: L2SP(l2sp_strength),
        "sample_weighted": lambda: SampleWeighted(importance_clip),
        "joint": Joint,
    }
    try:
        return makers[name]()
    except KeyError:
        raise ValueError(f"unknown transfer strategy {name!r}; known: {list(STRATEGIES)}") from None
