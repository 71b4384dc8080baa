"""piper-tts's side of tools/compare-voice: loads a Piper voice, speaks the text on stdin into
OUT.wav once, and prints one JSON line: load and synthesis seconds, and the audio's length.

usage: tts.py VOICE.onnx OUT.wav < TEXT
"""
import json
import sys
import time
import wave

from piper import PiperVoice

voice_path, out = sys.argv[1:]
text = sys.stdin.read()
t0 = time.perf_counter()
voice = PiperVoice.load(voice_path)
t1 = time.perf_counter()
with wave.open(out, "wb") as w:
    voice.synthesize_wav(text, w)
t2 = time.perf_counter()
with wave.open(out, "rb") as w:
    audio_s = w.getnframes() / w.getframerate()
print(json.dumps({"load_s": t1 - t0, "synth_s": t2 - t1, "audio_s": audio_s}))
