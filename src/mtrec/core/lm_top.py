"""The sentence encoder's top transformer layers as trainable parameters of the item tower.

With ``model.lm_finetune_layers`` N > 0, stage ``embed_items`` caches each item's token states
entering layer L - N of all-MiniLM-L6-v2 (L = 6) and their attention mask; :class:`LMTop` is a
copy of the last N BERT layers, initialised from the packaged weights, followed by the rest of
the model's sentence-transformers pipeline (modules.json: Transformer -> Pooling, mean over the
mask -> Normalize). With its weights untouched it reproduces the frozen sentence embedding (up
to the cached states' float16 and truncation); training moves it. Plain torch, so training and
serving never import transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-12  # BERT's
# Items encoded at once when no gradient is kept (full-catalogue scoring): bounds the
# [items, tokens, ffn_dim] activations whatever the catalogue size.
ITEMS_PER_CHUNK = 512
# Hugging Face BertLayer parameter prefix -> this module's name for it.
BERT_NAMES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attention_out",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_norm",
}


class BertBlock(nn.Module):
    """One post-LayerNorm BERT encoder layer (self-attention, then a GELU feed-forward), run
    on the real tokens only: padding costs nothing outside the attention itself."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} must be divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.attention_out = nn.Linear(dim, dim)
        self.attention_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.intermediate = nn.Linear(dim, ffn_dim)
        self.output = nn.Linear(ffn_dim, dim)
        self.output_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, index: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        """Packed token states [tokens, dim], their positions in the flattened [n, T] grid
        [tokens] and which keys each item attends [n, 1, 1, T] (bool) -> [tokens, dim]."""
        n, t, dim = attend.shape[0], attend.shape[-1], x.shape[-1]
        p = self.dropout if self.training else 0.0
        qkv = torch.cat([self.query(x), self.key(x), self.value(x)], dim=-1)
        grid = qkv.new_zeros(n * t, 3 * dim).index_copy(0, index, qkv)
        q, k, v = (h.transpose(1, 2) for h in grid.view(n, t, 3 * self.heads, -1).chunk(3, 2))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=p)
        context = context.transpose(1, 2).reshape(n * t, dim)[index]
        x = self.attention_norm(x + F.dropout(self.attention_out(context), p, self.training))
        hidden = F.gelu(self.intermediate(x))  # exact (erf) GELU, BERT's "gelu"
        return self.output_norm(x + F.dropout(self.output(hidden), p, self.training))


class LMTop(nn.Module):
    """N BERT layers over cached token states, mean-pooled over the mask, L2-normalised."""

    def __init__(self, n_layers: int, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            BertBlock(dim, heads, ffn_dim, dropout) for _ in range(n_layers)
        )

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[n, T, dim] token states (any float dtype) and [n, T] bool mask -> [n, dim]."""
        if not torch.is_grad_enabled() and len(states) > ITEMS_PER_CHUNK:
            return torch.cat(
                [
                    self.forward(s, m)
                    for s, m in zip(
                        states.split(ITEMS_PER_CHUNK), mask.split(ITEMS_PER_CHUNK), strict=True
                    )
                ]
            )
        n, t, dim = states.shape
        index = mask.reshape(-1).nonzero().squeeze(1)  # the real tokens, item-major
        dtype = self.layers[0].query.weight.dtype if self.layers else torch.float32
        x = states.reshape(n * t, dim)[index].to(dtype)
        # A row without tokens (the unknown item 0) attends everywhere (softmax over nothing is
        # NaN) and pools to the zero vector, as its frozen embedding is zero.
        attend = (mask | ~mask.any(-1, keepdim=True))[:, None, None, :]
        for layer in self.layers:
            x = layer(x, index, attend)
        counts = mask.sum(-1, keepdim=True).clamp(min=1).to(x.dtype)
        pooled = x.new_zeros(n, dim).index_add(0, index // t, x) / counts
        return F.normalize(pooled, p=2.0, dim=-1)


def from_bert_layers(layers: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Hugging Face BertLayer state dicts (bottom first) -> an :class:`LMTop` state dict."""
    state = {}
    for index, layer in enumerate(layers):
        for name, tensor in layer.items():
            prefix, _, kind = name.rpartition(".")
            if prefix not in BERT_NAMES:
                raise ValueError(f"unexpected BertLayer parameter {name!r}")
            state[f"layers.{index}.{BERT_NAMES[prefix]}.{kind}"] = tensor.detach().clone()
    return state
