"""The main job: train a small MoE Transformer language model through fmoe.compile.

A character-level language model (4 layers, d_model 256, 8 experts, top-2)
learns the text that ships with this repository (its docs and sources). Every
MoE layer runs compiled: fmoe.compile hands back a model whose MoE layers go
through the fmoe compiler and runtime, forward and backward. On a machine
with a GPU it trains there; otherwise on the CPU.

    python3 examples/train_lm.py [--steps 300] [--out build/demo]

It prints a progress bar (loss, tokens/s), then sampled text, and writes the
loss curve to <out>/loss.png.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
import fmoe  # noqa: E402


def corpus() -> str:
    """The repository's own prose and code: docs, README, Python and C++."""
    files = sorted(ROOT.glob("docs/*.md")) + [ROOT / "README.md"]
    files += sorted((ROOT / "python" / "fmoe").glob("*.py")) + sorted((ROOT / "lib").rglob("*.cpp"))
    text = "\n".join(p.read_text(errors="replace") for p in files if p.is_file())
    return "".join(c for c in text if c == "\n" or 32 <= ord(c) < 127)


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int, experts: int, top_k: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d_model)
        self.moe = fmoe.FMoETransformerMLP(
            num_expert=experts, d_model=d_model, d_hidden=2 * d_model, top_k=top_k,
            activation=nn.GELU(),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.moe(self.ln2(x))


class MoELM(nn.Module):
    def __init__(self, vocab: int, d_model=256, layers=4, heads=4, experts=8, top_k=2, context=128):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.zeros(context, d_model))
        self.blocks = nn.ModuleList(Block(d_model, heads, experts, top_k) for _ in range(layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)
        self.context = context

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=idx.device), 1)
        x = self.embed(idx) + self.pos[:t]
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln(x))


def progress(step: int, total: int, loss: float, tps: float) -> None:
    width = 30
    done = int(width * step / total)
    bar = "#" * done + "." * (width - done)
    print(f"\r[{bar}] step {step}/{total}  loss {loss:.3f}  {tps:,.0f} tokens/s", end="", flush=True)


@torch.no_grad()
def sample(model: nn.Module, stoi: dict, itos: list, prompt: str, n: int, device) -> str:
    idx = torch.tensor([[stoi.get(c, 0) for c in prompt]], device=device)
    for _ in range(n):
        logits = model(idx[:, -model.context :])[:, -1] / 0.8
        nxt = torch.multinomial(F.softmax(logits.float(), -1), 1)
        idx = torch.cat([idx, nxt], 1)
    return "".join(itos[i] for i in idx[0].tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "demo")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)

    text = corpus()
    itos = sorted(set(text))
    stoi = {c: i for i, c in enumerate(itos)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    split = int(0.95 * len(data))
    train, val = data[:split], data[split:]
    print(f"corpus: {len(text):,} characters, vocabulary {len(itos)}; device {device}")

    model = MoELM(len(itos), context=args.context).to(device)
    compiled = fmoe.compile(model)  # every MoE layer now runs through fmoe
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, {len(model.blocks)} MoE layers compiled")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / args.steps))
    )

    def batch(src: torch.Tensor):
        starts = torch.randint(0, len(src) - args.context - 1, (args.batch,))
        x = torch.stack([src[s : s + args.context] for s in starts])
        y = torch.stack([src[s + 1 : s + args.context + 1] for s in starts])
        return x.to(device), y.to(device)

    losses = []
    start = time.time()
    tokens = 0
    for step in range(1, args.steps + 1):
        x, y = batch(train)
        loss = F.cross_entropy(compiled(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        tokens += x.numel()
        progress(step, args.steps, sum(losses[-10:]) / len(losses[-10:]), tokens / (time.time() - start))
    print()
    with torch.no_grad():
        vx, vy = batch(val)
        val_loss = F.cross_entropy(compiled(vx).flatten(0, 1), vy.flatten()).item()
    print(f"loss: first 10 steps {sum(losses[:10]) / 10:.3f} -> last 10 steps "
          f"{sum(losses[-10:]) / 10:.3f}; held-out {val_loss:.3f}")
    print("sample:\n" + sample(compiled, stoi, itos, "The compiler ", 300, device))

    args.out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(range(1, len(losses) + 1), losses, lw=0.8, label="train loss (per step)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.set_title(f"fmoe: {len(model.blocks)}-layer MoE LM, 8 experts top-2, compiled ({device.type})")
    ax.legend()
    fig.tight_layout()
    png = args.out / "loss.png"
    fig.savefig(png, dpi=120)
    print(f"loss curve: {png}")


if __name__ == "__main__":
    main()
