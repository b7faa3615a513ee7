"""A GPT in the nanoGPT mould: token + learned position embeddings, pre-norm blocks, causal
attention through `scaled_dot_product_attention`, a head tied to the token embedding, and a
KV cache for sampling.

In: token ids (B, T) with T <= block_size. Out: logits (B, T, vocab) and, given targets, the
mean cross-entropy. Size: the `tiny` preset with vocab 4096 has 0.92M parameters; a training
step of 8x128 tokens takes ~0.1 s on this machine's 2 shared CPU cores (~0.3 s at vocab 32768).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 256  # longest context
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0

    def __post_init__(self):
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd {self.n_embd} must be a multiple of n_head {self.n_head}")


class KVCache:
    """Keys and values per layer, (B, nh, T, hs) each, grown one step at a time while sampling."""

    def __init__(self, n_layer: int):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer

    @property
    def length(self) -> int:
        return 0 if self.k[0] is None else self.k[0].size(2)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.n_head, self.layer, self.dropout = cfg.n_head, layer, cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:
            if cache.k[self.layer] is not None:
                if T != 1:
                    raise ValueError("with a filled cache, feed one token at a time")
                k = torch.cat([cache.k[self.layer], k], dim=2)
                v = torch.cat([cache.v[self.layer], v], dim=2)
            cache.k[self.layer], cache.v[self.layer] = k, v
        # T == k's length: a fresh sequence, causal mask. T == 1 after a prefill: attend to all.
        # `mask` (B, 1, T, T), True = may attend: packed conversations that do not see each other.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and T == k.size(2) and T > 1,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), cache, mask))
        return x + self.drop(self.mlp(self.ln2(x)))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=False)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one (vocab, C) matrix
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # residual projections: GPT-2's 1/sqrt(2 * layers)
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters()) - self.wpe.weight.numel()

    def features(self, idx: torch.Tensor, cache: KVCache | None = None,
                 segments: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids (B, T) → the last block's normed output (B, T, C): what the head (or a reward head) reads.
        `segments` (B, T): packed sequences numbered within each row; each starts at position 0 and
        attends only to itself (SFT packs whole conversations this way)."""
        B, T = idx.shape
        pos0 = cache.length if cache is not None else 0
        if pos0 + T > self.cfg.block_size:
            raise ValueError(f"sequence of {pos0 + T} > block_size {self.cfg.block_size}")
        pos = torch.arange(pos0, pos0 + T, device=idx.device)
        mask = None
        if segments is not None:
            ar = pos.expand(B, T)
            new_seg = torch.ones_like(segments, dtype=torch.bool)
            new_seg[:, 1:] = segments[:, 1:] != segments[:, :-1]
            pos = ar - torch.cummax(torch.where(new_seg, ar, 0), dim=1).values  # (B, T) position within its segment
            same = segments.unsqueeze(2) == segments.unsqueeze(1)  # (B, T, T)
            mask = (same & torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()).unsqueeze(1)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        for block in self.blocks:
            x = block(x, cache, mask)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None):
        x = self.features(idx, cache)
        if targets is None:
            return self.lm_head(x[:, -1:, :]), None  # sampling needs only the last position
        logits = self.lm_head(x)  # (B, T, vocab)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def grow_vocab(self, vocab_size: int) -> None:
        """Append rows to the (tied) embedding for new tokens, e.g. the chat tokens; old rows unchanged."""
        old = self.wte.weight.data
        if vocab_size < old.size(0):
            raise ValueError(f"cannot shrink the vocabulary from {old.size(0)} to {vocab_size}")
        new = torch.empty(vocab_size, old.size(1), device=old.device, dtype=old.dtype)
        new[: old.size(0)] = old
        nn.init.normal_(new[old.size(0):], 0.0, 0.02)
        self.wte = nn.Embedding(vocab_size, old.size(1), device=old.device, dtype=old.dtype)
        self.wte.weight.data = new
        self.lm_head = nn.Linear(old.size(1), vocab_size, bias=False, device=old.device, dtype=old.dtype)
        self.lm_head.weight = self.wte.weight
        self.cfg.vocab_size = vocab_size

    def configure_optimizer(self, lr: float, weight_decay: float, device_type: str) -> torch.optim.AdamW:
        """AdamW; weight decay on matrices (2-D), not on norms. Fused kernels on CUDA."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=device_type == "cuda")
