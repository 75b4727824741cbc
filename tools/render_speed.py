"""Seconds of rendering per second of dance (mp4 with music, caption and beat timeline), in one process and as two videos
in two worker processes, with the picture's pixel count. Usage: python tools/render_speed.py SIZE [SECONDS] [--part-workers N]
Measure another checkout's renderer with PYTHONPATH=/that/checkout."""
import os, sys, tempfile, time
from pathlib import Path
import bailando.render as R

if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    size, secs = int(args[0]), float(args[1]) if len(args) > 1 else 10.0
    d = Path(tempfile.mkdtemp()); dance = R.demo_dance(secs); music = R.click_track(d/'m.wav', secs + 1)
    beats = R.beats_of(dance, R.demo_music_features(len(dance)))
    title = 'gBR_sBM_cAll_d04_mBR0_ch01: music mBR0, style Break'
    job = lambda i, **kw: dict(joints=dance, path=d/f'v{i}.mp4', music=music, title=title, size=size, beats=beats, **kw)
    W, H = R.StickFigure([dance], title=title, size=size, beats=beats).shape
    t0 = time.perf_counter(); R.render_video(**job(0)); one = (time.perf_counter() - t0) / secs
    t0 = time.perf_counter(); R.render_videos([job(1), job(2)], workers=2); two = (time.perf_counter() - t0) / (2 * secs)
    line = (f'{Path(R.__file__).parent.parent.name}: size={size}: {W}x{H} = {W * H} px, {secs:g} s dance, load {os.getloadavg()[0]:.1f}: '
            f'one process {one:.3f} s/s ({one / (W * H) * 1e6:.2f} s/s per Mpx); 2 videos in 2 workers {two:.3f} s/s per video '
            f'({two / (W * H) * 1e6:.2f} per Mpx)')
    if '--part-workers' in sys.argv:
        n = int(sys.argv[sys.argv.index('--part-workers') + 1])
        t0 = time.perf_counter(); R.render_video(**job(3, workers=n)); part = (time.perf_counter() - t0) / secs
        line += f'; one video in {n} workers {part:.3f} s/s'
    print(line)
