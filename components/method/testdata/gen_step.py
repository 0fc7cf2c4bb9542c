#!/usr/bin/env python3
"""Generates testdata/<method>_step_expected.safetensors for mimlab's whole-model step parity tests
(TestCAEStepParity, TestBEiTStepParity and TestMAEStepParity in components/method/parity_step_test.go, issue 17
point 3).

For each method (cae, beit, mae; or those named on the command line) it reads testdata/<method>_step_init.safetensors
(written by those tests under MIMLAB_WRITE_PARITY=1): the tiny model's parameters under their mimlab names
("param.<name>", self-attention q/k/v unfused), one batch ("input.images", "input.visible", "input.masked",
"input.maskF") and the sizes and optimiser settings (metadata "config"). An independent PyTorch implementation,
written from the official code (Atten4Vis/CAE, microsoft/unilm beit, facebookresearch/mae; reference/cae-facts.md
1.1-1.6) and in the layout of bench/cae_torch.py, whose module tree gives exactly mimlab's parameter names, loads
those parameters (load_state_dict, strict) and runs, in float32 on the CPU, deterministically:

  * the loss. The ViT encoder (stride-p Conv2d patch embedding, fixed 2-D sin-cos positions with a zero cls
    position, pre-LN blocks with q/v biases, LayerScale, exact GELU, LayerNorm eps 1e-6) and the pixel target
    (the masked patches' pixels, normalised per patch when NORMALIZE) are shared; then
    - cae: the encoder on the visible patches -> Z_v; regressor (cross-attention blocks over [Z_v; queries],
      positions in queries and keys, three LayerNorms, LayerNorm on the stream before the MLP, final LayerNorm)
      from the mask token -> Z_m; decoder (self-attention blocks over Z_m + P_m, LayerNorm, linear head) ->
      predictions; alignment = MSE(Z_m, the same encoder on the masked patches under no_grad);
      total = MSE(predictions, targets) + ALIGN x alignment.
    - beit: the encoder on every patch with the masked patches' embeddings replaced by the encoder's mask token
      (before the positions are added); a linear head on the masked positions' outputs; total = MSE.
    - mae: the encoder on the visible patches; decoder_embed (Linear) on all its outputs; the visible tokens
      scattered to their places and the decoder's mask token at the masked ones, plus the sin-cos positions;
      the cls token in front (no position); self-attention blocks, LayerNorm, linear head on the masked
      places; total = MSE.
    Drop path is 0 everywhere.
  * the gradient of every parameter at step 0 and the global gradient norm;
  * STEPS steps of torch.optim.AdamW on the same batch at the constant LR (betas, eps from config), weight
    decay WD on every parameter except 1-D ones and those whose name ends in "bias" (mimlab's rule, which
    puts the [1,1,D] cls and mask tokens in the decayed group, as the official code does), after
    torch.nn.utils.clip_grad_norm_(CLIP).

It writes: loss.total, loss.<metric> (target_loss, and align_loss for cae), grad_norm (step 0), losses [STEPS]
(each step's loss before its update), grad.<name> (step 0) and step<STEPS>.<name> (after the last update), plus
the sha256 of the init file it read (metadata init_sha256, which the test checks).

Run with Debian's torch:  /usr/bin/python3 components/method/testdata/gen_step.py [cae beit mae]
"""
import hashlib, json, os, struct, sys
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.set_default_dtype(torch.float32)


def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = {"F32": "<f4", "I64": "<i8"}[e["dtype"]]
        out[name] = torch.from_numpy(np.frombuffer(data[b:end], dtype=dt).copy().reshape(e["shape"]))
    return out, meta, hashlib.sha256(raw).hexdigest()


def save(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        b = t.float().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)


EPS_LN = 1e-6


def configure(config):
    """Sets the sizes the modules below read (one method's config at a time)."""
    global cfg, B, C, IMG, P, D, H, DEPTH, HID, LS, G, N, M
    cfg = config
    B, C, IMG, P, D, H, DEPTH = (cfg[k] for k in ["B", "C", "IMG", "P", "D", "H", "DEPTH"])
    HID = int(D * cfg["RATIO"])
    LS = cfg["LS"]
    G = IMG // P
    N, M = G * G, cfg["M"]




def sincos(g, d):
    """MoCo v3 / CAE 2-D sin-cos table [g*g, d]: token k at row a = k // g, column b = k % g gets
    [sin(a w), cos(a w), sin(b w), cos(b w)], w_i = 1 / 10000^(i / (d/4))."""
    pd = d // 4
    omega = 1.0 / (10000 ** (torch.arange(pd, dtype=torch.float64) / pd))
    a, b = torch.meshgrid(torch.arange(g, dtype=torch.float64), torch.arange(g, dtype=torch.float64), indexing="ij")
    oa, ob = torch.outer(a.flatten(), omega), torch.outer(b.flatten(), omega)
    return torch.cat([oa.sin(), oa.cos(), ob.sin(), ob.cos()], 1).float()


def LN():
    return nn.LayerNorm(D, eps=EPS_LN)


class Mlp(nn.Module):
    def __init__(s):
        super().__init__(); s.fc1, s.fc2 = nn.Linear(D, HID), nn.Linear(HID, D)

    def forward(s, x):
        return s.fc2(F.gelu(s.fc1(x), approximate="none"))


class Attention(nn.Module):
    """BEiT/CAE attention: q, k, v without their own bias, plus q_bias and v_bias (k has none), then proj."""
    def __init__(s):
        super().__init__()
        s.q, s.k, s.v = (nn.Linear(D, D, bias=False) for _ in range(3))
        s.q_bias, s.v_bias = nn.Parameter(torch.zeros(D)), nn.Parameter(torch.zeros(D))
        s.proj = nn.Linear(D, D)

    def forward(s, xq, xk, xv):
        b, nq, _ = xq.shape; nk = xk.shape[1]; hd = D // H
        q = F.linear(xq, s.q.weight, s.q_bias).reshape(b, nq, H, hd).transpose(1, 2)
        k = F.linear(xk, s.k.weight).reshape(b, nk, H, hd).transpose(1, 2)
        v = F.linear(xv, s.v.weight, s.v_bias).reshape(b, nk, H, hd).transpose(1, 2)
        a = ((q * hd ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        return s.proj((a @ v).transpose(1, 2).reshape(b, nq, D))


class Block(nn.Module):
    """Pre-LN ViT block with LayerScale: x += g1 * Attn(LN1 x); x += g2 * MLP(LN2 x)."""
    def __init__(s):
        super().__init__()
        s.norm1, s.attn, s.norm2, s.mlp = LN(), Attention(), LN(), Mlp()
        s.gamma_1, s.gamma_2 = nn.Parameter(LS * torch.ones(D)), nn.Parameter(LS * torch.ones(D))

    def forward(s, x):
        h = s.norm1(x)
        x = x + s.gamma_1 * s.attn(h, h, h)
        return x + s.gamma_2 * s.mlp(s.norm2(x))


class RegressorBlock(nn.Module):
    """CAE's RegressorBlock: keys/values [x_v; x_q], positions in queries and keys only."""
    def __init__(s):
        super().__init__()
        s.norm1_q_cross, s.norm1_k_cross, s.norm1_v_cross, s.norm2_cross = LN(), LN(), LN(), LN()
        s.cross_attn, s.mlp_cross = Attention(), Mlp()
        s.gamma_1_cross, s.gamma_2_cross = nn.Parameter(LS * torch.ones(D)), nn.Parameter(LS * torch.ones(D))

    def forward(s, xq, xv, pq, pv):
        kv, pkv = torch.cat([xv, xq], 1), torch.cat([pv, pq], 1)
        x = xq + s.gamma_1_cross * s.cross_attn(s.norm1_q_cross(xq + pq), s.norm1_k_cross(kv + pkv), s.norm1_v_cross(kv))
        x = s.norm2_cross(x)
        return x + s.gamma_2_cross * s.mlp_cross(x)


class PatchEmbed(nn.Module):
    def __init__(s):
        super().__init__(); s.proj = nn.Conv2d(C, D, P, P)


class Encoder(nn.Module):
    """The ViT encoder; with_mask_token: BEiT's, whose mask token replaces the masked patches' embeddings."""
    def __init__(s, with_mask_token=False):
        super().__init__()
        s.patch_embed = PatchEmbed()
        s.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        if with_mask_token:
            s.mask_token = nn.Parameter(torch.zeros(1, 1, D))
        s.blocks = nn.ModuleList([Block() for _ in range(DEPTH)])
        s.norm = LN()
        s.register_buffer("pos", sincos(G, D), persistent=False)

    def forward(s, img, keep=None, maskf=None):
        """keep [B,K]: encode only those patches (CAE, MAE); maskf [B,N] (1 = masked): every patch, the masked
        ones replaced by the mask token (BEiT)."""
        x = s.patch_embed.proj(img).flatten(2).transpose(1, 2)  # [B, N, D], grid row-major
        if maskf is not None:
            w = maskf.unsqueeze(-1)
            x = x * (1 - w) + s.mask_token * w
        if keep is None:
            x = x + s.pos
        else:
            idx = keep.unsqueeze(-1).expand(-1, -1, D)
            x = torch.gather(x, 1, idx) + torch.gather(s.pos.expand(x.shape[0], -1, -1), 1, idx)
        x = torch.cat([s.cls_token.expand(x.shape[0], -1, -1), x], 1)  # the cls position is zero
        for blk in s.blocks:
            x = blk(x)
        return s.norm(x)


class Regressor(nn.Module):
    def __init__(s):
        super().__init__()
        s.blocks = nn.ModuleList([RegressorBlock() for _ in range(cfg["REG_DEPTH"])]); s.norm = LN()


class Decoder(nn.Module):
    """CAE's decoder (blocks, norm, head); with no blocks, BEiT's linear head alone."""
    def __init__(s):
        super().__init__()
        if cfg["DEC_DEPTH"] > 0:
            s.blocks = nn.ModuleList([Block() for _ in range(cfg["DEC_DEPTH"])]); s.norm = LN()
        s.head = nn.Linear(D, C * P * P)


class MAEDecoder(nn.Module):
    """MAE's decoder: decoder_embed, mask_token, blocks over [cls; all places], norm, head."""
    def __init__(s):
        super().__init__()
        s.decoder_embed = nn.Linear(D, D)
        s.mask_token = nn.Parameter(torch.zeros(1, 1, D))
        s.blocks = nn.ModuleList([Block() for _ in range(cfg["DEC_DEPTH"])]); s.norm = LN()
        s.head = nn.Linear(D, C * P * P)

    def forward(s, z, vis, maskf, msk, pos):
        x = s.decoder_embed(z)
        b, nv = vis.shape
        full = torch.zeros(b, N, D).scatter(1, vis.unsqueeze(-1).expand(-1, -1, D), x[:, 1:])
        full = full + maskf.unsqueeze(-1) * s.mask_token + pos
        y = torch.cat([x[:, :1], full], 1)
        for blk in s.blocks:
            y = blk(y)
        y = s.norm(y)[:, 1:]
        return s.head(torch.gather(y, 1, msk.unsqueeze(-1).expand(-1, -1, D)))


def patchify(img):
    b = img.shape[0]
    return img.reshape(b, C, G, P, G, P).permute(0, 2, 4, 1, 3, 5).reshape(b, N, C * P * P)


def pixel_target(img, msk):
    """The masked patches' pixels [B, M, C*P*P], normalised per patch when NORMALIZE (MAE's norm_pix_loss)."""
    t = torch.gather(patchify(img), 1, msk.unsqueeze(-1).expand(-1, -1, C * P * P))
    if cfg["NORMALIZE"]:
        t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
    return t


class CAE(nn.Module):
    def __init__(s):
        super().__init__()
        s.encoder, s.regressor, s.decoder = Encoder(), Regressor(), Decoder()
        s.mask_token = nn.Parameter(torch.zeros(1, 1, D))

    def loss(s, img, vis, msk, maskf):
        b = img.shape[0]
        zv = s.encoder(img, vis)[:, 1:]
        pos = s.encoder.pos
        pm, pv = pos[msk], pos[vis]  # [B, K, D]
        x = s.mask_token.expand(b, M, D)
        for blk in s.regressor.blocks:
            x = blk(x, zv, pm, pv)
        zm = s.regressor.norm(x)
        y = zm + pm
        for blk in s.decoder.blocks:
            y = blk(y)
        pred = s.decoder.head(s.decoder.norm(y))
        target_loss = F.mse_loss(pred, pixel_target(img, msk))
        with torch.no_grad():
            tgt = s.encoder(img, msk)[:, 1:]
        align_loss = F.mse_loss(zm, tgt)
        return target_loss + cfg["ALIGN"] * align_loss, {"target_loss": target_loss, "align_loss": align_loss}


class BEiT(nn.Module):
    def __init__(s):
        super().__init__()
        s.encoder, s.decoder = Encoder(with_mask_token=True), Decoder()

    def loss(s, img, vis, msk, maskf):
        z = s.encoder(img, maskf=maskf)
        zm = torch.gather(z, 1, (msk + 1).unsqueeze(-1).expand(-1, -1, D))  # +1: skip cls
        target_loss = F.mse_loss(s.decoder.head(zm), pixel_target(img, msk))
        return target_loss, {"target_loss": target_loss}


class MAE(nn.Module):
    def __init__(s):
        super().__init__()
        s.encoder, s.decoder = Encoder(), MAEDecoder()

    def loss(s, img, vis, msk, maskf):
        z = s.encoder(img, keep=vis)
        pred = s.decoder(z, vis, maskf, msk, s.encoder.pos)
        target_loss = F.mse_loss(pred, pixel_target(img, msk))
        return target_loss, {"target_loss": target_loss}


METHODS = {"cae": CAE, "beit": BEiT, "mae": MAE}


def generate(method):
    init_path = os.path.join(HERE, f"{method}_step_init.safetensors")
    out_path = os.path.join(HERE, f"{method}_step_expected.safetensors")
    init, init_meta, init_sha = load(init_path)
    configure(json.loads(init_meta["config"]))
    assert cfg["METHOD"] == method, f"{init_path} was written for {cfg['METHOD']}"
    torch.manual_seed(0)
    model = METHODS[method]()
    state = {k[len("param."):]: v for k, v in init.items() if k.startswith("param.")}
    model.load_state_dict(state, strict=True)  # every mimlab parameter maps onto exactly one PyTorch one
    model.train()
    img, vis, msk = init["input.images"], init["input.visible"], init["input.masked"]
    maskf = init["input.maskF"]
    assert torch.equal(maskf, torch.zeros(B, N).scatter_(1, msk, 1.0)), "maskF disagrees with the masked indices"
    assert sorted(torch.cat([vis, msk], 1)[0].tolist()) == list(range(N))

    names = [n for n, _ in model.named_parameters()]
    decay = [p for n, p in model.named_parameters() if not (p.ndim <= 1 or n.endswith("bias"))]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 or n.endswith("bias")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["WD"]}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg["LR"], betas=(cfg["BETA1"], cfg["BETA2"]), eps=cfg["EPS"], foreach=False)

    out, losses = {}, []
    for step in range(cfg["STEPS"]):
        opt.zero_grad(set_to_none=True)
        loss, terms = model.loss(img, vis, msk, maskf)
        loss.backward()
        if step == 0:
            terms0 = terms
            out["loss.total"] = loss.detach()
            for k, v in terms.items():
                out["loss." + k] = v.detach()
            for n, p in model.named_parameters():
                out["grad." + n] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)  # None: unused
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["CLIP"])
        if step == 0:
            out["grad_norm"] = norm.detach().reshape(())
        losses.append(loss.item())
        opt.step()
    out["losses"] = torch.tensor(losses, dtype=torch.float32)
    for n, p in model.named_parameters():
        out[f"step{cfg['STEPS']}.{n}"] = p.detach().clone()

    meta = {"generator": "components/method/testdata/gen_step.py", "torch": torch.__version__, "init_sha256": init_sha}
    save(out_path, out, meta)
    print(f"wrote {os.path.basename(out_path)}: {len(out)} tensors; {len(names)} parameters ({len(decay)} decayed); "
          f"step-0 loss {losses[0]:.6f} ({', '.join(f'{k} {v.item():.6f}' for k, v in terms0.items())}), "
          f"grad norm {out['grad_norm'].item():.4f}; step-{cfg['STEPS'] - 1} loss {losses[-1]:.6f}")


if __name__ == "__main__":
    for method in sys.argv[1:] or list(METHODS):
        generate(method)
