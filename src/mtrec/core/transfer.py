"""Transfer strategies: how a target-domain model starts from the source-domain one.

Each strategy is an object with one job (prepare the target model); unknown names raise.
"""

from __future__ import annotations

from mtrec.core.multitask import MultiTaskModel


class Scratch:
    """Baseline: the target model starts from random weights; the source is not used."""

    name = "scratch"
    needs_source = False

    def prepare(self, model: MultiTaskModel, source: MultiTaskModel | None) -> MultiTaskModel:
        return model


class Finetune:
    """Model transfer: start from every source weight, then train all of them on the target."""

    name = "finetune"
    needs_source = True

    def prepare(self, model: MultiTaskModel, source: MultiTaskModel | None) -> MultiTaskModel:
        if source is None:
            raise ValueError("finetune needs the pretrained source model")
        if source.spec != model.spec:
            raise ValueError(f"source model spec {source.spec} does not match {model.spec}")
        model.load_state_dict(source.state_dict())
        return model


STRATEGIES = {s.name: s for s in (Scratch(), Finetune())}


def get_strategy(name: str) -> Scratch | Finetune:
    """Look a strategy up by name."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown transfer strategy {name!r}; known: {sorted(STRATEGIES)}"
        ) from None
