#!/usr/bin/env python3
"""Generates testdata/parity.safetensors: weights, inputs and PyTorch outputs of a 2-block CAE/BEiT ViT
encoder (visible patches only) and of one CAE regressor block, for mimlab's parity test (TestPyTorchParity).

The modules below are written from the official CAE code (Atten4Vis/CAE models/modeling_cae_helper.py;
reference/cae-facts.md 1.2-1.3): fused qkv Linear whose bias is [q_bias, 0, v_bias], LayerScale, exact GELU,
LayerNorm eps 1e-6, fixed 2-D sin-cos positions with a zero cls row, and the regressor block's three
LayerNorms, post-attention LayerNorm on the stream and MLP residual. Every parameter is random (not its
init), so every term is exercised.

Run with Debian's torch:  /usr/bin/python3 nn/testdata/gen_parity.py
"""
import json, struct, os
import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(0)
B, C, IMG, P, D, H, DEPTH, RATIO = 2, 3, 16, 4, 32, 4, 2, 4
G = IMG // P
N = G * G
K = 7  # visible patches per image
M = 5  # regressor queries
Nv = 6
eps = 1e-6

def sincos(g, d):
    pd = d // 4
    omega = 1.0 / (10000 ** (torch.arange(pd, dtype=torch.float64) / pd))
    gw, gh = torch.meshgrid(torch.arange(g, dtype=torch.float64), torch.arange(g, dtype=torch.float64), indexing="ij")
    ow = torch.einsum("m,d->md", gw.flatten(), omega)
    oh = torch.einsum("m,d->md", gh.flatten(), omega)
    return torch.cat([torch.sin(ow), torch.cos(ow), torch.sin(oh), torch.cos(oh)], dim=1).float()

W = {}
def p(name, *shape, scale=0.3, offset=0.0):
    t = torch.randn(*shape) * scale + offset
    W[name] = t
    return t

def ln(x, pre):
    return F.layer_norm(x, (x.shape[-1],), W[pre + ".weight"], W[pre + ".bias"], eps)

def mk_ln(pre, d):
    p(pre + ".weight", d, offset=1.0); p(pre + ".bias", d)

def mk_lin(pre, o, i, bias=True):
    p(pre + ".weight", o, i)
    if bias: p(pre + ".bias", o)

def lin(x, pre, bias=True):
    return F.linear(x, W[pre + ".weight"], W.get(pre + ".bias") if bias else None)

def mlp(x, pre):
    return lin(F.gelu(lin(x, pre + ".fc1")), pre + ".fc2")

def attention(q, k, v, heads):
    b, nq, d = q.shape; nk = k.shape[1]; hd = d // heads
    q = q.reshape(b, nq, heads, hd).transpose(1, 2) * hd ** -0.5
    k = k.reshape(b, nk, heads, hd).transpose(1, 2)
    v = v.reshape(b, nk, heads, hd).transpose(1, 2)
    a = (q @ k.transpose(-2, -1)).softmax(-1)
    return (a @ v).transpose(1, 2).reshape(b, nq, d)

# ---- encoder (CAE VisionTransformerEncoder, visible patches only) ----
e = "encoder."
p(e + "patch_embed.proj.weight", D, C, P, P); p(e + "patch_embed.proj.bias", D)
p(e + "cls_token", 1, 1, D)
for i in range(DEPTH):
    b = f"{e}blocks.{i}."
    mk_ln(b + "norm1", D); mk_ln(b + "norm2", D)
    p(b + "attn.qkv.weight", 3 * D, D); p(b + "attn.q_bias", D); p(b + "attn.v_bias", D)
    mk_lin(b + "attn.proj", D, D)
    p(b + "gamma_1", D, offset=0.5); p(b + "gamma_2", D, offset=0.5)
    mk_lin(b + "mlp.fc1", RATIO * D, D); mk_lin(b + "mlp.fc2", D, RATIO * D)
mk_ln(e + "norm", D)

images = torch.rand(B, C, IMG, IMG)
keep = torch.stack([torch.randperm(N)[:K] for _ in range(B)])

def encoder(x, keep):
    t = F.conv2d(x, W[e + "patch_embed.proj.weight"], W[e + "patch_embed.proj.bias"], stride=P)
    t = t.flatten(2).transpose(1, 2)  # [B,N,D] row-major
    pos = sincos(G, D).unsqueeze(0).expand(B, -1, -1)
    t = torch.gather(t, 1, keep.unsqueeze(-1).expand(-1, -1, D)) + torch.gather(pos, 1, keep.unsqueeze(-1).expand(-1, -1, D))
    t = torch.cat([W[e + "cls_token"].expand(B, -1, -1), t], 1)  # cls position is zero
    for i in range(DEPTH):
        b = f"{e}blocks.{i}."
        h = ln(t, b + "norm1")
        qkv_bias = torch.cat([W[b + "attn.q_bias"], torch.zeros(D), W[b + "attn.v_bias"]])
        qkv = F.linear(h, W[b + "attn.qkv.weight"], qkv_bias)
        q, k, v = qkv.split(D, dim=-1)
        t = t + W[b + "gamma_1"] * lin(attention(q, k, v, H), b + "attn.proj")
        t = t + W[b + "gamma_2"] * mlp(ln(t, b + "norm2"), b + "mlp")
    return ln(t, e + "norm")

# ---- one regressor block (CAE RegressorBlock) ----
r = "regressor."
for n in ["norm1_q_cross", "norm1_k_cross", "norm1_v_cross", "norm2_cross"]:
    mk_ln(r + n, D)
for n in ["q", "k", "v"]:
    p(f"{r}cross_attn.{n}.weight", D, D)
p(r + "cross_attn.q_bias", D); p(r + "cross_attn.v_bias", D)
mk_lin(r + "cross_attn.proj", D, D)
p(r + "gamma_1_cross", D, offset=0.5); p(r + "gamma_2_cross", D, offset=0.5)
mk_lin(r + "mlp_cross.fc1", RATIO * D, D); mk_lin(r + "mlp_cross.fc2", D, RATIO * D)

xq, xv, posq, posv = torch.randn(B, M, D), torch.randn(B, Nv, D), torch.randn(B, M, D), torch.randn(B, Nv, D)

def regressor_block(xq, xv, posq, posv):
    kv = torch.cat([xv, xq], 1); poskv = torch.cat([posv, posq], 1)
    q = F.linear(ln(xq + posq, r + "norm1_q_cross"), W[r + "cross_attn.q.weight"], W[r + "cross_attn.q_bias"])
    k = F.linear(ln(kv + poskv, r + "norm1_k_cross"), W[r + "cross_attn.k.weight"], None)
    v = F.linear(ln(kv, r + "norm1_v_cross"), W[r + "cross_attn.v.weight"], W[r + "cross_attn.v_bias"])
    x = xq + W[r + "gamma_1_cross"] * lin(attention(q, k, v, H), r + "cross_attn.proj")
    x = ln(x, r + "norm2_cross")
    return x + W[r + "gamma_2_cross"] * mlp(x, r + "mlp_cross")

with torch.no_grad():
    out = {
        "input.images": images, "input.keep": keep,
        "input.xq": xq, "input.xv": xv, "input.posq": posq, "input.posv": posv,
        "expected.encoder": encoder(images, keep), "expected.regressor": regressor_block(xq, xv, posq, posv),
    }
out.update(W)

def save(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        if t.dtype == torch.int64:
            dt, b = "I64", t.numpy().astype("<i8").tobytes()
        else:
            dt, b = "F32", t.float().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)

meta = {"generator": "nn/testdata/gen_parity.py", "torch": torch.__version__,
        "config": json.dumps(dict(B=B, C=C, IMG=IMG, P=P, D=D, H=H, DEPTH=DEPTH, RATIO=RATIO, K=K, M=M, Nv=Nv))}
save(os.path.join(os.path.dirname(os.path.abspath(__file__)), "parity.safetensors"), out, meta)
print("wrote parity.safetensors:", len(out), "tensors")
