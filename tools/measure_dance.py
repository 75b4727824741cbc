"""Measure `bailando dance`'s stages on a song of a given length, with random weights of a preset's size.

    python tools/measure_dance.py --preset cpu --seconds 180 --render
    python tools/measure_dance.py --preset paper --seconds 600 --random-codes   # memory of a 10-minute song

Prints one JSON line: seconds per stage (music features, generation, decoding, render) and the peak memory (max RSS
of this process and of its children: ffmpeg). The music is the first `--seconds` of a real track from ../shared
(repeated when the track is shorter). Random weights dance noise, but take the same time as trained ones.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
import bailando.gpt as G
from bailando.cli import decode_music, random_run
from bailando.data import shared_data
from bailando.render import ffmpeg_exe, render_video


def peak_mib() -> dict:
    "Max RSS so far of this process and of its largest waited-for child, MiB."
    own, kids = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dict(peak_mib=round(own / 1024), peak_child_mib=round(kids / 1024))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--preset', default='cpu'); p.add_argument('--seconds', type=float, default=180)
    p.add_argument('--render', action='store_true'); p.add_argument('--random-codes', action='store_true',
                   help='decode random codes of the song\'s length instead of generating them (memory of long songs)')
    a = p.parse_args()
    d = Path(tempfile.mkdtemp()); os.environ.setdefault('BAILANDO_CACHE', str(d/'cache'))
    run = random_run(d/'run', a.preset)
    track = shared_data('debian_game_music')/'asc-music'/'machine_wars.mp3'
    song = d/'song.wav'
    subprocess.run([ffmpeg_exe(), '-v', 'error', '-stream_loop', '-1', '-i', str(track), '-t', str(a.seconds), str(song)], check=True)
    out = dict(preset=a.preset, seconds=a.seconds, torch_threads=torch.get_num_threads(), load_avg=os.getloadavg()[0])
    t0 = time.perf_counter(); wav = decode_music(song, d/'music.wav'); out['reading the music'] = time.perf_counter() - t0
    times = {}
    if a.random_codes:
        t0 = time.perf_counter(); music = G.read_music(wav); times['music features'] = time.perf_counter() - t0
        gpt, vq = G.load_dancer(run, 'cpu'); K = vq.config['n_codes']
        codes = torch.randint(K, (1, len(music)))
        t0 = time.perf_counter(); joints = G.codes_to_joints(vq, codes, codes)[0]; times['decoding'] = time.perf_counter() - t0
    else: joints = G.dance(wav, run, device='cpu', progress=True, times=times)
    out |= {k: round(v, 1) for k, v in times.items()} | dict(frames=len(joints))
    if a.render:
        t0 = time.perf_counter(); render_video(joints, d/'dance.mp4', music=wav, progress=True)
        out['render'] = round(time.perf_counter() - t0, 1)
    out |= peak_mib() | dict(load_avg_after=os.getloadavg()[0])
    print(json.dumps(out), flush=True)


if __name__ == '__main__': main()
