#!/usr/bin/env python3
"""Summarise ONNX Runtime profiles (the JSON files MIMLAB_ORT_OPTIONS=profile=PREFIX makes each session write)
of mimlab training steps: kernel time per op type per step, the share spent on attention-shaped tensors (any
input or output whose last two dims are both token counts: the [.., Tq, Tk] score matrices, their softmax and
gradients), and ORT's own memory figures (peak bytes in use by tensors, bytes its arena held).
Run: bench/ort_profile.py TOKENS MASKED SKIP file.json...   (SKIP = model runs to drop per file: warm-up)"""
import json, sys, collections

tokens, masked, skip = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tset = {tokens, tokens + 1, masked, masked + 1, tokens - masked, tokens - masked + 1}

def shapes(args):
    for key in ("input_type_shape", "output_type_shape"):
        for d in args.get(key, []):
            for dims in d.values():
                yield dims

def attention_shaped(args):
    return any(len(s) >= 2 and s[-1] in tset and s[-2] in tset for s in shapes(args))

by_op, attn, runs, total = collections.Counter(), 0.0, 0, 0.0
peak_in_use = arena_held = 0
for path in sys.argv[4:]:
    events = json.load(open(path))
    # model_run events mark each step; keep the node events inside the runs after the first `skip`.
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    # the largest graph is the training step; evaluation or init programs have their own sessions/files
    keep = spans[skip:]
    runs += len(keep)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        if not any(a <= e["ts"] <= b for a, b in keep):
            continue
        args = e["args"]
        by_op[args["op_name"]] += e["dur"]
        total += e["dur"]
        if attention_shaped(args):
            attn += e["dur"]
        peak_in_use = max(peak_in_use, int(args.get("mem_in_use_peak", 0)))
        arena_held = max(arena_held, int(args.get("mem_arena_held", 0)))
if runs == 0:
    sys.exit("no model runs after the warm-up in " + " ".join(sys.argv[4:]))
print(f"PROFILE engine=ort steps={runs} kernel_ms_per_step={total / runs / 1000:.1f} attention_ms_per_step={attn / runs / 1000:.1f} "
      f"attention_share={attn / total:.2f} peak_tensor_mb={peak_in_use / 2**20:.0f} arena_held_mb={arena_held / 2**20:.0f}")
for op, us in by_op.most_common(8):
    print(f"PROFILE-OP engine=ort op={op} ms_per_step={us / runs / 1000:.1f} share={us / total:.2f}")
