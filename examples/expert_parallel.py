"""Expert parallelism with torchrun: each rank holds `num_expert` experts of
`num_expert × world_size`, tokens travel to their experts by all-to-all.

    torchrun --nproc-per-node 4 examples/expert_parallel.py
    # across nodes (on every node, with its own --node-rank):
    torchrun --nnodes 2 --nproc-per-node 4 --node-rank 0 \\
        --rdzv-backend c10d --rdzv-endpoint HOST:29500 examples/expert_parallel.py

On CPU ranks the exchange runs over gloo; with a GPU per rank, pass --cuda
(NCCL). --shadow=0,3 replicates those experts on every rank (FasterMoE's
shadowing, compiled in: their tokens are computed where they are routed).
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
import fmoe  # noqa: E402


def main() -> None:
    cuda = "--cuda" in sys.argv
    shadow = [int(e) for a in sys.argv if a.startswith("--shadow=") for e in a[len("--shadow="):].split(",")]
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", rank % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 64),
        fmoe.FMoETransformerMLP(num_expert=2, d_model=64, d_hidden=128, top_k=2, world_size=world),
    ).to(device)
    # Experts stay per rank; the gate and the dense layer are averaged.
    ddp = fmoe.DistributedGroupedDataParallel(model, auto_allreduce=True)
    compiled = fmoe.compile(model, placement="contiguous", shadow=shadow or None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(1 + rank)
    for step in range(20):
        x = torch.randn(32, 64, device=device)
        loss = (compiled(x) - x).square().mean()
        opt.zero_grad()
        loss.backward()  # gradients of shared parameters reduced during backward
        opt.step()
        if rank == 0 and step % 5 == 0:
            shadowed = f", experts {shadow} on every rank" if shadow else ""
            print(f"step {step}: loss {loss.item():.4f} ({2 * world} experts over {world} ranks{shadowed})")
    ddp.remove_hooks()  # before the group goes away
    dist.barrier()  # every rank done with its collectives before any leaves
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
