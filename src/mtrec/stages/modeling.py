"""What the training and evaluation stages share: reading processed data, building models,
and the checkpoint layout under ``paths.pretrained`` / ``paths.transferred``."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtrec.config import Params, TrainConfig
from mtrec.core import distributed
from mtrec.core.batches import NegativeResampler
from mtrec.core.evaluation import (
    SampledTask,
    evaluate_popularity,
    evaluate_ranking,
    evaluate_sampled,
)
from mtrec.core.losses import RankingLoss
from mtrec.core.models import build_model as build_architecture
from mtrec.core.models import load_model
from mtrec.core.multitask import SCORE_TASKS, ModelSpec, MultiTaskModel
from mtrec.core.trainer import Monitor
from mtrec.data.embeddings import item_embedding_matrix, item_token_states
from mtrec.data.splitting import TRAIN, VALID
from mtrec.data.tensors import (
    domain_items,
    ranking_task,
    sampled_task,
    side_features,
    user_history,
)
from mtrec.errors import ArtifactError
from mtrec.io import atomic_path, read_json, scratch_path

# A training record's wall-time fields: logged, never in a stage's report, a DVC output that
# must not change from run to run (the bench reads them from the training functions).
TIMING = ("train_seconds", "curve")


@dataclass
class ProcessedData:
    """The preprocess stage's tables, loaded."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    meta: dict
    # The dataset's fixed evaluation candidates of the target test rows, when it ships them.
    candidates: pd.DataFrame | None = None

    def rows(self, domain: str, *splits: str) -> pd.DataFrame:
        """Labelled rows (positives and sampled negatives) of one domain and split(s)."""
        frame = self.interactions
        return frame[(frame["domain"] == domain) & frame["split"].isin(splits)]

    def positives(self, domain: str, *splits: str) -> pd.DataFrame:
        """Observed interactions only (click = 1)."""
        rows = self.rows(domain, *splits)
        return rows[rows["click"] == 1]


def load_processed(params: Params) -> ProcessedData:
    """Read the preprocess stage's output directory."""
    root = Path(params.paths.processed)
    candidates = root / "candidates.parquet"
    try:
        return ProcessedData(
            *(pd.read_parquet(root / f"{n}.parquet") for n in ("interactions", "items", "users")),
            meta=read_json(root / "meta.json"),
            candidates=pd.read_parquet(candidates) if candidates.exists() else None,
        )
    except FileNotFoundError as exc:
        raise ArtifactError(f"{exc.filename}: missing; run the preprocess stage first") from exc


def score_tasks(params: Params) -> tuple[str, ...]:
    """The heads a model gets: click (it ranks) and every score task weighted above 0 in
    pretraining or transfer (one spec for source and target models); ESMM always models like."""
    weighted = {
        task
        for cfg in (params.pretrain, params.transfer.train)
        for task, weight in cfg.task_weights.items()
        if weight
    }
    if params.model.architecture == "esmm":
        weighted.add("like")
    return tuple(t for t in SCORE_TASKS if t == "click" or t in weighted)


def build_model(
    params: Params, data: ProcessedData, seed: int, graph_edges: torch.Tensor | None = None
) -> MultiTaskModel:
    """A freshly initialised model (seeded) with the side features installed. A graph model
    (``graph_layers`` > 0) propagates over the (user, item) pairs ``graph_edges`` [2, E]
    (None = every domain's training positives): a strategy passes the rows it trains on."""
    meta = data.meta
    n_layers = params.model.lm_finetune_layers
    item_lm = (
        item_embedding_matrix(params.paths.embeddings, data.items, meta["n_items"])
        if params.model.item_encoder == "lm" and not n_layers
        else None
    )
    tokens = (
        item_token_states(params.paths.embeddings, data.items, meta["n_items"], n_layers)
        if n_layers
        else None
    )
    torch.manual_seed(seed)
    observed = data.interactions["click"] == 1
    spec = ModelSpec(
        n_users=meta["n_users"],
        n_items=meta["n_items"],
        n_tokens=meta["n_tokens"],
        n_genres=len(meta["genres"]),
        n_user_features=len(meta["user_features"]),
        n_item_features=len(meta["item_features"]),
        max_tokens=meta["max_tokens"],
        embedding_dim=params.model.embedding_dim,
        bottom_dims=tuple(params.model.bottom_dims),
        tower_dims=tuple(params.model.tower_dims),
        dropout=params.model.dropout,
        batch_norm=params.model.batch_norm,
        architecture=params.model.architecture,
        n_experts=params.model.n_experts,
        expert_dims=tuple(params.model.expert_dims),
        levels=params.model.levels,
        text_encoder=params.model.text_encoder,
        text_kernel=params.model.text_kernel,
        dot_product=params.model.dot_product,
        item_tower=params.model.item_tower,
        similarity=params.model.similarity,
        click_mlp=params.model.click_mlp,
        graph_layers=params.model.graph_layers,
        history_length=params.model.history_length if params.model.user_history != "none" else 0,
        history_heads=params.model.history_heads,
        history_layers=params.model.history_layers,
        item_encoder=params.model.item_encoder,
        lm_dim=item_lm.shape[1] if item_lm is not None else tokens.states.shape[2] if tokens else 0,
        lm_layers=n_layers,
        lm_seq_len=tokens.states.shape[1] if tokens else 0,
        lm_heads=tokens.heads if tokens else 0,
        lm_ffn_dim=tokens.ffn_dim if tokens else 0,
        score_tasks=score_tasks(params),
        rating_mean=float(
            data.interactions.loc[observed & (data.interactions["split"] == TRAIN), "rating"].mean()
        ),
    )
    model = build_architecture(spec)
    if tokens is not None:  # the top layers start as the packaged encoder's
        model.encoder.lm_top.load_state_dict(tokens.weights)
    train = data.interactions[(data.interactions["split"] == TRAIN) & observed]
    history = (
        user_history(train, meta["n_users"], spec.history_length) if spec.history_length else None
    )
    if not spec.graph_layers:
        graph_edges = None
    elif graph_edges is None:
        graph_edges = torch.as_tensor(train[["user_idx", "item_idx"]].to_numpy("int64").T.copy())
    model.set_side_features(
        **side_features(data.items, data.users, meta),
        user_history=history,
        item_lm=item_lm,
        item_lm_states=tokens.states if tokens else None,
        item_lm_mask=tokens.mask if tokens else None,
        graph_edges=graph_edges,
    )
    return model


def domain_pools(data: ProcessedData) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Each item's domain index [n_items] and the items of every domain."""
    items = data.items.sort_values("item_idx")
    domains = sorted(items["domain"].unique())
    item_domain = torch.zeros(data.meta["n_items"], dtype=torch.long)
    pools = []
    for index, domain in enumerate(domains):
        members = torch.as_tensor(domain_items(items, domain))
        item_domain[members] = index
        pools.append(members)
    return item_domain, pools


def negatives_refresh(cfg: TrainConfig, data: ProcessedData) -> NegativeResampler | None:
    """Per-epoch negative resampling over each domain's items when ``cfg`` asks for it."""
    return NegativeResampler(*domain_pools(data)) if cfg.resample_negatives else None


def item_counts(rows: pd.DataFrame, n_items: int) -> torch.Tensor:
    """How many of ``rows`` each item has [n_items]."""
    return torch.bincount(
        torch.as_tensor(rows["item_idx"].to_numpy(np.int64, copy=True)), minlength=n_items
    )


def ranking_loss(cfg: TrainConfig, data: ProcessedData) -> RankingLoss | None:
    """The click loss ``cfg.click_loss`` when it ranks (None: pointwise BCE), its sampling
    probabilities from the training clicks of every domain."""
    if cfg.click_loss == "bce":
        return None
    item_domain, pools = domain_pools(data)
    frame = data.interactions
    clicked = frame[(frame["split"] == TRAIN) & (frame["click"] == 1)]
    clicks = item_counts(clicked, data.meta["n_items"]).clamp(min=1)
    return RankingLoss(
        cfg.click_loss,
        cfg.ranking_negatives,
        item_domain,
        torch.tensor([len(p) for p in pools]),
        clicks / clicks.sum(),
        cfg.temperature,
        cfg.logq_correction,
        cfg.ccl_margin,
        cfg.ccl_negative_weight,
    )


def valid_monitor(
    params: Params, cfg: TrainConfig, data: ProcessedData, domain: str
) -> Monitor | None:
    """With ``cfg.early_stopping: ndcg``: NDCG@K of the domain's valid positives, each against
    ``cfg.valid_negatives`` unseen items of the domain (drawn once, seeded), or with 0 against
    every item of the domain (full ranking, train items masked: RecBole's validation). Its
    floor is the same score of popularity (training clicks), which a model must beat before
    early stopping may end its run."""
    if cfg.early_stopping != "ndcg":
        return None
    seen, relevant = data.positives(domain, TRAIN), data.positives(domain, VALID)
    candidates = domain_items(data.items, domain)
    k, block = params.eval.k, params.eval.user_block
    clicks = item_counts(seen, data.meta["n_items"]).double()
    if cfg.valid_negatives == 0:
        full = ranking_task(seen, relevant, candidates)
        floor = evaluate_popularity(clicks[full.candidates], full, k, block)[f"ndcg@{k}"]

        @torch.no_grad()
        def score_all(model: MultiTaskModel) -> float:
            items = full.candidates.to(model.item_genres.device)
            model.eval()
            ranked = evaluate_ranking(
                lambda users: model.score_matrix(users.to(items.device), items).cpu(),
                full,
                k,
                block,
            )
            return ranked[f"ndcg@{k}"]

        return Monitor(score_all, floor)
    rng = np.random.default_rng(params.preprocess.seed)
    setting = "pretrain.valid_negatives or transfer.train.valid_negatives"
    task = sampled_task(seen, relevant, candidates, cfg.valid_negatives, rng, setting)
    metric = f"sampled_ndcg@{k}"
    floor = evaluate_sampled(lambda _, items: clicks[items], task, k)[metric]

    def score(model: MultiTaskModel) -> float:
        device = model.item_genres.device
        on_device = SampledTask(task.users.to(device), task.items.to(device))
        model.eval()
        return evaluate_sampled(model.click_rows, on_device, k)[metric]

    return Monitor(score, floor)


def output_path(target: str | Path) -> AbstractContextManager[Path]:
    """Where a training stage writes ``target``: published atomically by rank 0, discarded
    on the other data-parallel ranks (they hold the same weights)."""
    return atomic_path(target) if distributed.current().main else scratch_path(target)


def pretrained_path(params: Params, seed: int) -> Path:
    """Source-domain checkpoint for one seed."""
    return Path(params.paths.pretrained) / f"seed{seed}.pt"


def transferred_path(params: Params, strategy: str, seed: int) -> Path:
    """Target-domain checkpoint for one strategy and seed."""
    return Path(params.paths.transferred) / strategy / f"seed{seed}.pt"


def load_checkpoint(path: Path) -> MultiTaskModel:
    """Load a checkpoint, saying which stage should have produced a missing one."""
    if not path.exists():
        raise ArtifactError(f"{path}: checkpoint missing; run the stage that writes it first")
    return load_model(path)
