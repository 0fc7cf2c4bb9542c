#!/usr/bin/env python3
"""Generates testdata/cae_step_bf16_expected.safetensors for TestCAEStepBF16 (components/method/precision_test.go,
issue 34): PyTorch's CAE training step under torch.autocast(device_type="cpu", dtype=torch.bfloat16), from the
same parameters and batch as the float32 parity test (testdata/cae_step_init.safetensors, see gen_step.py, whose
modules this script reuses unchanged).

Autocast puts every Linear, the patch-embedding Conv2d and attention's two matmuls in bf16 (operands cast to bf16,
float32 accumulation, a bf16 result). PyTorch 1.13's CPU autocast leaves LayerNorm, softmax and the MSE losses to
run in whatever dtype reaches them (bf16 after a bf16 matmul), while its CUDA autocast, what a GPU run of the
official code gets, runs them in float32; mimlab's policy is CUDA's (nn/precision.go), so this script casts the
inputs of LayerNorm, softmax and the losses to float32 explicitly. The master weights, the gradients they receive
and the optimizer are float32, as with autocast and a float32 model.

It writes loss.total, loss.target_loss, loss.align_loss, grad.<name> (step 0), grad_norm and losses [STEPS]
(each AdamW step's loss before its update, same optimiser as gen_step.py), plus the init file's sha256.

Run with Debian's torch:  /usr/bin/python3 components/method/testdata/gen_step_bf16.py
"""
import json, os
import torch
import torch.nn as nn
import torch.nn.functional as F

import gen_step as gs

HERE = os.path.dirname(os.path.abspath(__file__))


def layer_norm_fp32(self, x):
    with torch.autocast(device_type="cpu", enabled=False):
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)


def attention_fp32_softmax(s, xq, xk, xv):
    D, H = gs.D, gs.H
    b, nq, _ = xq.shape; nk = xk.shape[1]; hd = D // H
    q = F.linear(xq, s.q.weight, s.q_bias).reshape(b, nq, H, hd).transpose(1, 2)
    k = F.linear(xk, s.k.weight).reshape(b, nk, H, hd).transpose(1, 2)
    v = F.linear(xv, s.v.weight, s.v_bias).reshape(b, nk, H, hd).transpose(1, 2)
    a = ((q * hd ** -0.5) @ k.transpose(-2, -1)).float().softmax(-1)  # softmax in float32
    return s.proj((a @ v).transpose(1, 2).reshape(b, nq, D))  # a @ v: autocast casts a back to bf16


_mse = F.mse_loss


def mse_fp32(a, b):
    with torch.autocast(device_type="cpu", enabled=False):
        return _mse(a.float(), b.float())


nn.LayerNorm.forward = layer_norm_fp32
gs.Attention.forward = attention_fp32_softmax
F.mse_loss = mse_fp32


def generate():
    init_path = os.path.join(HERE, "cae_step_init.safetensors")
    out_path = os.path.join(HERE, "cae_step_bf16_expected.safetensors")
    init, init_meta, init_sha = gs.load(init_path)
    gs.configure(json.loads(init_meta["config"]))
    cfg = gs.cfg
    torch.manual_seed(0)
    model = gs.CAE()
    model.load_state_dict({k[len("param."):]: v for k, v in init.items() if k.startswith("param.")}, strict=True)
    model.train()
    img, vis, msk, maskf = init["input.images"], init["input.visible"], init["input.masked"], init["input.maskF"]
    decay = [p for n, p in model.named_parameters() if not (p.ndim <= 1 or n.endswith("bias"))]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 or n.endswith("bias")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["WD"]}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg["LR"], betas=(cfg["BETA1"], cfg["BETA2"]), eps=cfg["EPS"], foreach=False)
    out, losses = {}, []
    for step in range(cfg["STEPS"]):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            loss, terms = model.loss(img, vis, msk, maskf)
        assert loss.dtype == torch.float32
        loss.backward()
        if step == 0:
            out["loss.total"] = loss.detach()
            for k, v in terms.items():
                out["loss." + k] = v.detach()
            for n, p in model.named_parameters():
                assert p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32)
                out["grad." + n] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["CLIP"])
        if step == 0:
            out["grad_norm"] = norm.detach().reshape(())
        losses.append(loss.item())
        opt.step()
    out["losses"] = torch.tensor(losses, dtype=torch.float32)
    meta = {"generator": "components/method/testdata/gen_step_bf16.py", "torch": torch.__version__,
            "init_sha256": init_sha, "autocast": "cpu bfloat16; LayerNorm, softmax, MSE in float32"}
    gs.save(out_path, out, meta)
    print(f"wrote {os.path.basename(out_path)}: {len(out)} tensors; step-0 loss {losses[0]:.6f} "
          f"(target {out['loss.target_loss'].item():.6f}, align {out['loss.align_loss'].item():.6f}), "
          f"grad norm {out['grad_norm'].item():.4f}; step-{cfg['STEPS'] - 1} loss {losses[-1]:.6f}")


if __name__ == "__main__":
    generate()
