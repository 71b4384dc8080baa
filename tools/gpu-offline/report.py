"""The checks of a GPU run (tools/gpu-offline/run): the same work on the GPU and on the CPU,
compared, with timings. Writes OUT/report.json and each command's output beside it.

- the PTX JIT: one transcription with an empty driver cache, then again with it filled, and
  once more with the process under MDWE (what systemd's MemoryDenyWriteExecute=yes imposes);
- STT: the shared dev clips' transcripts on both devices;
- the voice: one sentence without noise on both devices, and their difference in dB;
- the LLM: greedy answers to llama.cpp's reference cases, where they first differ and
  llama.cpp's margin there;
- a spoken question through the whole pipeline (`wick ask`) and `wick bench` for all three
  models, and for the synthetic Llama 3.2 3B.
"""
import json, math, os, subprocess, sys, time, wave, struct

here, out = sys.argv[1:3]
wick = os.path.join(here, "bin", "wick")
shared = os.path.join(here, "shared")
clips = sorted(os.path.join(shared, "speech/dev", f) for f in os.listdir(os.path.join(shared, "speech/dev")) if f.endswith(".wav"))
config = os.path.join(out, "wick.toml")
reference = json.load(open(os.path.join(shared, "reference/llm/smollm2-135m-q4_1.json")))
report = {"steps": {}}


def run(name, args, env=None, timeout=300, config_file=None):
    cmd = [wick, "--config", config_file or config, "--models-dir", os.path.join(here, "models")] + args
    t = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
        rc, stdout, stderr = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        rc, stdout, stderr = "timeout", "", ""
    s = round(time.time() - t, 3)
    with open(os.path.join(out, name + ".out"), "w") as f:
        f.write(stdout)
    with open(os.path.join(out, name + ".err"), "w") as f:
        f.write(stderr)
    report["steps"][name] = {"rc": rc, "s": s}
    print(f"{name}: rc {rc}, {s} s", file=sys.stderr)
    return stdout if rc == 0 else None


def write_config(path, system=None):
    # faster-whisper's copy of the model is not in the bundle: the Whisper directory is named.
    with open(path, "w") as f:
        f.write(f'[stt]\nmodel_dir = "{os.path.join(here, "models/test/stt")}"\n')
        if system is not None:
            f.write(f"[llm]\nsystem = {json.dumps(system)}\n")


def samples(path):
    with wave.open(path) as w:
        n = w.getnframes()
        return struct.unpack(f"<{n}h", w.readframes(n))


write_config(config)
try:
    report["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
                                   capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    report["gpu"] = "no nvidia-smi: no NVIDIA driver here"
cache = os.path.join(out, "cuda-cache")
jit_env = {"CUDA_CACHE_PATH": cache}
run("jit-cold", ["--device", "cuda", "transcribe", clips[0]], env=jit_env)
run("jit-warm", ["--device", "cuda", "transcribe", clips[0]], env=jit_env)
mdwe = "import ctypes,os,sys; ctypes.CDLL(None).prctl(65,1,0,0,0); os.execv(sys.argv[1],sys.argv[1:])"
t = time.time()
p = subprocess.run([sys.executable, "-c", mdwe, wick, "--config", config, "--models-dir", os.path.join(here, "models"),
                    "--device", "cuda", "transcribe", clips[0]], capture_output=True, text=True, env={**os.environ, **jit_env})
report["steps"]["mdwe-transcribe"] = {"rc": p.returncode, "s": round(time.time() - t, 3), "stderr": p.stderr[-300:]}

for dev in ["cuda", "cpu"]:
    env = jit_env
    stt = run(f"stt-{dev}", ["--device", dev, "transcribe", "--json"] + clips, env=env)
    report[f"stt-{dev}"] = [json.loads(l)["text"] for l in stt.splitlines()] if stt else None
    run(f"say-{dev}", ["--device", dev, "say", "--noise-scale", "0", "--noise-w", "0", "-o", os.path.join(out, f"say-{dev}.wav"),
                       "Hello! I am wick, your voice assistant. The quick brown fox jumps over the lazy dog."], env=env)
    cases = []
    for case in reference["cases"]:
        msgs, want = case["messages"], case["greedy_ids"]
        cfg = os.path.join(out, f"llm-{case['name']}.toml")
        write_config(cfg, msgs[0]["content"])
        history = []
        for u, a in zip(msgs[1:-1:2], msgs[2:-1:2]):
            history += ["--history", u["content"], a["content"]]
        got = run(f"llm-{dev}-{case['name']}", ["--device", dev, "chat", "--greedy", "--json", "--ids", "--max-tokens",
                                                str(len(want))] + history + ["--prompt", msgs[-1]["content"]],
                  env=env, config_file=cfg)
        if got is None:
            cases.append({"case": case["name"], "error": True})
            continue
        got = json.loads(got.strip().splitlines()[-1])
        ids = got["gen_ids"]
        first = next((i for i, (a, b) in enumerate(zip(ids, want)) if a != b), None)
        margins = case["top1_minus_top2_logit"]
        cases.append({"case": case["name"], "prompt_ids_equal": got["prompt_ids"] == case["prompt_ids"],
                      "first_difference": first, "llama_cpp_margin_there": None if first is None else margins[first],
                      "text": got["text"]})
    report[f"llm-{dev}"] = cases
    ask = run(f"ask-{dev}", ["--device", dev, "ask", "--json", "-o", os.path.join(out, f"ask-{dev}.wav"), clips[0]], env=env)
    report[f"ask-{dev}"] = json.loads(ask) if ask else None
    for what, extra in [("llm", []), ("stt", clips), ("tts", []),
                        ("llm-3b", ["--synthetic", "llama-3.2-3b-q4_k_m", "--gen-tokens", "128"])]:
        b = run(f"bench-{what}-{dev}", ["--device", dev, "bench", what.split("-")[0], "--json"] + extra, env=env)
        if b:
            report[f"bench-{what}-{dev}"] = json.loads(b.strip().splitlines()[-1])

if report.get("stt-cuda") and report.get("stt-cpu"):
    report["stt-identical"] = sum(a == b for a, b in zip(report["stt-cuda"], report["stt-cpu"]))
try:
    a, b = samples(os.path.join(out, "say-cuda.wav")), samples(os.path.join(out, "say-cpu.wav"))
    n = min(len(a), len(b))
    noise = sum((a[i] - b[i]) ** 2 for i in range(n))
    report["say-lengths"] = [len(a), len(b)]
    report["say-snr-db"] = round(10 * math.log10(sum(x * x for x in b[:n]) / max(noise, 1)), 1)
except (OSError, wave.Error, ZeroDivisionError) as e:
    report["say-snr-db"] = f"not compared: {e}"
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f, indent=1)
print(json.dumps({k: v for k, v in report.items() if not k.startswith(("stt-c", "llm-"))}, indent=1))
