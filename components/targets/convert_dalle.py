#!/usr/bin/env python3
"""Converts the released DALL-E dVAE encoder to the safetensors file targets.weights wants:

    python3 components/targets/convert_dalle.py encoder.pkl dalle_encoder.safetensors

encoder.pkl is https://cdn.openai.com/dall-e/encoder.pkl (a pickled module: `pip install DALL-E` provides the
dall_e package it needs), or mmselfsup's plain state dict dalle_encoder.pth (no package needed). Only torch is
required for the state dict. Names are kept (blocks.input.w, ..., blocks.output.conv.w); fp16 becomes fp32.
"""
import json, struct, sys
import torch

src, dst = sys.argv[1], sys.argv[2]
obj = torch.load(src, map_location="cpu")
sd = obj.state_dict() if hasattr(obj, "state_dict") else obj
sd = {k.split("encoder.", 1)[-1] if k.startswith(("encoder.", "module.encoder.")) else k: v for k, v in sd.items()}
header, blobs, off = {"__metadata__": {"source": src}}, [], 0
for name in sorted(sd):
    b = sd[name].float().contiguous().numpy().astype("<f4").tobytes()
    header[name] = {"dtype": "F32", "shape": list(sd[name].shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b); off += len(b)
h = json.dumps(header).encode(); h += b" " * ((8 - len(h) % 8) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h)
    for b in blobs: f.write(b)
print(f"wrote {dst}: {len(sd)} tensors")
