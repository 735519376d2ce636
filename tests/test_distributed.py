"""Expert parallelism on CPU ranks (gloo): 2 and 4 processes, each holding
num_expert experts of num_expert × world_size; the expert-parallel compiled
layer's output and every gradient must equal a single-process layer that
holds all experts, for every placement strategy. Relative tolerance 1e-5
(fp32)."""

import contextlib
import copy
import os
import socket
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fmoe

D_MODEL, D_HIDDEN, LOCAL = 16, 24, 2
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_rank(rank, world, port, backend="gloo", timeout=60):
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=timedelta(seconds=timeout),
    )


@contextlib.contextmanager
def rank_process():
    """The body of a spawned rank: a failure is printed and ends the process
    with status 1; on success every rank finishes its collectives before any
    tears the group down."""
    try:
        yield
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        os._exit(1)


def run_ranks(fn, world, *args):
    """Spawns `world` ranks running fn(rank, world, port, *args)."""
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent / "python")])
    mp.spawn(fn, args=(world, free_port(), *args), nprocs=world, join=True)


def rel_err(a, ref):
    return (a.double() - ref.double()).abs().max().item() / max(ref.abs().max().item(), 1e-6)


def placement(world, strategy, load=None):
    """The rank of every expert, as the compiler's placement pass decides it."""
    total = LOCAL * world
    if strategy == "contiguous":
        return [e // LOCAL for e in range(total)]
    if strategy == "round-robin":
        return [e % world for e in range(total)]
    # balanced: heaviest first onto the least-loaded rank with room.
    rank_of, rank_load, held = [0] * total, [0.0] * world, [0] * world
    for e in sorted(range(total), key=lambda e: -load[e]):
        best = min((r for r in range(world) if held[r] < LOCAL), key=lambda r: rank_load[r])
        rank_of[e] = best
        rank_load[best] += load[e]
        held[best] += 1
    return rank_of


def hottest(load, n):
    """The n most loaded experts, heaviest first, ties to the lower id."""
    return sorted(range(len(load)), key=lambda e: (-load[e], e))[:n]


def load_rank_experts(ep, ref, mine):
    """Gives the expert-parallel layer `ep` the gate of the full layer `ref`
    and the experts `mine` (indices or a slice) of it."""
    with torch.no_grad():
        ep.gate.gate.weight.copy_(ref.gate.gate.weight)
        ep.gate.gate.bias.copy_(ref.gate.gate.bias)
        for lin in ("htoh4", "h4toh"):
            for p in ("weight", "bias"):
                getattr(getattr(ep.experts, lin), p).copy_(getattr(getattr(ref.experts, lin), p)[mine])


def _worker(rank, world, port, strategy, cache, top_k, fail, device="cpu", counts=None, shadow=None):
    os.environ["FMOE_CACHE_DIR"] = cache
    with rank_process():
        if device == "cuda":
            torch.cuda.set_device(rank)
        init_rank(rank, world, port, "nccl" if device == "cuda" else "gloo")
        total = LOCAL * world
        torch.manual_seed(0)  # the same full layer on every rank
        ref = fmoe.FMoETransformerMLP(num_expert=total, d_model=D_MODEL, d_hidden=D_HIDDEN, top_k=2)
        with torch.no_grad():
            for n, p in ref.named_parameters():
                if n.endswith("bias"):
                    p.normal_(0, 0.1)
        load = None
        options = {"placement": strategy}
        if strategy == "balanced" or isinstance(shadow, int):
            # The same measured profile on every rank: routing of a fixed batch.
            sample = torch.randn(64, D_MODEL, generator=torch.Generator().manual_seed(9))
            profile = fmoe.record_load(ref, [sample.to(device)])
            load = profile[""]
            options["load_profile"] = profile
            assert sum(load) == 64 * 2 and len(load) == total
        if shadow is not None:
            options["shadow"] = shadow
            # Balanced placement counts a shadowed expert's load as spread.
            hot = hottest(load, shadow) if isinstance(shadow, int) else shadow
            load = load and [0.0 if e in hot else v for e, v in enumerate(load)]
        rank_of = placement(world, strategy, load)
        mine = [e for e in range(total) if rank_of[e] == rank]
        k = top_k[rank] if isinstance(top_k, list) else 2
        ep = fmoe.FMoETransformerMLP(
            num_expert=LOCAL, d_model=D_MODEL, d_hidden=D_HIDDEN, top_k=k, world_size=world
        )
        load_rank_experts(ep, ref, mine)
        if device == "cuda":
            ref, ep = ref.cuda(), ep.cuda()
        try:
            compiled = fmoe.compile(ep, **options)
        except fmoe.CompileError as e:
            if fail == "mismatch" and "compiled different modules" in str(e):
                return
            raise
        assert fail != "mismatch", "mismatched ranks were not detected"
        if shadow is not None:
            # The module really replicates (an unshadowed layer would give
            # the same numbers).
            (info,) = compiled._fmoe_modules.values()
            assert b"fmoe_rt_replicate" in info.path.read_bytes(), "shadowing was dropped"
        torch.manual_seed(100 + rank)  # each rank feeds its own tokens
        tokens = counts[rank] if counts else 5 + 3 * rank
        x = torch.randn(tokens, D_MODEL).to(device).requires_grad_()
        g = torch.randn(tokens, D_MODEL).to(device)
        y = compiled(x)
        x_ref = x.detach().clone().requires_grad_()
        y_ref = ref(x_ref)
        assert rel_err(y, y_ref) <= 1e-5, f"rank {rank} output: {rel_err(y, y_ref)}"
        ep_params = dict(ep.named_parameters())
        grads = torch.autograd.grad(y, [x, *ep_params.values()], g)
        ref_params = dict(ref.named_parameters())
        grads_ref = torch.autograd.grad(y_ref, [x_ref, *ref_params.values()], g)
        got = dict(zip(["input", *ep_params], grads))
        want = dict(zip(["input", *ref_params], grads_ref))
        assert rel_err(got["input"], want["input"]) <= 1e-5, f"rank {rank} input grad"
        for n in ref_params:
            w = want[n]
            if n.startswith("experts."):
                # The experts see every rank's tokens: their reference gradient
                # is the sum over the ranks, sliced to this rank's experts.
                w = w.contiguous()
                dist.all_reduce(w)
                w = w[mine]
            assert rel_err(got[n], w) <= 1e-5, f"rank {rank} grad {n}: {rel_err(got[n], w)}"


def spawn(world, strategy, cache, top_k=None, fail=None, device="cpu", counts=None, shadow=None):
    run_ranks(_worker, world, strategy, str(cache), top_k, fail, device, counts, shadow)


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("strategy", ["contiguous", "round-robin", "balanced"])
def test_expert_parallel_matches_single_process(world, strategy, tmp_path):
    spawn(world, strategy, tmp_path)


SHADOW_CASES = [
    (2, "contiguous", [1]),
    (2, "contiguous", [1, 0]),  # both of rank 0's experts, in descending order
    (2, "contiguous", [3, 2, 0]),  # rank 1 exchanges nothing
    (4, "round-robin", [0, 5]),
    (2, "balanced", 1),
    (4, "balanced", 2),
]


@pytest.mark.parametrize("world,strategy,shadow", SHADOW_CASES)
def test_shadowed_experts_match_single_process(world, strategy, shadow, tmp_path):
    """Hot experts replicated on every rank (a list of ids, or the N most
    loaded of a recorded profile): the same output and gradients as the
    one-process layer; the owner's gradient holds every rank's share."""
    spawn(world, strategy, tmp_path, shadow=shadow)


# The exchanges over the process group's own all-to-all (the default) and
# over the runtime's own NCCL communicator (FMOE_COMMUNICATOR=nccl).
COMMUNICATORS = pytest.mark.parametrize("communicator", ["torch", "nccl"])


@pytest.mark.gpu
@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("strategy", ["contiguous", "round-robin"])
@COMMUNICATORS
def test_expert_parallel_over_nccl(world, strategy, communicator, monkeypatch):
    if torch.cuda.device_count() < world:
        pytest.skip(f"needs {world} GPUs, this machine has {torch.cuda.device_count()}")
    monkeypatch.setenv("FMOE_COMMUNICATOR", communicator)
    # The GPU machine has no compiler: modules come from the shared cache
    # (bench/prepare_cache.py compiles these configurations).
    spawn(world, strategy, os.environ["FMOE_CACHE_DIR"], device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("world", [2, 4])
@COMMUNICATORS
def test_shadowed_experts_over_nccl(world, communicator, monkeypatch):
    if torch.cuda.device_count() < world:
        pytest.skip(f"needs {world} GPUs, this machine has {torch.cuda.device_count()}")
    monkeypatch.setenv("FMOE_COMMUNICATOR", communicator)
    spawn(world, "contiguous", os.environ["FMOE_CACHE_DIR"], device="cuda", shadow=[1])


def _dying_gpu_worker(rank, world, port, cache):
    os.environ["FMOE_CACHE_DIR"] = cache
    torch.cuda.set_device(rank)
    init_rank(rank, world, port, "nccl", timeout=60)
    layer = fmoe.FMoETransformerMLP(
        num_expert=LOCAL, d_model=D_MODEL, d_hidden=D_HIDDEN, top_k=2, world_size=world
    ).cuda()
    # (placement as in the cache that bench/prepare_cache.py fills)
    compiled = fmoe.compile(layer, placement="contiguous")
    compiled(torch.randn(6, D_MODEL, device="cuda"))  # the communicator exists
    torch.cuda.synchronize()
    dist.barrier()
    if rank == 1:
        os._exit(0)  # the peer dies between two steps

    def step():
        compiled(torch.randn(6, D_MODEL, device="cuda"))
        torch.cuda.synchronize()

    _survivor_gets_an_error(step)


@pytest.mark.gpu
def test_own_nccl_communicator_dead_peer_gives_an_error(monkeypatch):
    """FMOE_COMMUNICATOR=nccl: a peer that dies after the communicator was
    made fails the survivor's next exchange within FMOE_NCCL_TIMEOUT_S (NCCL's
    own error, or the runtime's timeout and abort), never a hang."""
    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs 2 GPUs, this machine has {torch.cuda.device_count()}")
    monkeypatch.setenv("FMOE_COMMUNICATOR", "nccl")
    monkeypatch.setenv("FMOE_NCCL_TIMEOUT_S", "20")
    run_ranks(_dying_gpu_worker, 2, os.environ["FMOE_CACHE_DIR"])


def test_ranks_that_disagree_get_an_error(tmp_path):
    spawn(2, "contiguous", tmp_path, top_k=[2, 1], fail="mismatch")


def test_world_size_without_process_group_is_refused():
    layer = fmoe.FMoETransformerMLP(num_expert=2, d_model=D_MODEL, d_hidden=D_HIDDEN, world_size=2)
    if dist.is_initialized():
        pytest.skip("a process group is initialised in this process")
    with pytest.raises(fmoe.CompileError, match="needs torch.distributed to be initialised"):
        fmoe.compile(layer)


def _dgdp_worker(rank, world, port, cache, auto):
    os.environ["FMOE_CACHE_DIR"] = cache
    with rank_process():
        init_rank(rank, world, port)
        torch.manual_seed(rank)  # different on purpose: need_sync must align them
        model = torch.nn.Sequential(
            torch.nn.Linear(D_MODEL, D_MODEL),
            fmoe.FMoETransformerMLP(num_expert=LOCAL, d_model=D_MODEL, d_hidden=D_HIDDEN, world_size=world),
        )
        ddp = fmoe.DistributedGroupedDataParallel(model, auto_allreduce=auto)
        compiled = fmoe.compile(model)
        dense, moe = model[0], model[1]
        for p in [*dense.parameters(), *moe.gate.parameters()]:
            copies = [torch.empty_like(p) for _ in range(world)]
            dist.all_gather(copies, p.data)
            assert all(torch.equal(c, copies[0]) for c in copies), "need_sync did not broadcast"
        torch.manual_seed(100 + rank)
        x = torch.randn(7, D_MODEL)
        compiled(x).square().sum().backward()
        before = {n: p.grad.clone() for n, p in model.named_parameters()}
        if not auto:
            ddp.allreduce_gradients()
        for n, p in model.named_parameters():
            if getattr(p, "dp_comm", "dp") == "none":
                # Expert-parallel experts: each rank's own, never reduced.
                assert torch.equal(p.grad, before[n]) or auto, n
                continue
            manual = before[n].clone()
            if not auto:
                dist.all_reduce(manual)
                manual /= world
                assert rel_err(p.grad, manual) <= 1e-6, n
            else:
                # Already reduced: equal on every rank.
                copies = [torch.empty_like(p.grad) for _ in range(world)]
                dist.all_gather(copies, p.grad)
                assert all(rel_err(c, copies[0]) <= 1e-6 for c in copies), n
        ddp.remove_hooks()


@pytest.mark.parametrize("auto", [False, True], ids=["manual", "auto"])
def test_grouped_data_parallel_reduces_by_tag(auto, tmp_path):
    run_ranks(_dgdp_worker, 2, str(tmp_path), auto)


def _dying_worker(rank, world, port, cache):
    os.environ["FMOE_CACHE_DIR"] = cache
    init_rank(rank, world, port, timeout=20)
    layer = fmoe.FMoETransformerMLP(num_expert=LOCAL, d_model=D_MODEL, d_hidden=D_HIDDEN, world_size=world)
    compiled = fmoe.compile(layer)
    if rank == 1:
        os._exit(0)  # the peer dies before the exchange
    _survivor_gets_an_error(lambda: compiled(torch.randn(6, D_MODEL)))


def _survivor_gets_an_error(step):
    """Rank 0 after its peer died: `step` must raise within 60 s. Exits the
    process (0: it did)."""
    start = time.time()
    try:
        step()
    except RuntimeError as e:
        elapsed = time.time() - start
        print(f"rank 0 got an error after {elapsed:.1f}s: {str(e).splitlines()[0]}")
        os._exit(0 if elapsed < 60 else 1)
    print("rank 0: no error although its peer died")
    os._exit(1)


def test_very_uneven_token_counts(tmp_path):
    """One token on rank 0, 64 on rank 1: rank 0 receives far more rows than
    world x its tokens x top_k; the expert side is sized by the rows that
    arrive, and output and gradients still equal the one-process layer."""
    spawn(2, "contiguous", tmp_path, counts=[1, 64])


def _wide_bf16_worker(rank, world, port, cache):
    """bf16 experts with d_model 2048 over two ranks: GeLU in the GEMMs'
    epilogues (bias_act / dact_act) on R-sized rows, against the fp64
    full layer."""
    os.environ["FMOE_CACHE_DIR"] = cache
    d, h = 2048, 16
    with rank_process():
        init_rank(rank, world, port)
        torch.manual_seed(0)  # the same full layer on every rank
        ref = fmoe.FMoETransformerMLP(num_expert=LOCAL * world, d_model=d, d_hidden=h, top_k=2)
        with torch.no_grad():
            for n, p in ref.named_parameters():
                if n.endswith("bias"):
                    p.normal_(0, 0.1)
        ref = ref.to(torch.bfloat16)
        mine = slice(rank * LOCAL, (rank + 1) * LOCAL)
        ep = fmoe.FMoETransformerMLP(num_expert=LOCAL, d_model=d, d_hidden=h, top_k=2, world_size=world)
        ep = ep.to(torch.bfloat16)
        load_rank_experts(ep, ref, mine)
        compiled = fmoe.compile(ep)
        (info,) = compiled._fmoe_modules.values()
        data = info.path.read_bytes()
        assert b"fmoe_rt_grouped_gemm_bias_act" in data and b"fmoe_rt_grouped_gemm_dact_act" in data
        torch.manual_seed(100 + rank)
        x = torch.randn(6 + 5 * rank, d, dtype=torch.bfloat16)
        g = torch.randn_like(x)
        xc = x.clone().requires_grad_()
        y = compiled(xc)
        dx, dw1 = torch.autograd.grad(y, [xc, ep.experts.htoh4.weight], g)
        ref64 = copy.deepcopy(ref).double()
        xr = x.double().requires_grad_()
        yr = ref64(xr)
        dxr, dw1r = torch.autograd.grad(yr, [xr, ref64.experts.htoh4.weight], g.double())
        dw1r = dw1r.contiguous()
        dist.all_reduce(dw1r)  # every rank's tokens reach the experts
        # bf16 storage: a few rounding steps of 2^-8 relative.
        assert rel_err(y, yr) <= 3e-2, f"rank {rank} output: {rel_err(y, yr)}"
        assert rel_err(dx, dxr) <= 3e-2, f"rank {rank} input grad: {rel_err(dx, dxr)}"
        assert rel_err(dw1, dw1r[mine]) <= 3e-2, f"rank {rank} fc1 grad: {rel_err(dw1, dw1r[mine])}"


def test_activation_epilogues_on_received_rows(tmp_path):
    """d_model 2048, bf16: the expert side's fused GeLU epilogues take the
    rows an exchange received (R), forward and backward, over two ranks."""
    run_ranks(_wide_bf16_worker, 2, str(tmp_path))


def _idle_worker(rank, world, port, cache, tokens):
    os.environ["FMOE_CACHE_DIR"] = cache
    with rank_process():
        init_rank(rank, world, port)
        torch.manual_seed(0)
        ep = fmoe.FMoETransformerMLP(num_expert=LOCAL, d_model=D_MODEL, d_hidden=D_HIDDEN, top_k=2, world_size=world)
        with torch.no_grad():  # every token to experts 0 and 1, both on rank 0
            ep.gate.gate.weight.zero_()
            ep.gate.gate.bias.copy_(torch.tensor([10.0, 9.0] + [-10.0] * (LOCAL * world - 2)))
        compiled = fmoe.compile(ep)
        x = torch.randn(tokens, D_MODEL, requires_grad=True)
        y = compiled(x)
        assert y.shape == (tokens, D_MODEL)
        y.sum().backward()
        if rank == 1:  # no rows reached rank 1's experts
            for n in ("htoh4.weight", "htoh4.bias", "h4toh.weight", "h4toh.bias"):
                grad = dict(ep.experts.named_parameters())[n].grad
                assert grad is not None and grad.abs().max() == 0, n


@pytest.mark.parametrize("tokens", [4, 0], ids=["skewed", "no-tokens"])
def test_a_rank_whose_experts_receive_nothing(tokens, tmp_path):
    """All tokens routed to rank 0's experts (rank 1 receives no rows), and
    no tokens at all: forward and backward run, idle experts get zero
    gradients."""
    run_ranks(_idle_worker, 2, str(tmp_path), tokens)


def test_a_dead_rank_gives_an_error_not_a_hang(tmp_path):
    run_ranks(_dying_worker, 2, str(tmp_path))


def test_shadow_arguments_are_checked():
    layer = fmoe.FMoETransformerMLP(num_expert=2, d_model=D_MODEL, d_hidden=D_HIDDEN, world_size=2)
    with pytest.raises(ValueError, match="needs load_profile"):
        fmoe.compile(layer, shadow=1)
    with pytest.raises(ValueError, match="non-negative"):
        fmoe.compile(layer, shadow=-1)
    for bad in ("hot", True, [1.5]):
        with pytest.raises(TypeError, match="shadow must be"):
            fmoe.compile(layer, shadow=bad)


def test_expert_parallel_example_with_torchrun(tmp_path):
    """The README's torchrun example on two CPU ranks, with shadowed experts."""
    import subprocess

    env = {**os.environ, "FMOE_CACHE_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(HERE.parent / "examples" / "expert_parallel.py"), "--shadow=0,3"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "step 15: loss" in done.stdout and "experts [0, 3] on every rank" in done.stdout
