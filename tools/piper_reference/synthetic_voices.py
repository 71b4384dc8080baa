#!/usr/bin/env python3
"""Synthetic Piper voices and their reference audio, for wick's parity tests.

No multi-speaker or "high" Piper voice can be fetched from the registries wick's CI
reaches, so this builds them: Piper's own VITS code (the `piper.train.vits` package from
the piper-tts sdist) with seeded random weights, exported to ONNX the way Piper's
`export_onnx` does (TorchScript exporter, opset 15, the same inputs), then run by
onnxruntime at zero noise on the reference sentences' phoneme ids. Random weights make
the audio noise-like, but the graph, the layer names and the arithmetic are Piper's, so
wick reading and running them sample for sample is a real check of the network.

Usage: synthetic_voices.py --piper-train DIR --like VOICE.onnx.json --ids REFERENCE.json --out DIR
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np


# Each voice: a name, Piper's decoder settings ("medium" or "high" quality) and a speaker count.
VOICES = [
    {"name": "synthetic-multi-medium", "quality": "medium", "speakers": 4, "seed": 11},
    {"name": "synthetic-high", "quality": "high", "speakers": 1, "seed": 12},
]
# Speaker names as a multi-speaker voice's speaker_id_map gives them; the numeric one checks
# that wick looks names up before reading a number as an id.
SPEAKER_NAMES = ["ada", "3", "p239", "zed"]

DECODERS = {
    "medium": dict(
        resblock="2",
        resblock_kernel_sizes=(3, 5, 7),
        resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)),
        upsample_rates=(8, 8, 4),
        upsample_initial_channel=256,
        upsample_kernel_sizes=(16, 16, 8),
    ),
    "high": dict(
        resblock="1",
        resblock_kernel_sizes=(3, 7, 11),
        resblock_dilation_sizes=((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        upsample_rates=(8, 8, 2, 2),
        upsample_initial_channel=512,
        upsample_kernel_sizes=(16, 16, 4, 4),
    ),
}


def build(models, torch, spec, num_symbols):
    torch.manual_seed(spec["seed"])
    speakers = spec["speakers"]
    model = models.SynthesizerTrn(
        n_vocab=num_symbols,
        spec_channels=1024 // 2 + 1,
        segment_size=8192 // 256,
        inter_channels=192,
        hidden_channels=192,
        filter_channels=768,
        n_heads=2,
        n_layers=6,
        kernel_size=3,
        p_dropout=0.1,
        n_speakers=speakers,
        # Piper's training gives multi-speaker voices 512 speaker channels.
        gin_channels=512 if speakers > 1 else 0,
        use_sdp=True,
        **DECODERS[spec["quality"]],
    )
    model.eval()
    with torch.no_grad():
        # HiFi-GAN's init (N(0, 0.01)) leaves a fresh decoder nearly silent; louder weights
        # keep the reference well above float rounding so the SNR measures the network.
        for name, p in model.dec.named_parameters():
            if name.endswith("weight_v") or (name.endswith("weight") and p.dim() == 3):
                p.mul_(8.0)
        model.dec.remove_weight_norm()
        # VITS starts every coupling layer as the identity (zero last projections), so a
        # fresh network's flows, and the speaker conditioning inside them, would change
        # nothing. Random projections make every part of the network matter.
        generator = torch.Generator().manual_seed(spec["seed"])
        for module in model.modules():
            kind = type(module).__name__
            last = {"ConvFlow": "proj", "ResidualCouplingLayer": "post"}.get(kind)
            if last is not None:
                conv = getattr(module, last)
                std = 0.1 if kind == "ConvFlow" else 0.02
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * std)
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * std * 5)
        # A fresh network has many constant tensors (layer norms' ones and zeros). The
        # exporter merges initializers with equal values, which a trained voice never has;
        # small random offsets keep every tensor its own, under its own name.
        for p in model.parameters():
            if p.numel() > 1 and bool((p == p.flatten()[0]).all()):
                p.add_(torch.randn(p.shape, generator=generator) * 0.1)
        # Log-durations are (z - m) * exp(-logs) at inference: shift and stretch them so
        # durations spread over a few frames per phoneme instead of one.
        model.dp.flows[0].m.fill_(-1.0)
        model.dp.flows[0].logs.fill_(-0.5)
    return model


def export(torch, model, path, num_symbols):
    """Piper's export: `infer` behind a forward taking (ids, lengths, scales[, sid])."""

    def forward(text, text_lengths, scales, sid=None):
        audio = model.infer(
            text,
            text_lengths,
            noise_scale=scales[0],
            length_scale=scales[1],
            noise_scale_w=scales[2],
            sid=sid,
        )[0]
        return audio.unsqueeze(1)

    model.forward = forward
    ids = torch.randint(0, num_symbols, (1, 50), dtype=torch.long)
    lengths = torch.LongTensor([50])
    scales = torch.FloatTensor([0.667, 1.0, 0.8])
    sid = torch.LongTensor([0]) if model.n_speakers > 1 else None
    torch.onnx.export(
        model,
        (ids, lengths, scales, sid),
        str(path),
        opset_version=15,
        input_names=["input", "input_lengths", "scales", "sid"],
        output_names=["output"],
        dynamic_axes={
            "input": {0: "batch_size", 1: "phonemes"},
            "input_lengths": {0: "batch_size"},
            "output": {0: "batch_size", 2: "time"},
        },
        dynamo=False,
    )


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--piper-train", required=True, type=Path, help="piper-tts sdist's src/piper/train")
    ap.add_argument("--like", required=True, type=Path, help="a real voice's .onnx.json to take phonemes from")
    ap.add_argument("--ids", required=True, type=Path, help="reference.json with phoneme_ids per sentence")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()

    import onnxruntime
    import torch

    sys.path.insert(0, str(args.piper_train))
    from vits import models  # Piper's VITS, imported from its training package

    torch.set_num_threads(2)
    like = json.loads(args.like.read_text())
    num_symbols = like["num_symbols"]
    sentences = [ids for item in json.loads(args.ids.read_text())["items"] for ids in item["phoneme_ids"]]
    args.out.mkdir(parents=True, exist_ok=True)

    manifest = {"engine": f"piper-tts sdist VITS + torch {torch.__version__} + onnxruntime {onnxruntime.__version__}",
                "scales": [0.0, 1.0, 0.0], "voices": []}
    for spec in VOICES:
        model = build(models, torch, spec, num_symbols)
        onnx_path = args.out / f"{spec['name']}.onnx"
        export(torch, model, onnx_path, num_symbols)

        config = dict(like)
        config["num_speakers"] = spec["speakers"]
        config["speaker_id_map"] = (
            {n: i for i, n in enumerate(SPEAKER_NAMES[: spec["speakers"]])} if spec["speakers"] > 1 else {}
        )
        config["audio"] = dict(like["audio"], quality=spec["quality"])
        (args.out / f"{spec['name']}.onnx.json").write_text(json.dumps(config, ensure_ascii=False, indent=1))

        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        speakers = [0, spec["speakers"] - 1] if spec["speakers"] > 1 else [None]
        cases = []
        for speaker in speakers:
            for k, ids in enumerate(sentences[:3]):
                feed = {
                    "input": np.array([ids], dtype=np.int64),
                    "input_lengths": np.array([len(ids)], dtype=np.int64),
                    "scales": np.array(manifest["scales"], dtype=np.float32),
                }
                if speaker is not None:
                    feed["sid"] = np.array([speaker], dtype=np.int64)
                audio = session.run(None, feed)[0].reshape(-1).astype("<f4")
                raw = f"{spec['name']}.s{speaker if speaker is not None else 0}.{k}.f32"
                (args.out / raw).write_bytes(audio.tobytes())
                cases.append({"speaker": speaker, "phoneme_ids": ids, "audio": raw, "samples": int(audio.size),
                              "rms": float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))})
        manifest["voices"].append({"name": spec["name"], "quality": spec["quality"], "speakers": spec["speakers"],
                                   "onnx_sha256": sha256(onnx_path), "cases": cases})
        print(f"{spec['name']}: {onnx_path.stat().st_size / 1e6:.1f} MB, "
              + ", ".join(f"{c['samples']} samples rms {c['rms']:.3g}" for c in cases))
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
