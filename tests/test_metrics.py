"""bailando.metrics against a deliberately literal, loop-per-frame restatement of the reference definitions
(lisiyao21/Bailando utils/features/{kinetic,manual_new,utils}.py, utils/metrics_new.py, utils/beat_align_score.py).
The `lit_*` functions below are our own words for what those files compute, one frame and one joint at a time,
quirks included; they are slow on purpose and only used here."""
import math
import numpy as np
import pytest
from scipy import linalg
from scipy.ndimage import gaussian_filter
from scipy.signal import argrelextrema

from bailando import metrics as M
import bailando.data as bd
from bailando.protocol import feature_benchmark

RTOL = 1e-5

# --------------------------------------------------------------------------- literal kinetic features
def lit_window_velocity(pos, i, j, w, dt):
    "Sum of displacements p[k]-p[k-1] for k in i-w..i+w with 1 <= k <= T-1, divided by count*dt."
    total, count = np.zeros(3), 0
    for off in range(-w, w + 1):
        k = i + off
        if k - 1 < 0 or k >= len(pos): continue
        total += pos[k][j] - pos[k - 1][j]
        count += 1
    return total / (count * dt)

def lit_window_accel(pos, i, j, w, dt, quirk):
    total, count = np.zeros(3), 0
    for off in range(-w, w + 1):
        k = i + off
        if k - 1 < 0 or k + 1 >= len(pos): continue
        fwd = (pos[k + 1][j] - pos[k][j]) / dt
        if quirk: back = pos[k][j] - pos[k - 1][j] / dt      # the reference's precedence slip
        else: back = (pos[k][j] - pos[k - 1][j]) / dt
        total += (fwd - back) / dt
        count += 1
    return np.linalg.norm(total / count)

def lit_kinetic(pos, quirk=True, dt=1 / 60, w=2):
    out = []
    T = len(pos)
    for j in range(pos.shape[1]):
        h = v = e = 0.0
        for i in range(1, T):
            vel = lit_window_velocity(pos, i, j, w, dt)
            h += np.linalg.norm(np.array([vel[0], vel[2]])) ** 2
            v += np.linalg.norm(np.array([vel[1]])) ** 2
        for i in range(1, T):
            e += lit_window_accel(pos, i, j, w, dt, quirk)
        out += [h / (T - 1.0), v / (T - 1.0), e / (T - 1.0)]
    return np.array(out, dtype=np.float32)

# --------------------------------------------------------------------------- literal manual features
NAMES = M.SMPL_JOINT_NAMES
HL = np.linalg.norm(np.array([1.99113488e-01, 2.36807942e-01, -1.80702247e-02]) - np.array([4.54445392e-01, 2.21158922e-01, -4.10167128e-02]))
SW = np.linalg.norm(np.array([1.99113488e-01, 2.36807942e-01, -1.80702247e-02]) - np.array([-1.91692337e-01, 2.36928746e-01, -1.23055102e-02]))
HW = np.linalg.norm(np.array([5.64076714e-02, -3.23069185e-01, 1.09197125e-02]) - np.array([-6.24834076e-02, -3.31302464e-01, 1.50412619e-02]))
TPF = 1 / 120.0   # the helpers' default time per frame, never overridden by the reference

def lit_point(pos, f, name):
    if name == 'zero': return np.array([0, 0, 0])
    if name == 'y_unit': return np.array([0, 1, 0])
    if name == 'minus_y_unit': return np.array([0, -1, 0])
    if name == 'y_min': return np.array([0, min(p[1] for p in pos[f]), 0])
    return np.array(pos[f][NAMES.index(name)])

def lit_move(pos, f, a, b, c, d):
    "Velocity of the THIRD point relative to the first, along first -> second; the fourth is unused (as in the reference)."
    vel = (lit_point(pos, f, c) - lit_point(pos, f, a)) - (lit_point(pos, f - 1, c) - lit_point(pos, f - 1, a))
    direction = lit_point(pos, f, b) - lit_point(pos, f, a)
    return np.dot(vel, direction) / np.linalg.norm(direction) / TPF

def lit_nmove(pos, f, a, b, c, d):
    vel = (lit_point(pos, f, d) - lit_point(pos, f, a)) - (lit_point(pos, f - 1, d) - lit_point(pos, f - 1, a))
    normal = np.cross(lit_point(pos, f, c) - lit_point(pos, f, a), lit_point(pos, f, b) - lit_point(pos, f, a))
    return np.dot(vel, normal) / np.linalg.norm(normal) / TPF

def lit_plane(pos, f, a, b, c, d):
    A = lit_point(pos, f, a)
    normal = np.cross(lit_point(pos, f, c) - A, lit_point(pos, f, b) - A)
    return np.dot(normal, lit_point(pos, f, d) - A) / np.linalg.norm(normal)

def lit_nplane(pos, f, a, b, c, d):
    normal = lit_point(pos, f, b) - lit_point(pos, f, a)
    return np.dot(normal, lit_point(pos, f, d) - lit_point(pos, f, c)) / np.linalg.norm(normal)

def lit_angle(pos, f, a, b, c, d, lo, hi):
    u = lit_point(pos, f, b) - lit_point(pos, f, a)
    v = lit_point(pos, f, d) - lit_point(pos, f, c)
    ang = np.degrees(np.arccos(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))))
    return bool(ang > lo and ang < hi)

def lit_fast(pos, f, a):
    return np.linalg.norm(lit_point(pos, f, a) - lit_point(pos, f - 1, a)) / TPF

def lit_frame(pos, f):
    mv, nm, pl, npl, an, fa = lit_move, lit_nmove, lit_plane, lit_nplane, lit_angle, lit_fast
    return [
        nm(pos, f, 'neck', 'rhip', 'lhip', 'rwrist') > 1.8 * HL, nm(pos, f, 'neck', 'lhip', 'rhip', 'lwrist') > 1.8 * HL,
        npl(pos, f, 'chest', 'neck', 'neck', 'rwrist') > 0.2 * HL, npl(pos, f, 'chest', 'neck', 'neck', 'lwrist') > 0.2 * HL,
        mv(pos, f, 'belly', 'chest', 'chest', 'rwrist') > 1.8 * HL, mv(pos, f, 'belly', 'chest', 'chest', 'lwrist') > 1.8 * HL,
        an(pos, f, 'relbow', 'rshoulder', 'relbow', 'rwrist', 0, 110), an(pos, f, 'lelbow', 'lshoulder', 'lelbow', 'lwrist', 0, 110),
        npl(pos, f, 'lshoulder', 'rshoulder', 'lwrist', 'rwrist') > 2.5 * SW,
        mv(pos, f, 'lwrist', 'rwrist', 'rwrist', 'lwrist') > 1.4 * HL,
        mv(pos, f, 'rwrist', 'root', 'lwrist', 'root') > 1.4 * HL, mv(pos, f, 'lwrist', 'root', 'rwrist', 'root') > 1.4 * HL,
        fa(pos, f, 'rwrist') > 2.5 * HL, fa(pos, f, 'lwrist') > 2.5 * HL,
        pl(pos, f, 'root', 'lhip', 'ltoes', 'rankle') > 0.38 * HL, pl(pos, f, 'root', 'rhip', 'rtoes', 'lankle') > 0.38 * HL,
        npl(pos, f, 'zero', 'y_unit', 'y_min', 'rankle') > 1.2 * HL, npl(pos, f, 'zero', 'y_unit', 'y_min', 'lankle') > 1.2 * HL,
        npl(pos, f, 'lhip', 'rhip', 'lankle', 'rankle') > 2.1 * HW,
        an(pos, f, 'rknee', 'rhip', 'rknee', 'rankle', 0, 110), an(pos, f, 'lknee', 'lhip', 'lknee', 'lankle', 0, 110),
        fa(pos, f, 'rankle') > 2.5 * HL, fa(pos, f, 'lankle') > 2.5 * HL,
        an(pos, f, 'neck', 'root', 'rshoulder', 'relbow', 25, 180), an(pos, f, 'neck', 'root', 'lshoulder', 'lelbow', 25, 180),
        an(pos, f, 'neck', 'root', 'rhip', 'rknee', 50, 180), an(pos, f, 'neck', 'root', 'lhip', 'lknee', 50, 180),
        pl(pos, f, 'rankle', 'neck', 'lankle', 'root') > 0.5 * HL,
        an(pos, f, 'neck', 'root', 'zero', 'y_unit', 70, 110),
        npl(pos, f, 'zero', 'minus_y_unit', 'y_min', 'rwrist') > -1.2 * HL,
        npl(pos, f, 'zero', 'minus_y_unit', 'y_min', 'lwrist') > -1.2 * HL,
        fa(pos, f, 'root') > 2.3 * HL]

def lit_manual(pos):
    with np.errstate(divide='ignore', invalid='ignore'):
        rows = [lit_frame(pos, f) for f in range(1, len(pos))]
    return np.array(rows, dtype=np.float32).mean(axis=0)

# --------------------------------------------------------------------------- literal protocol, FID, diversity, BAS
def lit_protocol(pos, cut=1200):
    flat = pos.reshape(len(pos), 72)[:cut]
    flat = flat - np.tile(flat[:1, :3], (1, 24))
    return flat.reshape(-1, 24, 3)

def lit_normalize(ref, gen):
    mean, std = ref.mean(axis=0), ref.std(axis=0)
    return (ref - mean) / (std + 1e-10), (gen - mean) / (std + 1e-10)

def lit_fid(gen, ref):
    mu1, mu2 = gen.mean(0), ref.mean(0)
    s1, s2 = np.cov(gen, rowvar=False), np.cov(ref, rowvar=False)
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        off = np.eye(len(s1)) * 1e-5
        covmean = linalg.sqrtm((s1 + off).dot(s2 + off))
    if np.iscomplexobj(covmean) and not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
        covmean = covmean.real
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)   # may be complex, as the reference

def lit_diversity(feats):
    n, total = len(feats), 0.0
    for i in range(n):
        for j in range(i + 1, n): total += np.linalg.norm(feats[i] - feats[j])
    return total / ((n * n - n) / 2)

def lit_bas(joints, beat_column):
    kp = np.array(joints).reshape(-1, 24, 3)
    speed = gaussian_filter(np.mean(np.sqrt(np.sum((kp[1:] - kp[:-1]) ** 2, axis=2)), axis=1), 5)
    dance = argrelextrema(speed, np.less)[0]
    music = np.arange(len(speed))[beat_column[:len(speed)].astype(bool)]
    s = 0.0
    for b in music: s += math.exp(-np.min((dance - b) ** 2) / 2 / 9)
    return s / len(music)

def close(a, b, rtol=RTOL, atol=0.0):
    a, b = np.real(np.asarray(a, dtype=np.complex128)), np.asarray(b, dtype=np.complex128)
    return np.all(np.abs(a - b) <= atol + rtol * np.abs(b))

# --------------------------------------------------------------------------- inputs
def smooth(rng, T, scale=0.02, dtype=np.float64):
    return (np.cumsum(rng.normal(scale=scale, size=(T, 24, 3)), 0) + rng.normal(size=(1, 24, 3))).astype(dtype)

def cases():
    rng = np.random.default_rng(1)
    yield 'noise', rng.normal(size=(40, 24, 3))
    yield 'smooth64', smooth(rng, 70)
    yield 'smooth32', smooth(rng, 70, dtype=np.float32)
    yield 'slow32', smooth(rng, 50, scale=0.002, dtype=np.float32)
    for T in (3, 4, 5, 6):
        yield f'short{T}', smooth(rng, T)
    static = np.repeat(rng.normal(size=(1, 24, 3)), 12, 0)
    yield 'static', static
    yield 'zeros', np.zeros((8, 24, 3))

CASES = list(cases())

@pytest.mark.parametrize('name,x', CASES, ids=[c[0] for c in CASES])
def test_kinetic_matches_literal_reference(name, x):
    for mode, quirk in (('bailando', True), ('fixed', False)):
        ours, ref = M.kinetic_features(x, mode=mode), lit_kinetic(x, quirk=quirk)
        assert ours.dtype == np.float32 and ours.shape == (72,)
        assert close(ours, ref, atol=1e-30), (name, mode, np.abs(ours - ref).max())

@pytest.mark.parametrize('name,x', CASES, ids=[c[0] for c in CASES])
def test_manual_matches_literal_reference(name, x):
    ours, ref = M.manual_features(x), lit_manual(x)
    assert ours.shape == (32,) and np.array_equal(ours, ref), (name, np.flatnonzero(ours != ref))

def test_manual_exercises_both_outcomes():
    "On human-like slow motion several relations are neither always true nor always false."
    rng = np.random.default_rng(5)
    x = smooth(rng, 60, scale=0.004)
    f = M.manual_features(x)
    assert np.array_equal(f, lit_manual(x)) and ((f > 0) & (f < 1)).sum() >= 3

def test_protocol_matches_literal_reference():
    rng = np.random.default_rng(2)
    x = smooth(rng, 1230, scale=0.01)
    k, m = M.dance_features(x)
    lp = lit_protocol(x)
    assert len(lp) == 1200
    assert close(k, M.kinetic_features(lp)) and np.array_equal(m, M.manual_features(lp))
    k2, _ = M.dance_features(x[:40], max_frames=None)
    assert close(k2, lit_kinetic(lit_protocol(x[:40], None)))

def test_translated_copy_has_zero_fid_k():
    rng = np.random.default_rng(3)
    ref = [smooth(rng, 40 + i) for i in range(30)]
    gen = [smooth(rng, 50) for _ in range(10)]
    moved = [g + np.array([1.5, -0.3, 2.0]) for g in gen]
    kg, _ = M.features(gen); km, _ = M.features(moved)
    assert close(km, kg, rtol=1e-4, atol=1e-6)
    row, row_moved = M.evaluate(gen, None, ref), M.evaluate(moved, None, ref)
    assert abs(row_moved['FID_k'] - row['FID_k']) < 1e-3 * max(1, row['FID_k'])
    gk, _ = M.features(ref[:10])
    rk = M.reference_features(ref)['kinetic']
    rn, gn = M.normalize(rk, gk)
    _, mn = M.normalize(rk, M.features([r + 5.0 for r in ref[:10]])[0])
    assert abs(M.fid(mn, gn)) < 1e-4                       # the translated copy against the original

@pytest.mark.parametrize('n,d', [(40, 5), (10, 72), (6, 32), (200, 32)])
def test_fid_and_diversity_match_literal_reference(n, d):
    rng = np.random.default_rng(n + d)
    ref, gen = rng.normal(size=(n + 7, d)) * rng.uniform(0.5, 2, d), rng.normal(size=(n, d)) + 0.3
    r, g = M.normalize(ref, gen)
    lr, lg = lit_normalize(ref, gen)
    assert np.allclose(r, lr, rtol=1e-12) and np.allclose(g, lg, rtol=1e-12)
    assert close(M.fid(g, r), lit_fid(lg, lr), atol=1e-8)
    assert close(M.diversity(g), lit_diversity(lg))

def test_identical_sets_have_zero_fid():
    x = np.random.default_rng(4).normal(size=(100, 32))
    assert abs(M.fid(x, x)) < 1e-8

def test_normalize_with_constant_feature_uses_eps():
    ref = np.ones((5, 2)); ref[:, 1] = np.arange(5)
    _, g = M.normalize(ref, np.full((1, 2), 2.0))
    lr, lg = lit_normalize(ref, np.full((1, 2), 2.0))
    assert np.array_equal(g, lg) and np.isclose(g[0, 0], 1 / 1e-10)

@pytest.mark.parametrize('T', [40, 200, 700])
def test_bas_matches_literal_reference(T):
    rng = np.random.default_rng(T)
    x = smooth(rng, T, scale=0.01)
    x[..., 1] += 0.1 * np.sin(np.cumsum(rng.uniform(0.05, 0.3, T)))[:, None]   # bobbing at a varying tempo
    beats = (rng.uniform(size=T + 20) < 0.05).astype(np.float32); beats[3] = 1
    music = np.zeros((T + 20, 438), np.float32); music[:, M.BEAT_COLUMN] = beats
    ours = M.beat_align_score(M.music_beats(music, T - 1), M.motion_beats(x))
    assert close(ours, lit_bas(x, beats))
    row = M.evaluate([x, x[::-1].copy()], [music, beats], [smooth(rng, 40) for _ in range(3)])
    assert close(row['BAS'], (lit_bas(x, beats) + lit_bas(x[::-1], beats)) / 2)

def test_beats_on_music_beats_give_bas_one():
    t = np.arange(400)
    x = np.zeros((400, 24, 3)); x[..., 1] = 0.1 * np.sin(2 * np.pi * t / 50)[:, None]
    mb = M.motion_beats(x)
    assert len(mb) >= 10
    music = np.zeros((400, 438)); music[mb, M.BEAT_COLUMN] = 1
    assert M.beat_align_score(M.music_beats(music, 399), mb) == 1.0
    music[mb + 3, M.BEAT_COLUMN], music[mb, M.BEAT_COLUMN] = 1, 0
    assert np.isclose(M.beat_align_score(M.music_beats(music[:396]), mb), math.exp(-0.5))

def test_bad_input_raises_clear_errors():
    rng = np.random.default_rng(0)
    good = [smooth(rng, 20) for _ in range(3)]
    nan = good[0].copy(); nan[4, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r'dances\[1\].*NaN'): M.evaluate([good[0], nan], None, good)
    inf = good[0].copy(); inf[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match='NaN or inf'): M.kinetic_features(inf)
    with pytest.raises(ValueError, match='shape'): M.manual_features(np.zeros((20, 72)))
    with pytest.raises(ValueError, match='at least 3'): M.kinetic_features(np.zeros((2, 24, 3)))
    with pytest.raises(ValueError, match='at least 2'): M.evaluate(good[:1], None, good)
    with pytest.raises(ValueError, match='at least 2'): M.fid(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match='at least 2'): M.diversity(np.zeros((1, 4)))
    with pytest.raises(ValueError, match='music'): M.evaluate(good, [np.zeros(20)], good)
    with pytest.raises(ValueError, match='no motion beats'): M.beat_align_score([1, 2], M.motion_beats(np.zeros((30, 24, 3))))
    with pytest.raises(ValueError, match='mode'): M.kinetic_features(good[0], mode='physics')

def test_reference_cache_keyed_by_content(tmp_path):
    rng = np.random.default_rng(7)
    ref = [smooth(rng, 30) for _ in range(3)]
    a = M.reference_features(ref, cache_dir=tmp_path)
    ref2 = [r.copy() for r in ref]; ref2[1][5, 3, 1] += 0.1
    b = M.reference_features(ref2, cache_dir=tmp_path)
    assert len(list(tmp_path.glob('*.npz'))) == 2 and not np.array_equal(a['kinetic'], b['kinetic'])
    assert np.array_equal(M.reference_features(ref, cache_dir=tmp_path)['kinetic'], a['kinetic'])

def test_feature_benchmark_extrapolates_what_it_timed():
    "The benchmark's figures (its speed goal is read from `bailando bench`'s table, not asserted here: a timed test flakes)."
    b = feature_benchmark(n=4, frames=600)
    assert b['n'] == 4 and b['frames'] == 600 and b['seconds'] > 0 and b['cpu_seconds'] > 0
    assert np.isclose(b['extrapolated_1363_s'], b['seconds'] / 4 * 1363) and np.isclose(b['extrapolated_1363_cpu_s'], b['cpu_seconds'] / 4 * 1363)
    assert np.isclose(b['per_sequence_ms'], 1000 * b['seconds'] / 4)

def test_real_motion_matches_literal_reference(shared):
    "Real AIST++ dancing (the kind of input the metrics exist for) through both versions."
    from bailando.data import load_joints
    x = load_joints(shared / 'aistpp_annotations_sample', 'gJS_sBM_cAll_d03_mJS2_ch07')[:240]
    lp = lit_protocol(x)
    k, m = M.dance_features(x)
    assert close(k, lit_kinetic(lp)) and np.array_equal(m, lit_manual(lp))
    beats = np.zeros(len(x)); beats[::30] = 1
    assert close(M.beat_align_score(M.music_beats(beats, len(x) - 1), M.motion_beats(x)), lit_bas(x, beats))

def test_evaluate_on_the_embedded_data_set(tmp_path):
    root = bd.make_dataset(tmp_path / 'tiny', size='tiny')
    ref = M.reference_from_root(root, cache_dir=tmp_path / 'cache', progress=False)
    test = bd.load_sequences(root, 'test', progress=False)
    row = M.evaluate([s['joints'] for s in test], [s['music'] for s in test], ref)
    assert set(M.PAPER_KEYS) <= set(row) and all(np.isfinite(row[k]) for k in M.PAPER_KEYS)
    assert 0 < row['BAS'] <= 1 and row['n_reference'] == len(bd.read_split(root, 'all'))
    assert len(list((tmp_path / 'cache').glob('*.npz'))) == 1


def test_fid_g_live_leaves_out_relations_the_reference_never_shows():
    "FID_g divides a never-varying relation by eps and explodes; FID_g_live is FID_g over the varying ones only."
    from bailando.metrics import features, normalize, fid, evaluate
    rng = np.random.default_rng(0)
    walk = lambda n: np.cumsum(rng.normal(scale=0.02, size=(n, 24, 3)), 0).astype(np.float32)
    dances, refs = [walk(200) for _ in range(6)], [walk(300) for _ in range(12)]
    rk, rm = features(refs, None); gk, gm = features(dances)
    col = int(np.argmax(gm.std(0)))               # a relation the generated dances show
    rm[:, col] = 0.0                              # ... and the reference never does
    row = evaluate(dances, None, {'kinetic': rk, 'manual': rm})
    live = rm.std(0) > 0
    r_, g_ = normalize(rm, gm)
    assert not live[col] and row['FID_g'] > 1e6 * row['FID_g_live']
    assert np.isclose(row['FID_g_live'], fid(g_[:, live], r_[:, live]))
