#!/usr/bin/env python3
"""PyTorch reference of the quickstart's CAE and BEiT training steps (experiments/quickstart.toml), built to
match mimlab exactly: 28x28x1 images, 4x4 patches (7x7 = 49 tokens), 24 masked per image, ViT dim 64, depth
4, 4 heads, MLP ratio 4, LayerScale 0.1, drop path 0.1, q/v biases, exact GELU, LN eps 1e-6, fixed sin-cos
positions; CAE: regressor 2 cross-attention blocks (three LNs, LN on the stream, MLP residual, final LN),
decoder 2 blocks over the masked tokens, pixel head, per-patch normalised pixel targets, alignment = the
same encoder on the masked patches under no_grad (train mode), lambda 2; BEiT: mask tokens in the encoder,
linear head on the masked positions. AdamW (0.9, 0.999), wd 0.05 off 1-D params, clip 3, batch 64.
Prints the median ms of a full step (forward, backward, clip, AdamW) on a fixed batch.
Run: OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/cae_torch.py [steps] [threads] [dim] [grid] [cae,beit]
TORCH_PROFILE=1 adds a per-op profile of 3 more steps (PROFILE lines, as bench/ort_profile.py prints them)."""
import os, sys, time, statistics, resource
import torch, torch.nn as nn, torch.nn.functional as F

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
D = int(sys.argv[3]) if len(sys.argv) > 3 else 64
G = int(sys.argv[4]) if len(sys.argv) > 4 else 7
METHODS = (sys.argv[5] if len(sys.argv) > 5 else "cae,beit").split(",")  # which models to time
B, P, C, DEPTH, H, RATIO, LS, DP = 64, 4, 1, 4, 4, 4, 0.1, 0.1
# bench/gpu.sh's other geometries (ViT-S/16 at 224 px: BENCH_P=16 BENCH_C=3 BENCH_DEPTH=12 BENCH_HEADS=6, dim 384,
# grid 14) and batch; BENCH_AMP=bf16 runs the step under torch.autocast(dtype=torch.bfloat16) (the AMP of
# MAE/BEiT/CAE: LayerNorm and softmax in float32 on CUDA, master weights and AdamW in float32).
B = int(os.environ.get("BENCH_BATCH", B)); P = int(os.environ.get("BENCH_P", P)); C = int(os.environ.get("BENCH_C", C))
DEPTH = int(os.environ.get("BENCH_DEPTH", DEPTH)); H = int(os.environ.get("BENCH_HEADS", H))
AMP = os.environ.get("BENCH_AMP", "fp32")
assert AMP in ("fp32", "bf16"), f"BENCH_AMP={AMP}: allowed values are fp32, bf16"
N, M = G * G, (G * G * 24) // 49
DEV = torch.device(os.environ.get("TORCH_DEVICE", "cpu"))  # cuda for bench/gpu.sh
# float32 means float32, as in mimlab's xla backend (nn/backend_xla.go turns go-xla's TF32 off): no TF32 in
# matmuls (PyTorch's default) nor in the patch embedding's convolution (cuDNN's default would allow it).
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.manual_seed(0)

def sincos(g, d):
    pd = d // 4
    om = 1.0 / (10000 ** (torch.arange(pd, dtype=torch.float64) / pd))
    a, b = torch.meshgrid(torch.arange(g, dtype=torch.float64), torch.arange(g, dtype=torch.float64), indexing="ij")
    oa, ob = torch.einsum("m,d->md", a.flatten(), om), torch.einsum("m,d->md", b.flatten(), om)
    return torch.cat([oa.sin(), oa.cos(), ob.sin(), ob.cos()], 1).float()

def drop_path(x, p, training):
    if p == 0 or not training:
        return x
    keep = (torch.rand(x.shape[0], 1, 1, device=x.device) >= p).float() / (1 - p)
    return x * keep

class Mlp(nn.Module):
    def __init__(s): super().__init__(); s.fc1, s.fc2 = nn.Linear(D, RATIO * D), nn.Linear(RATIO * D, D)
    def forward(s, x): return s.fc2(F.gelu(s.fc1(x)))

class Attn(nn.Module):
    def __init__(s, cross=False):
        super().__init__()
        s.q, s.k, s.v = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        s.q_bias, s.v_bias = nn.Parameter(torch.zeros(D)), nn.Parameter(torch.zeros(D))
        s.proj = nn.Linear(D, D)
    def forward(s, xq, xk, xv):
        b, nq, _ = xq.shape; nk = xk.shape[1]
        q = F.linear(xq, s.q.weight, s.q_bias).reshape(b, nq, H, D // H).transpose(1, 2)
        k = s.k(xk).reshape(b, nk, H, D // H).transpose(1, 2)
        v = F.linear(xv, s.v.weight, s.v_bias).reshape(b, nk, H, D // H).transpose(1, 2)
        a = ((q * (D // H) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        return s.proj((a @ v).transpose(1, 2).reshape(b, nq, D))

class Block(nn.Module):
    def __init__(s, dp):
        super().__init__()
        s.norm1, s.norm2, s.attn, s.mlp, s.dp = nn.LayerNorm(D, eps=1e-6), nn.LayerNorm(D, eps=1e-6), Attn(), Mlp(), dp
        s.gamma_1, s.gamma_2 = nn.Parameter(LS * torch.ones(D)), nn.Parameter(LS * torch.ones(D))
    def forward(s, x):
        h = s.norm1(x)
        x = x + drop_path(s.gamma_1 * s.attn(h, h, h), s.dp, s.training)
        return x + drop_path(s.gamma_2 * s.mlp(s.norm2(x)), s.dp, s.training)

class RegBlock(nn.Module):
    def __init__(s, dp):
        super().__init__()
        s.nq, s.nk, s.nv, s.n2 = [nn.LayerNorm(D, eps=1e-6) for _ in range(4)]
        s.attn, s.mlp, s.dp = Attn(), Mlp(), dp
        s.gamma_1, s.gamma_2 = nn.Parameter(LS * torch.ones(D)), nn.Parameter(LS * torch.ones(D))
    def forward(s, xq, xv, pq, pv):
        kv, pkv = torch.cat([xv, xq], 1), torch.cat([pv, pq], 1)
        x = xq + drop_path(s.gamma_1 * s.attn(s.nq(xq + pq), s.nk(kv + pkv), s.nv(kv)), s.dp, s.training)
        x = s.n2(x)
        return x + drop_path(s.gamma_2 * s.mlp(x), s.dp, s.training)

def linspace(n): return [DP * i / (n - 1) if n > 1 else 0 for i in range(n)]

class Encoder(nn.Module):
    def __init__(s):
        super().__init__()
        s.proj = nn.Conv2d(C, D, P, P)
        s.cls_token, s.mask_token = nn.Parameter(torch.zeros(1, 1, D)), nn.Parameter(torch.zeros(1, 1, D))
        s.blocks = nn.ModuleList([Block(r) for r in linspace(DEPTH)])
        s.norm = nn.LayerNorm(D, eps=1e-6)
        s.register_buffer("pos", sincos(G, D))
    def forward(s, img, keep=None, mask=None):
        x = s.proj(img).flatten(2).transpose(1, 2)
        pos = s.pos.unsqueeze(0).expand(x.shape[0], -1, -1)
        if mask is not None:
            w = mask.unsqueeze(-1).float(); x = x * (1 - w) + s.mask_token * w
        if keep is not None:
            idx = keep.unsqueeze(-1).expand(-1, -1, D); x, pos = torch.gather(x, 1, idx), torch.gather(pos, 1, idx)
        x = torch.cat([s.cls_token.expand(x.shape[0], -1, -1), x + pos], 1)
        for b in s.blocks: x = b(x)
        return s.norm(x)

def patchify(img):
    b = img.shape[0]
    return img.reshape(b, C, G, P, G, P).permute(0, 2, 4, 1, 3, 5).reshape(b, N, C * P * P)

class CAE(nn.Module):
    def __init__(s):
        super().__init__()
        s.encoder = Encoder()
        s.mask_token = nn.Parameter(torch.zeros(1, 1, D))
        s.reg = nn.ModuleList([RegBlock(r) for r in linspace(2)]); s.reg_norm = nn.LayerNorm(D, eps=1e-6)
        s.dec = nn.ModuleList([Block(r) for r in linspace(2)]); s.dec_norm = nn.LayerNorm(D, eps=1e-6)
        s.head = nn.Linear(D, C * P * P)
    def loss(s, img, vis, msk, maskf):
        zv = s.encoder(img, keep=vis)[:, 1:]
        pos = s.encoder.pos.unsqueeze(0).expand(img.shape[0], -1, -1)
        pm, pv = torch.gather(pos, 1, msk.unsqueeze(-1).expand(-1, -1, D)), torch.gather(pos, 1, vis.unsqueeze(-1).expand(-1, -1, D))
        x = s.mask_token.expand(img.shape[0], M, -1)
        for b in s.reg: x = b(x, zv, pm, pv)
        zm = s.reg_norm(x)
        y = zm + pm
        for b in s.dec: y = b(y)
        pred = s.head(s.dec_norm(y))
        t = torch.gather(patchify(img), 1, msk.unsqueeze(-1).expand(-1, -1, C * P * P))
        t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
        with torch.no_grad():
            tgt = s.encoder(img, keep=msk)[:, 1:]
        return F.mse_loss(pred, t) + 2.0 * F.mse_loss(zm, tgt)

class BEiT(nn.Module):
    def __init__(s):
        super().__init__(); s.encoder = Encoder(); s.head = nn.Linear(D, C * P * P)
    def loss(s, img, vis, msk, maskf):
        z = s.encoder(img, mask=maskf)[:, 1:]
        pred = s.head(torch.gather(z, 1, msk.unsqueeze(-1).expand(-1, -1, D)))
        t = torch.gather(patchify(img), 1, msk.unsqueeze(-1).expand(-1, -1, C * P * P))
        t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
        return F.mse_loss(pred, t)

def groups(m):
    dec = [p for n, p in m.named_parameters() if p.ndim > 1 and not n.endswith("bias")]
    nod = [p for n, p in m.named_parameters() if p.ndim <= 1 or n.endswith("bias")]
    return [{"params": dec, "weight_decay": 0.05}, {"params": nod, "weight_decay": 0.0}]

img = torch.rand(B, C, G * P, G * P)
perm = torch.stack([torch.randperm(N) for _ in range(B)])
msk, vis = perm[:, :M].sort(1).values, perm[:, M:].sort(1).values
maskf = torch.zeros(B, N); maskf.scatter_(1, msk, 1.0)
img, msk, vis, maskf = img.to(DEV), msk.to(DEV), vis.to(DEV), maskf.to(DEV)
for name, make in [("cae", CAE), ("beit", BEiT)]:
    if name not in METHODS:
        continue
    model = make()
    model = model.to(DEV)
    model.train()
    opt = torch.optim.AdamW(groups(model), lr=1e-4, betas=(0.9, 0.999))
    def train_step():
        with torch.autocast(device_type=DEV.type, dtype=torch.bfloat16, enabled=AMP == "bf16"):
            loss = model.loss(img, vis, msk, maskf)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
    times = []
    WARM = int(os.environ.get("BENCH_WARMUP", 5))
    for i in range(steps + WARM):
        t0 = time.perf_counter()
        train_step()
        if DEV.type == "cuda": torch.cuda.synchronize()
        if i >= WARM: times.append((time.perf_counter() - t0) * 1000)
    if os.environ.get("TORCH_PROFILE"):  # per-op profile of 3 more steps, printed like bench/ort_profile.py
        from torch.profiler import profile as tprofile, ProfilerActivity
        with tprofile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(3):
                train_step()
        tset = {N, N + 1, M, M + 1, N - M, N - M + 1}
        by_op, total, attn = {}, 0.0, 0.0
        for e in prof.events():
            us = e.self_cpu_time_total
            total += us
            by_op[e.name] = by_op.get(e.name, 0.0) + us
            if any(len(sh) >= 2 and sh[-1] in tset and sh[-2] in tset for sh in (e.input_shapes or []) if isinstance(sh, (list, tuple))):
                attn += us
        print(f"PROFILE engine=pytorch-{name} steps=3 kernel_ms_per_step={total / 3000:.1f} attention_ms_per_step={attn / 3000:.1f} attention_share={attn / total:.2f}")
        for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])[:8]:
            print(f"PROFILE-OP engine=pytorch-{name} op={op} ms_per_step={us / 3000:.1f} share={us / total:.2f}")
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT pytorch-{name} median_ms={med:.2f} images_per_s={B / med * 1000:.0f} batch={B} dim={D} tokens={N} peak_rss_mb={rss:.0f} threads={torch.get_num_threads()} device={DEV} precision={AMP}")
