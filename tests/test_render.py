"05_render: videos (speed, music, atomic writes, bad input), joint export, BVH round trip, the study report in a real browser."
import json, os, shutil, subprocess, time
from pathlib import Path
import numpy as np
import pytest
from bailando.render import (render_video, render_videos, click_track, audio_seconds, ffmpeg_exe, demo_dance,
                             demo_music_features, StickFigure, save_joints, save_bvh, bvh_positions, write_report)

def _probe(path): return subprocess.run([ffmpeg_exe(), '-hide_banner', '-i', str(path)], capture_output=True, text=True).stderr

def test_20s_dance_renders_under_a_minute_with_music(tmp_path):
    dance = demo_dance(20.0)
    music = click_track(tmp_path/'music.wav', 25.0)                 # longer than the dance: cut to it
    t0 = time.time(); mp4 = render_video(dance, tmp_path/'d.mp4', music=music, title='speed test')
    took = time.time() - t0
    print(f'20 s dance (1200 frames, 320 px) rendered with music in {took:.1f} s')
    assert took < 60
    info = _probe(mp4)
    assert 'h264' in info and 'aac' in info and abs(audio_seconds(mp4) - 20.0) < 0.1

def test_music_shorter_than_the_dance_is_a_clear_error(tmp_path):
    music = click_track(tmp_path/'short.wav', 1.0)
    with pytest.raises(ValueError, match='shorter than the dance'): render_video(demo_dance(2.0), tmp_path/'x.mp4', music=music)
    with pytest.raises(FileNotFoundError, match='music file not found'): render_video(demo_dance(1.0), tmp_path/'x.mp4', music=tmp_path/'none.wav')
    assert list(tmp_path.iterdir()) == [music]

def test_a_failed_render_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    good = render_video(demo_dance(0.5), tmp_path/'d.mp4', size=96)
    before = good.read_bytes()
    calls = []
    def boom(self, t):
        calls.append(t)
        if len(calls) > 10: raise RuntimeError('killed mid-render')
        return orig(self, t)
    orig = StickFigure.frame; monkeypatch.setattr(StickFigure, 'frame', boom)
    with pytest.raises(RuntimeError, match='killed mid-render'): render_video(demo_dance(1.0), tmp_path/'d.mp4', size=96)
    with pytest.raises(RuntimeError, match='killed mid-render'): render_video(demo_dance(1.0), tmp_path/'new.mp4', size=96)
    assert good.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ['d.mp4']

def test_bad_joints_and_unwritable_folder(tmp_path):
    bad = np.zeros((30, 24, 3), np.float32); bad[7, 3, 0] = np.nan
    with pytest.raises(ValueError, match='NaN or inf at frame 7'): render_video(bad, tmp_path/'x.mp4')
    with pytest.raises(ValueError, match=r'\(T, 24, 3\)'): render_video(np.zeros((30, 72)), tmp_path/'x.mp4')
    with pytest.raises(ValueError, match='must end in .mp4 or .gif'): render_video(demo_dance(0.2), tmp_path/'x.avi')
    (tmp_path/'file').write_text('not a folder')
    with pytest.raises(OSError, match='cannot create folder'): render_video(demo_dance(0.2), tmp_path/'file'/'x.mp4')
    with pytest.raises(OSError, match='cannot create folder'): save_bvh(demo_dance(0.2), tmp_path/'file'/'x.bvh')

def test_gif_side_by_side_and_workers(tmp_path):
    gif = render_video({'ground truth': demo_dance(1.0), 'generated': demo_dance(1.0, seed=1)}, tmp_path/'p.gif', size=96, gif_fps=10)
    assert gif.read_bytes()[:6] == b'GIF89a' and '192x' in _probe(gif)   # two 96-px panels
    outs = render_videos([dict(joints=demo_dance(0.5, seed=s), path=tmp_path/f'w{s}.mp4', size=96) for s in range(2)], workers=2)
    assert [p.name for p in outs] == ['w0.mp4', 'w1.mp4'] and all('h264' in _probe(p) for p in outs)

def test_save_joints_in_the_originals_format(tmp_path):
    d = demo_dance(1.0)
    npy, pkl = save_joints(d, tmp_path/'gBR_sBM_cAll_d04_mBR0_ch01')
    assert np.array_equal(np.load(npy), d)
    pos = np.load(pkl, allow_pickle=True).item()['pred_position']    # how the original evaluation reads it
    assert pos.shape == (len(d), 72) and np.array_equal(pos.reshape(-1, 24, 3), d)

def _roundtrip_mm(joints, path):
    return np.linalg.norm(bvh_positions(save_bvh(joints, path)) - joints, axis=-1).max(1) * 1000   # (T,) worst joint, mm

def test_bvh_round_trip_synthetic(tmp_path):
    d = demo_dance(3.0, seed=5)
    err = _roundtrip_mm(d, tmp_path/'d.bvh')
    assert len(err) == len(d) and err.max() < 10
    text = (tmp_path/'d.bvh').read_text()
    assert text.startswith('HIERARCHY') and f'Frames: {len(d)}' in text and 'Frame Time: 0.01666667' in text

def test_bvh_round_trip_real_aistpp(shared, tmp_path):
    from bailando.data import load_joints
    root = shared/'aistpp_annotations_sample'
    for seq in sorted(p.stem for p in (root/'motions').glob('*.pkl')):
        j = load_joints(root, seq)
        err = _roundtrip_mm(j, tmp_path/f'{seq}.bvh')
        assert err.max() < 10, f'{seq}: worst frame {err.argmax()} off by {err.max():.2f} mm'

def _fake_run(run: Path, partial=False):
    "A fabricated study run folder: TEST DATA, made-up numbers."
    import torch
    (run/'logs').mkdir(parents=True); (run/'results').mkdir(); (run/'dances').mkdir(); (run/'videos').mkdir()
    (run/'params.json').write_text(json.dumps({'name': 'fake', 'seed': 0, 'command': 'bailando study --name fake'}))
    (run/'metrics.json').write_text(json.dumps({'ground truth': {'FID_k': 17.1, 'FID_g': 10.6, 'Div_k': 8.19, 'Div_g': 7.45, 'BAS': 0.2374},
                                                'fake model': {'FID_k': 99.5, 'FID_g': 55.5, 'Div_k': 3.3, 'Div_g': 2.2, 'BAS': 0.1111}}))
    steps = [{'epoch': i // 10, 'step': i, 'loss': 2 / (i + 1), 'loss_rec': 1 / (i + 1), 'lr': 3e-4} for i in range(30)]
    epochs = [{'epoch': e, 'kind': 'epoch', 'loss': 1 / (e + 1), 'usage_up': 0.3 + 0.1 * e, 'usage_down': 0.2 + 0.1 * e} for e in range(3)]
    (run/'logs'/'vqvae.jsonl').write_text('\n'.join(map(json.dumps, steps[:10] + epochs[:1] + steps[10:20] + epochs[1:2] + steps[20:] + epochs[2:])))
    np.save(run/'dances'/'fake.npy', demo_dance(2.0)); np.save(run/'dances'/'fake.music.npy', demo_music_features(120))
    render_video(demo_dance(1.0), run/'videos'/'fake.mp4', size=96)
    if partial: return run
    ac = [{'epoch': e, 'step': e * 2 + b, 'reward': -1.0 + b, 'critic_loss': 1.0 / (e + 1)} for e in range(5) for b in range(2)]
    ac += [{'epoch': e, 'kind': 'epoch', 'reward': 0.1 * e, 'critic_loss': 1.0 / (e + 1), 'bas': 0.2 + 0.001 * e} for e in range(5)]
    (run/'logs'/'actor_critic.jsonl').write_text('\n'.join(map(json.dumps, ac)))
    (run/'results'/'vqvae.json').write_text(json.dumps({'mpjpe_mm': 50.0, 'usage_up': 0.61, 'usage_down': 0.42,
                                                        'code_counts': [int(c) for c in np.random.default_rng(0).poisson(3, 64)]}))
    (run/'results'/'actor_critic.json').write_text(json.dumps({'before': {'BAS': 0.21}, 'after': {'BAS': 0.24}, 'reward': [0.0, 0.1], 'bas': [0.2, 0.21]}))
    (run/'results'/'checks.json').write_text(json.dumps([
        {'claim': 'fake model: BAS above random codes', 'ok': True, 'ours': 0.3, 'baseline': 0.2},
        {'claim': 'actor-critic raises BAS', 'ok': False, 'ours': 0.1, 'baseline': 0.2},
        {'claim': 'fake model: FID_k vs mismatched music (real motion: not applicable)', 'ok': None, 'ours': 99.5, 'baseline': 17.1}]))
    (run/'checkpoints').mkdir(); torch.save({'model': torch.nn.Linear(4, 3).state_dict()}, run/'checkpoints'/'gpt.pt')
    nb = {'cells': [], 'metadata': {'papermill': {'input_path': 'nbs/01_vqvae.ipynb', 'output_path': str(run/'01_vqvae.ipynb'),
                                                  'parameters': {'out_dir': str(run), 'epochs': 3}}}, 'nbformat': 4, 'nbformat_minor': 5}
    (run/'01_vqvae.ipynb').write_text(json.dumps(nb))
    return run

def test_report_of_a_partial_run_says_not_run(tmp_path):
    rep = write_report(_fake_run(tmp_path/'run', partial=True)).read_text()
    assert 'id="metrics-table"' in rep and '28.16' in rep and '0.2332' in rep and '99.50' in rep
    assert 'not run (no results/checks.json)' in rep
    assert 'not run (no checkpoints' in rep and 'not run (no logs/actor_critic.jsonl)' in rep and 'data:video/mp4;base64,' in rep
    with pytest.raises(FileNotFoundError, match='run folder not found'): write_report(tmp_path/'nowhere')

def test_report_of_a_full_run(tmp_path):
    rep = write_report(_fake_run(tmp_path/'run')).read_text()
    assert 'not run' not in rep and '<td>15</td>' in rep and '<td>mpjpe_mm</td><td>50</td>' in rep and 'papermill nbs/01_vqvae.ipynb' in rep and '-p epochs 3' in rep
    assert rep.count('data:image/png;base64,') >= 6 and 'bailando study --name fake' in rep and 'usage_up = 0.61' in rep
    assert 'id="checks-table"' in rep and '<td>FAIL</td><td>actor-critic raises BAS</td><td>0.1</td><td>0.2</td>' in rep
    assert '<td>pass</td><td>fake model: BAS above random codes</td>' in rep and '<td>n/a</td>' in rep

def _chromium():
    exe = shutil.which('chromium') or shutil.which('chromium-browser')
    if exe: return exe
    msg = 'chromium not installed (Debian package `chromium`; `make test` installs it when run as root)'
    if os.environ.get('BAILANDO_REQUIRE_SHARED'): pytest.fail(msg)
    pytest.skip(msg)

def test_report_renders_in_headless_chromium(tmp_path):
    exe = _chromium()
    rep = write_report(_fake_run(tmp_path/'run'))
    def run(*args):
        flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', f'--user-data-dir={tmp_path/"profile"}', '--window-size=1000,1600']
        return subprocess.run([exe, *flags, *args, rep.as_uri()], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    shot = tmp_path/'shot.png'
    r = run(f'--screenshot={shot}')
    assert shot.exists(), r.stderr[-2000:]
    from matplotlib.image import imread
    img = imread(shot)[..., :3]
    assert img.shape[0] >= 1000 and img.std() > 0.02 and (img.mean(-1) < 0.5).mean() > 0.001   # not blank: text and plots drawn
    dom = run('--dump-dom').stdout
    assert '<table id="metrics-table">' in dom and 'Bailando paper (published)' in dom and '<video' in dom
