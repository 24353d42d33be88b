#!/usr/bin/env python
"""A character-level GPT trained with the published nanoGPT CPU recipe: the peer of `bench/quality_bench.py`.

Written from scratch in plain torch (no mie_lm import), following the recipe's settings: 4 layers, 4 heads,
width 128, context 64 characters, batch 12, no dropout, no biases, tied input/output embeddings, AdamW with
lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on matrices only, gradient clipping at 1.0, 100 linear warmup
steps, then cosine decay to 1e-4. Given a wall-clock budget (`--max-time`), the cosine is planned over that
time (the recipe plans it over `--max-iters`, 2000, which a one-core run at 300 s would outrun).

Usage: python bench/char_baseline.py --train TRAIN.txt --valid HELD_OUT.txt --max-time 60 [--out result.json]
The held-out file is scored as one stream (`stream_nats`) and reported in bits per byte of UTF-8.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Recipe:
    "The nanoGPT character-level CPU recipe (README, 'I only have a macbook')."
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64  # characters of context
    batch_size: int = 12
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    max_iters: int = 2000  # used only without a time budget
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 0.1
    grad_clip: float = 1.0


class Block(nn.Module):
    "Pre-LayerNorm transformer block: causal self-attention then a 4x GELU MLP, no biases."
    def __init__(self, r: Recipe):
        super().__init__()
        self.n_head = r.n_head
        self.ln1, self.ln2 = nn.LayerNorm(r.n_embd, bias=False), nn.LayerNorm(r.n_embd, bias=False)
        self.qkv, self.proj = nn.Linear(r.n_embd, 3 * r.n_embd, bias=False), nn.Linear(r.n_embd, r.n_embd, bias=False)
        self.fc, self.out = nn.Linear(r.n_embd, 4 * r.n_embd, bias=False), nn.Linear(4 * r.n_embd, r.n_embd, bias=False)

    def forward(self, x):  # (B, T, C)
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CharGPT(nn.Module):
    "Token and position embeddings, `n_layer` blocks, a final LayerNorm and a head tied to the token embedding."
    def __init__(self, r: Recipe, vocab_size: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, r.n_embd), nn.Embedding(r.block_size, r.n_embd)
        self.blocks = nn.ModuleList(Block(r) for _ in range(r.n_layer))
        self.ln_f = nn.LayerNorm(r.n_embd, bias=False)
        self.head = nn.Linear(r.n_embd, vocab_size, bias=False)
        self.head.weight = self.wte.weight  # weight tying
        for name, p in self.named_parameters():
            if p.dim() == 2: nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * r.n_layer) if name.endswith(("proj.weight", "out.weight")) else 0.02)

    def forward(self, idx):  # (B, T) -> (B, T, V)
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in self.blocks: x = b(x)
        return self.head(self.ln_f(x))


def lr_at(r: Recipe, step: int, progress: float) -> float:
    "Linear warmup over `warmup_steps`, then cosine from `lr` to `min_lr` as `progress` goes 0 -> 1."
    if step < r.warmup_steps: return r.lr * (step + 1) / r.warmup_steps
    return r.min_lr + 0.5 * (r.lr - r.min_lr) * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def train(r: Recipe, data: np.ndarray, vocab_size: int, max_time: float | None, seed: int = 0) -> tuple[CharGPT, dict]:
    "Train a `CharGPT` on the id array `data` for `max_time` seconds (or `r.max_iters` steps); return it and stats."
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = CharGPT(r, vocab_size)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=r.lr, betas=(r.beta1, r.beta2))
    t0, step, warm_end = time.perf_counter(), 0, None
    while True:
        elapsed = time.perf_counter() - t0
        if (max_time is not None and elapsed >= max_time) or (max_time is None and step >= r.max_iters): break
        if step == r.warmup_steps: warm_end = elapsed
        if max_time is None: progress = (step - r.warmup_steps) / max(1, r.max_iters - r.warmup_steps)
        else: progress = 0.0 if warm_end is None else (elapsed - warm_end) / max(1e-9, max_time - warm_end)
        for g in opt.param_groups: g["lr"] = lr_at(r, step, progress)
        ix = rng.integers(0, len(data) - r.block_size - 1, r.batch_size)
        xy = torch.from_numpy(np.stack([data[i:i + r.block_size + 1] for i in ix]).astype(np.int64))  # (B, T+1)
        loss = F.cross_entropy(model(xy[:, :-1]).flatten(0, 1), xy[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
        opt.step()
        step += 1
    secs = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()  # nanoGPT counts without wpe
    return model, dict(steps=step, train_seconds=secs, tokens_seen=step * r.batch_size * r.block_size,
                       last_train_loss=float(loss.detach()), params=n_params)


@torch.no_grad()
def stream_nats(logits_fn, ids: list[int], block: int, stride: int | None = None, batch: int = 32) -> tuple[float, int]:
    "Total next-token nats of `ids[1:]` scored as one stream by sliding windows of `block` (each token once)."
    stride = stride or max(1, block // 2)
    ids_t = torch.tensor(ids, dtype=torch.long)
    n = len(ids) - 1  # predictions
    starts = list(range(0, max(n - block, 0) + 1, stride))
    if starts[-1] + block < n: starts.append(n - block)
    total, scored_to = 0.0, 0  # targets 1..scored_to are done
    for k in range(0, len(starts), batch):
        group = starts[k:k + batch]
        T = min(block, n)
        x = torch.stack([ids_t[s:s + T] for s in group])  # (B, T)
        y = torch.stack([ids_t[s + 1:s + T + 1] for s in group])
        nll = F.cross_entropy(logits_fn(x).float().flatten(0, 1), y.flatten(), reduction="none").view(len(group), T)
        for row, s in enumerate(group):
            first = max(scored_to - s, 0)  # targets before `scored_to` were scored by an earlier window
            total += float(nll[row, first:].sum()); scored_to = s + T
    return total, n


def char_vocab(text: str) -> dict[str, int]:
    "Character -> id for every character of `text`, in sorted order (nanoGPT's `prepare.py`)."
    return {ch: i for i, ch in enumerate(sorted(set(text)))}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="training text file")
    p.add_argument("--valid", required=True, help="held-out text file, scored as one stream")
    p.add_argument("--max-time", type=float, default=None, help="training budget in seconds (default: the recipe's 2000 steps)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the result as JSON here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    train_text, valid_text = (Path(f).read_text(encoding="utf-8") for f in (a.train, a.valid))
    stoi = char_vocab(train_text + valid_text)  # nanoGPT builds the vocabulary from the whole file
    r = Recipe()
    model, stats = train(r, np.array([stoi[c] for c in train_text], dtype=np.int16), len(stoi), a.max_time, a.seed)
    model.eval()
    nats, n = stream_nats(model, [stoi[c] for c in valid_text], r.block_size)
    nats += math.log(len(stoi))  # the first character has no context: charge it a uniform guess
    n_bytes = len(valid_text.encode("utf-8"))
    res = dict(model="char-level nanoGPT recipe", recipe=asdict(r), vocab_size=len(stoi), **stats,
               valid_chars=len(valid_text), valid_bytes=n_bytes, bits_per_byte=nats / math.log(2) / n_bytes,
               bits_per_char=nats / math.log(2) / len(valid_text), wall_seconds=time.perf_counter() - t_start,
               threads=torch.get_num_threads())
    print(json.dumps(res))
    if a.out: Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
