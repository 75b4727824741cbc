"Tests of bailando.data: safety, bad input, splits, real music, the embedded data set."
import json, os, pickle, time, warnings
from pathlib import Path
import numpy as np
import pytest
import soundfile as sf
import bailando.data as D
from bailando.vqvae import motion_windows


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    "Every test gets a private feature cache (except where it shares one on purpose)."
    monkeypatch.setenv('BAILANDO_CACHE', str(tmp_path_factory.getbasetemp()/'cache'))


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return D.make_dataset(tmp_path_factory.mktemp('tiny')/'embedded', seed=0, size='tiny', progress=False)


def _motion(tmp_path, name='gBR_sBM_cAll_d01_mBR0_ch01', **over):
    m = dict(smpl_poses=np.zeros((20, 72), np.float32), smpl_trans=np.zeros((20, 3), np.float32),
             smpl_scaling=np.array([90.0], np.float32))
    m.update(over)
    p = tmp_path/f'{name}.pkl'; p.write_bytes(pickle.dumps(m, protocol=4))
    return p


class _Evil:
    def __reduce__(self): return (os.system, ('echo pwned > /tmp/bailando_pwned',))


def test_evil_pickle_refused(tmp_path):
    p = tmp_path/'evil.pkl'; p.write_bytes(pickle.dumps({'smpl_poses': _Evil()}))
    with pytest.raises(pickle.UnpicklingError, match=r'evil\.pkl.*system'): D.load_motion(p)
    assert not Path('/tmp/bailando_pwned').exists()


def test_bad_motion_files_named(tmp_path):
    (tmp_path/'corrupt.pkl').write_bytes(b'\x80\x04not a pickle')
    with pytest.raises(ValueError, match='corrupt.pkl'): D.load_motion(tmp_path/'corrupt.pkl')
    with pytest.raises(ValueError, match='smpl_poses has shape'): D.load_motion(_motion(tmp_path, smpl_poses=np.zeros((20, 71))))
    bad = np.zeros((20, 72), np.float32); bad[3, 5] = np.nan
    with pytest.raises(ValueError, match='NaN'): D.load_motion(_motion(tmp_path, smpl_poses=bad))
    with pytest.raises(ValueError, match='smpl_trans'): D.load_motion(_motion(tmp_path, smpl_trans=np.zeros((19, 3))))
    with pytest.raises(FileNotFoundError, match='missing.pkl'): D.load_motion(tmp_path/'missing.pkl')


def test_bad_audio_named(tmp_path):
    sf.write(tmp_path/'silent.wav', np.zeros(22050, np.float32), 22050)
    sf.write(tmp_path/'short.wav', np.random.default_rng(0).normal(size=2000).astype(np.float32) * 0.1, 22050)
    (tmp_path/'junk.wav').write_bytes(b'RIFF0000WAVEjunk')
    with pytest.raises(ValueError, match='silent.wav.*silent'): D.music_features(tmp_path/'silent.wav')
    with pytest.raises(ValueError, match='short.wav.*too short'): D.music_features(tmp_path/'short.wav')
    with pytest.raises(ValueError, match='junk.wav.*unreadable'): D.music_features(tmp_path/'junk.wav')
    with pytest.raises(FileNotFoundError, match='nope.wav'): D.music_features(tmp_path/'nope.wav')


def test_splits_semantics(shared, tmp_path):
    sd = shared/'aistpp_splits'; (tmp_path/'splits').mkdir()
    for f in sd.glob('crossmodal_*.txt'): (tmp_path/'splits'/f.name).write_text(f.read_text())
    (tmp_path/'splits'/'ignore_list.txt').write_text((sd/'ignore_list.txt').read_text())   # accepted under splits/ too
    ign = {l.strip() for l in (sd/'ignore_list.txt').read_text().splitlines() if l.strip()}
    train, test = D.read_split(tmp_path, 'train'), D.read_split(tmp_path, 'test')
    assert not set(train) & ign and len(train) == 952 and len(test) == 20          # val missing -> empty
    (tmp_path/'splits'/'crossmodal_val.txt').write_text('gBR_sBM_cAll_d04_mBR0_ch99\n')
    assert len(D.read_split(tmp_path, 'test')) == 21
    with pytest.raises(ValueError, match='split must be'): D.read_split(tmp_path, 'dev')
    (tmp_path/'splits'/'crossmodal_train.txt').unlink()
    with pytest.raises(FileNotFoundError, match='crossmodal_train.txt.*layout'): D.read_split(tmp_path, 'train')


def _tempo(feats, fps):
    return 60 * fps / np.median(np.diff(D.beat_frames(feats)))


def test_real_music_formats_and_tempo(shared, tmp_path):
    wz = shared/'debian_game_music'/'warzone2100-music'
    bpm = {t['filename']: t['bpm'] for t in json.loads((wz/'album.json').read_text())['tracks']}
    for name in ('track11.opus', 'track13.opus'):
        f = D.music_features(wz/name, 60, seconds=60)
        assert f.shape == (60 * 60 + 1, 438) and abs(_tempo(f, 60) / bpm[name] - 1) < 0.04, (name, _tempo(f, 60))
    mp3 = D.music_features(shared/'debian_game_music'/'asc-music'/'machine_wars.mp3', 7.5, seconds=40)
    assert mp3.shape == (301, 438) and np.isfinite(mp3).all()
    y, sr = sf.read(shared/'aist_music_clips'/'gKR_sBM_c01_d30_mKR2_ch02.wav')
    sf.write(tmp_path/'clip.ogg', y, sr, format='OGG', subtype='VORBIS')
    assert abs(len(D.music_features(tmp_path/"clip.ogg", 60)) - len(y) / sr * 60) <= 1 + 1e-6


def test_aist_clips_frame_counts_and_cache(shared):
    for f in sorted((shared/'aist_music_clips').glob('*.wav'))[:3]:
        dur = sf.info(f).duration
        for fps in (60, 7.5):
            feats = D.music_features(f, fps)
            assert feats.shape[1] == 438 and feats.dtype == np.float32 and abs(len(feats) - dur * fps) <= 1 + 1e-6
            t0 = time.time(); again = D.music_features(f, fps)
            assert np.array_equal(again, feats) and time.time() - t0 < 0.5                        # served from cache


def test_make_dataset_deterministic(tmp_path):
    a = D.make_dataset(tmp_path/'a', seed=3, progress=False); b = D.make_dataset(tmp_path/'b', seed=3, progress=False)
    c = D.make_dataset(tmp_path/'c', seed=4, progress=False)
    name = sorted(p.name for p in (a/'motions').glob('*.pkl'))[0]
    assert (a/'motions'/name).read_bytes() == (b/'motions'/name).read_bytes()
    assert (a/'wav'/'mBR0.wav').read_bytes() == (b/'wav'/'mBR0.wav').read_bytes() != (c/'wav'/'mBR0.wav').read_bytes()
    assert sf.info(a/'wav'/'mBR0.wav').subtype == 'PCM_16'


def test_embedded_dance_is_plausible(tiny):
    for name in D.read_split(tiny, 'all'):
        m = D.load_motion(tiny/'motions'/f'{name}.pkl')
        j = D.smpl_joints(m['poses'], m['trans'] / m['scaling'])
        feet = j[:, [7, 8, 10, 11], 1].min(1)
        assert np.abs(feet - D.FLOOR_CLEARANCE).max() < 1e-3                                       # on the floor
        assert (j[:, 15, 1] > j[:, 0, 1]).all() and (j[:, 0, 1] > feet).all()                       # upright
        knees = m['poses'].reshape(-1, 24, 3)[:, [4, 5]]                                             # knee rotvecs
        assert knees[..., 0].min() > -0.1 and np.linalg.norm(knees, axis=-1).max() < 2.4            # no hyperextension
        bone = np.linalg.norm(j[:, 4] - j[:, 7], axis=-1); assert np.ptp(bone) < 1e-4                # rigid shins
        speed = np.linalg.norm(np.diff(j, axis=0), axis=-1).max() * 60; assert speed < 12            # m/s (AIST++ sample: up to 22)


def test_skip_bad_sequences_and_strict(tiny, tmp_path):
    import shutil
    root = tmp_path/'copy'; shutil.copytree(tiny, root)
    victim = D.read_split(root, 'train')[0]
    (root/'motions'/f'{victim}.pkl').write_bytes(pickle.dumps({'smpl_poses': _Evil()}))
    with pytest.warns(UserWarning, match='1 of 4 sequences skipped'):
        seqs = D.load_sequences(root, 'train', progress=False)
    assert len(seqs) == 3 and victim not in {q['name'] for q in seqs}
    with pytest.raises(pickle.UnpicklingError, match=victim): D.load_sequences(root, 'train', progress=False, strict=True)
    (root/'wav'/'mHO0.wav').unlink()
    with pytest.raises(FileNotFoundError, match='mHO0.wav'): D.load_sequences(root, 'train', progress=False, strict=True)


def test_windows(tiny):
    "The one window dataset of the package (the VQ-VAE's), on the embedded data's sequences."
    seqs = D.load_sequences(tiny, 'train', progress=False)
    w = motion_windows(seqs, length=240, stride=8)
    assert len(w) == sum((len(q['motion']) - 240) // 8 + 1 for q in seqs)
    (it,), q = w[3], seqs[0]
    assert it.shape == (240, 72) and np.allclose(it.numpy(), q['motion'][24:264])
    with pytest.raises(ValueError, match='no sequence'): motion_windows(seqs, length=10_000)


def test_shipped_music_has_sources_and_free_licences():
    "Every shipped audio file is in SOURCES.tsv with package, path, author and a free licence; none from nexuiz or ../shared."
    audio = sorted(p.name for p in D.MUSIC_DIR.iterdir() if p.suffix in D.MUSIC_EXTS)
    rows = D.real_music()
    assert len(audio) >= 10 and sorted(r['file'] for r in rows) == audio
    reserved = ('machine_wars', 'legacy_soundtrack/track11', 'legacy_soundtrack/track13')   # the study evaluates on these
    for r in rows:
        assert r['package'] and r['version'] and r['package_path'].startswith('/usr/share/') and r['author'], r['file']
        assert any(free in r['licence'] for free in ('GPL', 'CC0', 'CC-BY')), r
        assert 'nexuiz' not in (r['package'] + r['package_path']).lower() and not any(x in r['package_path'] for x in reserved)
        info = sf.info(r['path'])
        assert info.channels == 1 and 20 <= info.duration <= 60, r['file']
    assert sum(p.stat().st_size for p in D.MUSIC_DIR.iterdir()) < 5e6                                # a few MB in all


def test_shipped_music_carries_the_licence_text_it_names():
    "Every shipped track may be redistributed under GPL-2 (GPL-2, GPL-2+ or a choice that includes it), whose text is beside them."
    text = (D.MUSIC_DIR/'COPYING.GPL-2').read_text()
    assert 'GNU GENERAL PUBLIC LICENSE' in text and 'Version 2, June 1991' in text
    for r in D.real_music(): assert 'GPL-2' in r['licence'], r['file']


def test_held_out_tracks_are_never_heard_in_training(tiny):
    plan = D._plan('study', np.random.default_rng(0))
    heard = {p['track'] for p in plan if p['split'] == 'train'}
    held = {p['track'] for p in plan if p['split'] == 'test'}
    assert held and heard and not heard & held and held == {t['file'] for t in D.real_music(split='test')}
    train = {D.music_source(tiny, n) for n in D.read_split(tiny, 'train')}
    test = {D.music_source(tiny, n) for n in D.read_split(tiny, 'test')}
    assert test and not train & test


def test_dancers_hit_the_beats_our_features_find(tiny):
    from bailando.metrics import motion_beats
    meta = json.loads((tiny/'dataset.json').read_text())['music']
    for name in D.read_split(tiny, 'all'):
        mid = D.music_id_of(name)
        found = D.beat_frames(D.music_features(tiny/'wav'/f'{mid}.wav', 60))
        assert np.array_equal(np.round(np.array(meta[mid]['beats']) * 60).astype(int), found)   # the beat column's beats
        j = D.load_joints(tiny, name)
        hits = np.round(D.danced_beats(meta[mid]['beats']) * 60).astype(int)
        hits = hits[(hits > 10) & (hits < len(j) - 10)]
        kb = motion_beats(j)
        near = lambda f: (np.abs(f[:, None] - kb[None]).min(1) <= 2).mean()
        assert len(hits) >= 8 and near(hits) > 0.8, (name, near(hits))
        assert near(hits + int(np.median(np.diff(hits))) // 2) < 0.5                               # half a beat off: no


def test_procedural_music_keeps_its_exact_beat_grid(tmp_path):
    from bailando.metrics import motion_beats
    root = D.make_dataset(tmp_path/'p', size='tiny', music='procedural', progress=False)
    meta = json.loads((root/'dataset.json').read_text())
    assert meta['params']['music'] == 'procedural'
    for name in D.read_split(root, 'train'):
        v = meta['music'][D.music_id_of(name)]
        assert np.isclose(v['beats'][0], v['first_beat_s'], atol=1e-4) and np.allclose(np.diff(v['beats']), 60 / v['bpm'], atol=2e-4)
        j = D.load_joints(root, name)
        grid = np.round(np.array(v['beats']) * 60).astype(int)
        grid = grid[(grid > 30) & (grid < len(j) - 10)]
        assert np.abs(grid[:, None] - motion_beats(j)[None]).min(1).max() <= 2                      # every grid beat hit
