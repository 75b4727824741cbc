"`bailando dance` on whole songs: lengths, fast one-line failures, dotted names, sets written whole, several dances."
import contextlib, errno, io, json, os, re, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
import soundfile as sf
import torch
import bailando.cli as C
import bailando.data as bd
import bailando.gpt as G
import bailando.render as R
from bailando.render import ffmpeg_exe
from tests.conftest import REPO

BAILANDO = str(Path(sys.executable).parent/'bailando')


def noise(path:Path, seconds:float, sr:int=22050, seed:int=0) -> Path:
    "Music stand-in: `seconds` of noise with a beat (exactly int(seconds * sr) samples)."
    n = int(round(seconds * sr)); t = np.arange(n) / sr
    y = np.random.default_rng(seed).normal(0, 0.05, n) + 0.3 * np.sin(2 * np.pi * 220 * t) * (np.mod(t, 0.5) < 0.05)
    sf.write(path, y.astype(np.float32), sr)
    return path


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    return C.random_run(tmp_path_factory.mktemp('dance_run')/'run', 'tiny', starts={'gBR': [[1, 2], [3, 4]]})


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    "Every test's features go to its own user cache (XDG), as a user's would."
    monkeypatch.delenv('BAILANDO_CACHE', raising=False)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'xdg'))
    return tmp_path/'xdg'/'bailando'


def cli(*argv) -> tuple[int, str, str, float]:
    "`bailando ...` in this process: (exit status, stdout, stderr, seconds)."
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = C.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue(), time.perf_counter() - t0


def error_line(err:str) -> str:
    "The one line of a failed command's stderr after its progress bars; fails when there is a traceback or more than one line."
    lines = [l for l in err.replace('\r', '\n').splitlines() if l.strip() and not re.match(r'^\S*:\s+\d+%', l)]
    assert 'Traceback' not in err and len(lines) == 1 and lines[0].startswith('bailando '), err
    return lines[0]


def probe(path:Path, stream:str) -> float:
    "Duration of the first video or audio stream of a media file, in seconds (ffmpeg decodes it)."
    err = subprocess.run([ffmpeg_exe(), '-hide_banner', '-i', str(path), '-map', f'0:{stream}:0', '-f', 'null', '-'],
                         capture_output=True, text=True).stderr
    h, m, s = re.findall(r'time=(\d+):(\d+):(\d+\.\d+)', err)[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_whole_songs_of_awkward_lengths_dance_to_their_end(run, shared, tmp_path):
    "Whole files, no --seconds: real music (an AIST++ clip, an mp3 whose header misstates its length) and awkward lengths."
    mp3 = tmp_path/'machine wars.mp3'   # a real mp3 stream cut out of the Debian package's file, without re-encoding
    subprocess.run([ffmpeg_exe(), '-v', 'error', '-i', str(shared/'debian_game_music'/'asc-music'/'machine_wars.mp3'),
                    '-t', '6.3', '-c', 'copy', str(mp3)], check=True)
    songs = [noise(tmp_path/'ten.wav', 10.0), noise(tmp_path/'ten.05.wav', 10.05, sr=16000), noise(tmp_path/'odd.wav', 3.3, sr=44100),
             shared/'aist_music_clips'/'gJB_sBM_c01_d08_mJB5_ch02.wav', mp3]
    out = subprocess.run([BAILANDO, 'dance', *map(str, songs), '--run', str(run), '--out', str(tmp_path/'dances')],
                         capture_output=True, text=True, cwd=REPO, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for song in songs:
        seconds = bd.audio_duration(song) if song.suffix != '.mp3' else len(bd.load_audio(song, 22050)) / 22050
        folder = tmp_path/'dances'/song.stem
        joints = np.load(folder/f'{song.stem}.npy')
        assert joints.shape[1:] == (24, 3) and np.isfinite(joints).all()
        assert seconds - 1 / 60 - 0.03 < len(joints) / 60 <= seconds + 0.03, (song.name, len(joints), seconds)  # to the frame (mp3: decoders differ by ms)
        video = folder/f'{song.stem}.mp4'
        assert abs(probe(video, 'v') - len(joints) / 60) < 1.5 / 60, song.name
        assert abs(probe(video, 'a') - len(joints) / 60) < 0.05, song.name        # the music plays to the dance's end
        assert len(np.load(folder/f'{song.stem}.pkl', allow_pickle=True).item()['pred_position']) == len(joints)
        assert f'Frames: {len(joints)}' in (folder/f'{song.stem}.bvh').read_text()
    assert 'it/s' in out.stderr and 'generate' in out.stderr               # progress bars, with the time left
    assert not list((tmp_path/'dances').glob('.*'))                         # no temporary leftovers


def test_length_is_cut_to_the_music_for_any_length(run, tmp_path):
    for seconds in (2.0, 2.05, 3.3):
        music = noise(tmp_path/'m.wav', seconds, sr=16000)
        T = G.dance_frames(music)
        assert T == int(seconds * 60 + 1e-6) and G.dance(music, run, device='cpu').shape == (T, 24, 3)


@pytest.mark.parametrize('argv, msg', [
    (['--seconds', 'inf'], '--seconds must be a finite'), (['--seconds', 'nan'], '--seconds must be a finite'),
    (['--seconds', '-1'], 'above 0'), (['--seed', '99999999999999999999'], '--seed must be'), (['--seed', '-1'], '--seed must be'),
    (['--device', 'bogus'], "'bogus' is not a device"), (['--style', 'funky'], "'funky'"), (['--num-dances', '0'], '--num-dances'),
    (['MUSIC=missing.wav'], 'missing.wav: music file not found'), (['MUSIC=.'], 'is a folder'),
    (['MUSIC=notes.txt'], 'notes.txt: unreadable audio'), (['MUSIC=short.wav'], 'short.wav: audio too short'),
    (['RUN=nowhere'], 'nowhere: no such run folder'), (['RUN=notes.txt'], 'notes.txt: is a file, not a run folder'),
    (['RUN=.'], 'its GPT stage has not finished'), (['OUT=notes.txt'], 'notes.txt: is a file, not a folder'),
    (['OUT=/dev/null'], '/dev/null: is a file, not a folder'), (['OUT=notes.txt/sub'], 'is a file'),
])
def test_bad_input_fails_in_under_a_second_with_one_line(run, tmp_path, monkeypatch, argv, msg):
    (tmp_path/'notes.txt').write_text('not audio'); noise(tmp_path/'short.wav', 1.0); song = noise(tmp_path/'song.wav', 3.0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(G, 'dance', lambda *a, **k: pytest.fail('a model was loaded for a bad input'))
    music, rest = str(song), []
    over = {'MUSIC': None, 'RUN': str(run), 'OUT': str(tmp_path/'out')}
    for a in argv:
        k, _, v = a.partition('=')
        if k in over and v: over[k] = v
        else: rest.append(a)
    rc, out, err, secs = cli('dance', over['MUSIC'] or music, '--run', over['RUN'], '--out', over['OUT'], *rest)
    assert rc == 1 and msg in err and err.count('\n') == 1 and err.startswith('bailando dance: error: '), err
    assert secs < 1.0, f'{secs:.2f} s to fail'
    assert not (tmp_path/'out').exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA')
def test_cuda_without_cuda_is_refused(run, tmp_path):
    rc, _, err, secs = cli('dance', noise(tmp_path/'s.wav', 3.0), '--run', run, '--out', tmp_path/'o', '--device', 'cuda')
    assert rc == 1 and 'no CUDA GPU' in err and secs < 1.0


def test_a_bad_input_through_the_real_command_is_one_line(run, tmp_path):
    out = subprocess.run([BAILANDO, 'dance', str(tmp_path), '--run', str(run), '--out', str(tmp_path/'o'), '--seconds', 'inf'],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 1 and out.stderr.count('\n') == 1 and 'Traceback' not in out.stderr, out.stderr


def test_silence_and_dc_fail_before_the_model_loads(run, tmp_path, monkeypatch):
    monkeypatch.setattr(G, 'load_dancer', lambda *a, **k: pytest.fail('model loaded'))
    for name, y in [('zeros.wav', np.zeros(16000 * 3)), ('dc.wav', np.full(16000 * 3, 0.25))]:
        sf.write(tmp_path/name, y.astype(np.float32), 16000)
        rc, _, err, _ = cli('dance', tmp_path/name, '--run', run, '--out', tmp_path/'o')
        assert rc == 1 and 'silent' in error_line(err) and name in error_line(err)
    assert not [p for p in (tmp_path/'o').iterdir()]                          # nothing left behind


def test_dotted_names_several_dances_and_sets(run, tmp_path, user_cache):
    a, b = noise(tmp_path/'take.1.wav', 3.0), noise(tmp_path/'take.2.wav', 3.0, seed=1)
    brights = noise(tmp_path/'Mr. Brightside.wav', 2.5, seed=2)
    rc, out, err, _ = cli('dance', a, b, brights, '--run', run, '--out', tmp_path/'out', '--num-dances', '2', '--style', 'wild', '--seed', '7', '--seconds', '1.5')
    assert rc == 0, err
    for song in (a, b, brights):
        folder = tmp_path/'out'/song.stem
        files = sorted(p.name for p in folder.iterdir())
        names = [f'{song.stem}_00_wild_seed7', f'{song.stem}_01_wild_seed8']
        assert files == sorted(f'{n}.{e}' for n in names for e in ('bvh', 'mp4', 'npy', 'pkl')), files
        assert f"wrote {folder}{os.sep}: {', '.join(files)}" in out
        j0, j1 = (np.load(folder/f'{n}.npy') for n in names)
        assert len(j0) == len(j1) == 90
    alone = G.dance(a, run, style='wild', seed=8, seconds=1.5, device='cpu', ground=True)   # the batch's second dance is seed 8's dance (grounded, as the CLI writes it)
    assert np.allclose(np.load(tmp_path/'out'/'take.1'/'take.1_01_wild_seed8.npy'), alone, atol=1e-4)
    assert list((user_cache/'music').glob('*.npy'))                           # the user's cache, not the project's


def test_a_failure_leaves_no_partial_set_and_keeps_the_old_one(run, tmp_path, monkeypatch):
    song = noise(tmp_path/'take.1.wav', 2.5)
    rc, _, err, _ = cli('dance', song, '--run', run, '--out', tmp_path/'out')
    assert rc == 0, err
    before = {p.name: p.read_bytes() for p in (tmp_path/'out'/'take.1').iterdir()}
    def full_disk(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device', str(a[1]))
    save_bvh = R.save_bvh; monkeypatch.setattr(R, 'save_bvh', full_disk)
    rc, _, err, _ = cli('dance', song, '--run', run, '--out', tmp_path/'out', '--seed', '3')
    assert rc == 1 and 'No space left on device' in error_line(err)
    assert {p.name: p.read_bytes() for p in (tmp_path/'out'/'take.1').iterdir()} == before   # the old set, intact
    assert sorted(p.name for p in (tmp_path/'out').iterdir()) == ['take.1']               # no temporary leftovers
    def ffmpeg_fails(jobs, workers=None): raise RuntimeError('ffmpeg failed writing x.mp4 (exit 1): \nsome log\nNo space left on device')
    monkeypatch.setattr(R, 'save_bvh', save_bvh); monkeypatch.setattr(R, 'render_videos', ffmpeg_fails)
    rc, _, err, _ = cli('dance', noise(tmp_path/'new.wav', 2.5), '--run', run, '--out', tmp_path/'out')
    assert rc == 1 and 'ffmpeg failed' in error_line(err) and 'No space left' in error_line(err)
    assert sorted(p.name for p in (tmp_path/'out').iterdir()) == ['take.1']


def test_stale_temporary_files_of_killed_runs_are_removed(run, tmp_path):
    out = tmp_path/'out'; out.mkdir()
    dead = subprocess.Popen([sys.executable, '-c', 'pass']); dead.wait()         # a process id that no longer runs
    (out/f'.take.1.{dead.pid}.k2j3.tmp').mkdir(); (out/f'.take.1.{dead.pid}.k2j3.tmp'/'take.1.npy').write_bytes(b'x' * 100)
    (out/f'.x.npy.{dead.pid}.ab12.tmp').write_bytes(b'')
    rc, _, err, _ = cli('dance', noise(tmp_path/'song.wav', 2.5), '--run', run, '--out', out, '--seconds', '2')
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ['song']
    assert len(np.load(out/'song'/'song.npy')) == 120


def test_seconds_decodes_only_what_is_used(run, tmp_path, monkeypatch):
    long = noise(tmp_path/'long.wav', 60.0, sr=8000)
    seen = []
    import librosa
    load = librosa.load
    monkeypatch.setattr(librosa, 'load', lambda *a, **k: seen.append(k.get('duration')) or load(*a, **k))
    assert len(G.read_music(long, seconds=2)) == 16 and seen == [2]
    wav = C.decode_music(long, tmp_path/'cut.wav', seconds=2.0)
    assert bd.audio_duration(wav) == 2.0


def test_nonfinite_weights_are_refused(run, tmp_path):
    import shutil
    bad = tmp_path/'bad'; shutil.copytree(run, bad)
    ck = torch.load(bad/'checkpoints'/'gpt.pt', weights_only=True)
    k = next(k for k, v in ck['model'].items() if v.is_floating_point())
    ck['model'][k] = ck['model'][k] * float('inf'); torch.save(ck, bad/'checkpoints'/'gpt.pt')
    rc, _, err, _ = cli('dance', noise(tmp_path/'s.wav', 2.5), '--run', bad, '--out', tmp_path/'o')
    assert rc == 1 and 'NaN or inf' in err and 'gpt.pt' in err and k in err, err


def test_cache_dir_is_the_users(monkeypatch, tmp_path):
    monkeypatch.delenv('BAILANDO_CACHE', raising=False); monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    assert bd.cache_dir() == tmp_path/'bailando'
    monkeypatch.delenv('XDG_CACHE_HOME'); assert bd.cache_dir() == Path.home()/'.cache'/'bailando'
    monkeypatch.setenv('BAILANDO_CACHE', str(tmp_path/'c')); assert bd.cache_dir() == tmp_path/'c'


def test_bad_aist_roots_name_the_split_file(tmp_path):
    root = tmp_path/'aist'; (root/'splits').mkdir(parents=True); (root/'motions').mkdir()
    sp = root/'splits'
    (sp/'crossmodal_train.txt').write_text('gBR_sBM_cAll_d04_mBR0_ch01\nbroken\n'); (sp/'crossmodal_test.txt').write_text('gBR_sBM_cAll_d04_mBR1_ch01\n')
    with pytest.raises(ValueError, match=r'crossmodal_train.txt: line 2: .broken. is not an AIST\+\+ sequence name'):
        bd.prepare_data(root, tmp_path/'run', progress=False)
    (sp/'crossmodal_train.txt').write_text('\n')
    with pytest.raises(ValueError, match='crossmodal_train.txt: the train split is empty'): bd.prepare_data(root, tmp_path/'run', progress=False)
    (sp/'crossmodal_train.txt').write_text('gBR_sBM_cAll_d04_mBR0_ch01\n'); (sp/'crossmodal_test.txt').write_text('')
    with pytest.raises(ValueError, match='crossmodal_test.txt: the test split is empty'): bd.prepare_data(root, tmp_path/'run', progress=False)
    (sp/'crossmodal_test.txt').write_text('gBR_sBM_cAll_d04_mBR1_ch01\n')               # listed, but no motion nor music
    with pytest.raises(ValueError, match='crossmodal_train.txt: none of its 1 sequences'):
        with pytest.warns(UserWarning): bd.prepare_data(root, tmp_path/'run', progress=False, workers=1)


def test_a_motion_pickle_of_strings_names_the_file(tmp_path):
    import pickle
    p = tmp_path/'gBR_sBM_cAll_d04_mBR0_ch01.pkl'
    p.write_bytes(pickle.dumps(dict(smpl_poses='abc', smpl_trans='def', smpl_scaling='x')))
    with pytest.raises(ValueError, match=re.escape(str(p))): bd.load_motion(p)


def test_study_errors_are_one_line(tmp_path, monkeypatch):
    (tmp_path/'file').write_text('x')
    rc, _, err, secs = cli('study', '--runs', tmp_path/'file', '--preset', 'tiny')
    assert rc == 1 and 'is a file, not a folder' in err and err.count('\n') == 1 and secs < 1, err
    rc, _, err, _ = cli('study', '--runs', tmp_path, '--device', 'bogus', '--preset', 'tiny')
    assert rc == 1 and 'not a device' in err
    from nbclient.exceptions import DeadKernelError
    import papermill as pm
    def dies(*a, **k): raise DeadKernelError('Kernel died')
    monkeypatch.setattr(pm, 'execute_notebook', dies)
    with pytest.raises(C.StageFailed, match='kernel died .* see the executed notebook'): C.run_stage('00_data', {}, tmp_path)
