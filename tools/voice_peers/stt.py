"""faster-whisper's side of tools/compare-voice: loads a CTranslate2 Whisper model, transcribes
the given WAV files one by one with the decoding wick uses (greedy, English, no timestamps,
no conditioning on earlier text), and prints one JSON line: load and transcription seconds,
and the texts.

usage: stt.py MODEL_DIR COMPUTE_TYPE THREADS WAV...
"""
import json
import sys
import time

from faster_whisper import WhisperModel

model_dir, compute_type, threads, *wavs = sys.argv[1:]
t0 = time.perf_counter()
model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=int(threads))
t1 = time.perf_counter()
texts = []
for wav in wavs:
    segments, _ = model.transcribe(wav, language="en", beam_size=1, without_timestamps=True,
                                   condition_on_previous_text=False, vad_filter=False)
    texts.append("".join(s.text for s in segments).strip())
t2 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "transcribe_s": t2 - t1, "texts": texts}))
