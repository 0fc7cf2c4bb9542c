#!/usr/bin/env python3
"""PyTorch reference of bench/block_test.go: one pre-LN ViT block (q/v bias, LayerScale, exact GELU, LN eps
1e-6), batch 32, 49 tokens, dim 128, 4 heads; loss = MSE on all tokens + CE of a linear head on 29 gathered
tokens per image; AdamW. Prints the median ms per training step after warm-up.
Run with OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/block_torch.py [steps]"""
import sys, time, statistics
import torch, torch.nn as tnn, torch.nn.functional as F

B, N, D, H, K, V = 32, 49, 128, 4, 29, 64
torch.manual_seed(0)
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)

class Attn(tnn.Module):
    def __init__(s):
        super().__init__()
        s.qkv = tnn.Linear(D, 3 * D, bias=False)
        s.q_bias = tnn.Parameter(torch.zeros(D)); s.v_bias = tnn.Parameter(torch.zeros(D))
        s.proj = tnn.Linear(D, D)
    def forward(s, x):
        b, n, _ = x.shape
        qkv = F.linear(x, s.qkv.weight, torch.cat([s.q_bias, torch.zeros_like(s.v_bias), s.v_bias]))
        q, k, v = qkv.reshape(b, n, 3, H, D // H).permute(2, 0, 3, 1, 4)
        a = ((q * (D // H) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        return s.proj((a @ v).transpose(1, 2).reshape(b, n, D))

class Block(tnn.Module):
    def __init__(s):
        super().__init__()
        s.norm1, s.norm2 = tnn.LayerNorm(D, eps=1e-6), tnn.LayerNorm(D, eps=1e-6)
        s.attn = Attn()
        s.fc1, s.fc2 = tnn.Linear(D, 4 * D), tnn.Linear(4 * D, D)
        s.gamma_1 = tnn.Parameter(0.1 * torch.ones(D)); s.gamma_2 = tnn.Parameter(0.1 * torch.ones(D))
        s.head = tnn.Linear(D, V)
    def forward(s, x):
        x = x + s.gamma_1 * s.attn(s.norm1(x))
        return x + s.gamma_2 * s.fc2(F.gelu(s.fc1(s.norm2(x))))

m = Block()
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.05)
x, tgt = torch.randn(B, N, D), torch.randn(B, N, D)
idx = torch.stack([torch.randperm(N)[:K] for _ in range(B)])
lab = torch.randint(0, V, (B, K))
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 50
times = []
for i in range(steps + 5):
    t0 = time.perf_counter()
    out = m(x)
    g = torch.gather(out, 1, idx.unsqueeze(-1).expand(-1, -1, D))
    loss = F.mse_loss(out, tgt) + F.cross_entropy(m.head(g).reshape(-1, V), lab.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 3.0)
    opt.step()
    if i >= 5:
        times.append((time.perf_counter() - t0) * 1000)
print(f"RESULT pytorch block median_ms={statistics.median(times):.2f} steps={len(times)} threads={torch.get_num_threads()} torch={torch.__version__}")
