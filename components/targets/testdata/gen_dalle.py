#!/usr/bin/env python3
"""Generates testdata/dalle_tiny.safetensors for TestDalleEncoderMatchesPyTorch: a tiny-width DALL-E dVAE
encoder (n_hid 8, 1 block per group, vocabulary 16) with random weights, written from the structure of
openai/DALL-E dall_e/encoder.py (cae-facts 3.1): input conv 7x7, four groups of EncoderBlocks (id path
1x1 when widths differ; res path relu-conv3-relu-conv3-relu-conv3-relu-conv1 to n_out/4, n_out/4,
n_out/4, n_out; out = id + res / n_layers^2), max-pool 2 after groups 1-3, then relu and a 1x1 conv to the
vocabulary. Parameter names are the released state dict's (blocks.input.w, blocks.group_1.block_1.id_path.w,
blocks.group_1.block_1.res_path.conv_1.w, ..., blocks.output.conv.w).

Run with Debian's torch:  /usr/bin/python3 components/targets/testdata/gen_dalle.py
"""
import json, os, struct
from collections import OrderedDict
import torch, torch.nn as nn, torch.nn.functional as F

torch.manual_seed(0)
N_HID, BLK, VOCAB, GROUPS = 8, 1, 16, 4
N_LAYERS = GROUPS * BLK

class Conv2d(nn.Module):
    def __init__(s, n_in, n_out, kw):
        super().__init__()
        s.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / (n_in * kw * kw) ** 0.5)
        s.b = nn.Parameter(0.1 * torch.randn(n_out))
        s.kw = kw
    def forward(s, x):
        return F.conv2d(x, s.w, s.b, padding=(s.kw - 1) // 2)

class EncoderBlock(nn.Module):
    def __init__(s, n_in, n_out):
        super().__init__()
        n_hid = n_out // 4
        s.post_gain = 1 / (N_LAYERS ** 2)
        s.id_path = Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        s.res_path = nn.Sequential(OrderedDict([
            ("relu_1", nn.ReLU()), ("conv_1", Conv2d(n_in, n_hid, 3)),
            ("relu_2", nn.ReLU()), ("conv_2", Conv2d(n_hid, n_hid, 3)),
            ("relu_3", nn.ReLU()), ("conv_3", Conv2d(n_hid, n_hid, 3)),
            ("relu_4", nn.ReLU()), ("conv_4", Conv2d(n_hid, n_out, 1))]))
    def forward(s, x):
        return s.id_path(x) + s.post_gain * s.res_path(x)

def group(n_in, n_out, pool):
    items = [(f"block_{i + 1}", EncoderBlock(n_in if i == 0 else n_out, n_out)) for i in range(BLK)]
    if pool:
        items.append(("pool", nn.MaxPool2d(kernel_size=2)))
    return nn.Sequential(OrderedDict(items))

class Encoder(nn.Module):
    def __init__(s):
        super().__init__()
        s.blocks = nn.Sequential(OrderedDict([
            ("input", Conv2d(3, N_HID, 7)),
            ("group_1", group(N_HID, N_HID, True)),
            ("group_2", group(N_HID, 2 * N_HID, True)),
            ("group_3", group(2 * N_HID, 4 * N_HID, True)),
            ("group_4", group(4 * N_HID, 8 * N_HID, False)),
            ("output", nn.Sequential(OrderedDict([("relu", nn.ReLU()), ("conv", Conv2d(8 * N_HID, VOCAB, 1))]))),
        ]))
    def forward(s, x):
        return s.blocks(x)

enc = Encoder().eval()
x = torch.rand(2, 3, 24, 24)            # a 3x3 token grid
mapped = 0.8 * x + 0.1                  # map_pixels
with torch.no_grad():
    logits = enc(mapped)
tokens = logits.argmax(1).flatten(1)
out = {k: v.detach() for k, v in enc.state_dict().items()}
out.update({"input.images": x, "expected.logits": logits, "expected.tokens": tokens})

def save(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        dt, b = ("I64", t.numpy().astype("<i8").tobytes()) if t.dtype == torch.int64 else ("F32", t.float().numpy().astype("<f4").tobytes())
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    h = json.dumps(header).encode(); h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)

save(os.path.join(os.path.dirname(os.path.abspath(__file__)), "dalle_tiny.safetensors"), out,
     {"generator": "components/targets/testdata/gen_dalle.py", "torch": torch.__version__})
print("wrote dalle_tiny.safetensors")
