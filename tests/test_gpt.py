"Acceptance tests of the motion GPT (issue 6): mask, overfit, determinism, lengths, seeds, batching, errors."
import numpy as np
import pytest
import torch
from torch import nn
from bailando import gpt as G


def tiny(V=16, block=8, seed=0):
    torch.manual_seed(seed)
    return G.CrossCondGPT(G.gpt_config('tiny', vocab_up=V, vocab_down=V, block_size=block)).eval()


def test_paper_preset_has_the_original_parameter_count():
    with torch.device('meta'): m = G.CrossCondGPT(G.gpt_config('paper'))
    n = lambda mod: sum(p.numel() for p in mod.parameters())
    assert (n(m.base), n(m.head), n(m)) == (43_717_632, 43_315_200, 87_032_832)


def test_base_features_and_head_logits_shapes():
    m = tiny()
    up, down, mus = torch.randint(0, 16, (3, 5)), torch.randint(0, 16, (3, 5)), torch.randn(3, 5, 438)
    feat = m.base(up, down, mus)
    assert feat.shape == (3, 15, 32)
    (lu, ld), loss = m.head(feat, (up, down))
    assert lu.shape == ld.shape == (3, 5, 16) and loss.ndim == 0


@pytest.mark.parametrize('stream', [0, 1, 2])
@pytest.mark.parametrize('j', [0, 3, 7])
def test_mask_changes_at_step_j_never_reach_earlier_steps(stream, j):
    m = tiny()
    g = torch.Generator().manual_seed(j)
    x = [torch.randint(0, 16, (2, 8), generator=g), torch.randint(0, 16, (2, 8), generator=g), torch.randn(2, 8, 438, generator=g)]
    (lu, ld), _ = m(*x)
    y = [t.clone() for t in x]
    y[stream][:, j:] = (y[stream][:, j:] + 5) % 16 if stream < 2 else torch.randn_like(y[stream][:, j:])
    (lu2, ld2), _ = m(*y)
    assert torch.allclose(lu2[:, :j], lu[:, :j], atol=1e-6) and torch.allclose(ld2[:, :j], ld[:, :j], atol=1e-6)
    assert not torch.allclose(lu2[:, j], lu[:, j]) and not torch.allclose(ld2[:, j], ld[:, j])


def fake_coded(n_seq=3, n=40, V=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [dict(name=f's{i}', genre=['gBR', 'gPO'][i % 2], up=torch.randint(0, V, (n,), generator=g),
                 down=torch.randint(0, V, (n,), generator=g), music=torch.randn(n, 438, generator=g)) for i in range(n_seq)]


def test_tiny_model_overfits_a_batch():
    ds = G.CodeWindows(fake_coded(), length=9, stride=4)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    m = tiny().train()
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(80):
        loss, parts = G.gpt_loss(m, batch); opt.zero_grad(); loss.backward(); opt.step()
    assert loss.item() < 0.1 and parts['acc'] == 1.0


def test_windows_align_inputs_music_and_targets():
    coded = fake_coded(n_seq=1, n=12)
    ds = G.CodeWindows(coded, length=5, stride=2)
    assert len(ds) == 4
    item = ds[1]
    assert torch.equal(item['up'], coded[0]['up'][2:7]) and torch.equal(item['music'], coded[0]['music'][2:7])
    with pytest.raises(ValueError, match='30 code steps'): G.CodeWindows(coded, length=30)


def test_greedy_is_deterministic_and_as_long_as_the_music():
    m = tiny()
    mus = torch.randn(1, 37, 438)  # longer than the context of 8: the window slides
    a = G.generate(m, mus, [[3]], [[4]])
    b = G.generate(m, mus, [[3]], [[4]])
    assert a[0].shape == a[1].shape == (1, 37)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[0][0, 0] == 3 and a[1][0, 0] == 4


def test_given_start_codes_are_kept():
    m = tiny()
    up, down = G.generate(m, torch.randn(1, 12, 438), [[1, 2, 3]], [[4, 5, 6]])
    assert up[0, :3].tolist() == [1, 2, 3] and down[0, :3].tolist() == [4, 5, 6]


def test_seeded_sampling_is_reproducible():
    m = tiny()
    mus = torch.randn(2, 20, 438)
    run = lambda seed, style='energetic': G.generate(m, mus, [[0], [1]], [[1], [2]], style=style, seed=seed)[0]
    assert torch.equal(run(7), run(7)) and not torch.equal(run(7), run(8))
    assert torch.equal(run(7, 'greedy'), run(8, 'greedy'))
    batch = G.generate(m, mus[:1].expand(3, -1, -1), [[0]] * 3, [[1]] * 3, style='energetic', seed=[5, 7, 9])[0]
    alone = G.generate(m, mus[:1], [[0]], [[1]], style='energetic', seed=[7])[0]
    assert torch.equal(batch[1], alone[0]) and not torch.equal(batch[0], batch[1])   # one generator per dance
    with pytest.raises(ValueError, match='one per piece'): G.generate(m, mus, [[0], [1]], [[1], [2]], style='wild', seed=[1])


def test_batch_equals_each_piece_alone_in_fp32():
    m = tiny(seed=3)
    musics = [torch.randn(n, 438) for n in (30, 11, 2, 19)]
    starts = [(torch.tensor([i]), torch.tensor([15 - i])) for i in range(4)]
    for (u, d), mus, (su, sd) in zip(G.generate_many(m, musics, starts), musics, starts):
        u1, d1 = G.generate(m, mus[None], su[None], sd[None])
        assert len(u) == len(mus) and torch.equal(u, u1[0]) and torch.equal(d, d1[0])


def test_bad_inputs_give_clear_errors(tmp_path):
    m = tiny()
    with pytest.raises(ValueError, match='at least 2'): G.generate(m, torch.randn(1, 1, 438), [[0]], [[0]])
    with pytest.raises(ValueError, match='unknown style'): G.generate(m, torch.randn(1, 5, 438), [[0]], [[0]], style='funky')
    with pytest.raises(ValueError, match='exceed the context'): m(torch.zeros(1, 9).long(), torch.zeros(1, 9).long(), torch.zeros(1, 9, 438))
    with pytest.raises(ValueError, match=r'\(B, t, 438\)'): m(torch.zeros(1, 4).long(), torch.zeros(1, 4).long(), torch.zeros(1, 4, 10))
    with pytest.raises(ValueError, match='unknown GPT preset'): G.gpt_config('huge')
    (tmp_path/'bad.pt').write_bytes(b'\x00garbage')
    with pytest.raises(ValueError, match='bad.pt'): G.load_gpt(tmp_path/'bad.pt')
    torch.save({'model': {}, 'config': {'vqvae_cfg': 1}}, tmp_path/'vq.pt')
    with pytest.raises(ValueError, match='not a GPT checkpoint'): G.load_gpt(tmp_path/'vq.pt')
    with pytest.raises(FileNotFoundError, match='missing.pt'): G.load_gpt(tmp_path/'missing.pt')
    (tmp_path/'song.wav').write_text('this is not audio')
    with pytest.raises((ValueError, FileNotFoundError), match='song.wav'): G.read_music(tmp_path/'song.wav')


def test_checkpoint_round_trip_and_start_table(tmp_path):
    m = tiny()
    coded = fake_coded(n_seq=4)
    table = G.start_code_table(coded)
    assert sorted(table) == ['gBR', 'gPO'] and len(table['gBR']) == 2 and table['gBR'][0] == [int(coded[0]['up'][0]), int(coded[0]['down'][0])]
    G.save_gpt(m, tmp_path/'gpt.pt', dict(vqvae='x', starts=table))
    m2 = G.load_gpt(tmp_path/'gpt.pt', 'cpu')
    mus = torch.randn(1, 15, 438)
    assert torch.equal(G.generate(m, mus, [[1]], [[2]])[0], G.generate(m2, mus, [[1]], [[2]])[0])
    assert G._start_pair(m2.meta, 'gPO', 0) in [tuple(p) for p in table['gPO']]
    with pytest.raises(ValueError, match='gXX'): G._start_pair(m2.meta, 'gXX', 0)


class FakeVQ(nn.Module):
    "A stand-in VQ-VAE: codes -> 8 frames each of a constant pose."
    def __init__(self, scale=1.0):
        super().__init__()
        self.register_buffer('scale', torch.tensor(scale))
    def decode(self, up, down):
        x = (up.float() + down.float())[..., None].repeat_interleave(8, 1) * self.scale  # (B, 8N, 1)
        return x.expand(*x.shape[:2], 72).contiguous()


def test_a_gpt_paired_with_another_vqvae_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(G, 'load_vqvae', lambda path, device=None: FakeVQ(2.0), raising=False)
    G.save_gpt(tiny(), tmp_path/'gpt.pt', dict(vqvae=G.vqvae_fingerprint(FakeVQ(1.0)), starts={}))
    torch.save({}, tmp_path/'vqvae_root.pt')
    with pytest.raises(ValueError, match='another VQ-VAE'): G.load_dancer(tmp_path/'gpt.pt', 'cpu')
    monkeypatch.setattr(G, 'load_vqvae', lambda path, device=None: FakeVQ(1.0), raising=False)
    gpt, vq = G.load_dancer(tmp_path, 'cpu')
    assert isinstance(vq, FakeVQ)


# ---- integration: the embedded tiny data set, a quick VQ-VAE, a quick GPT, then `dance` from audio files ----

@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    from bailando import data as bd
    from bailando.vqvae import vqvae_config, SepVQVAE, load_vqvae
    from bailando.loop import fit
    run = tmp_path_factory.mktemp('gpt_run')
    root = bd.make_dataset(run/'data', seed=0, size='tiny', progress=False)
    seqs = bd.load_sequences(root, 'train', progress=False)
    torch.manual_seed(0)  # an untrained VQ-VAE is enough here: the pipeline is the same, and it costs nothing
    cfg = vqvae_config('tiny')
    (run/'checkpoints').mkdir()
    torch.save(dict(config=cfg, model=SepVQVAE(cfg).state_dict()), run/'checkpoints'/'vqvae_root.pt')
    vq = load_vqvae(run/'checkpoints'/'vqvae_root.pt')
    coded = G.encode_sequences(vq, seqs, progress=False)
    K = vq.config['n_codes']
    cfg = G.gpt_config('tiny', vocab_up=K, vocab_down=K)
    torch.manual_seed(0)
    model = G.CrossCondGPT(cfg)
    fit(model, G.CodeWindows(coded, 30, 4), G.gpt_loss, name='gpt', run_dir=run, epochs=1, batch_size=16, lr=1e-3,
        config=G.gpt_meta(cfg, vq, coded))
    return run, root, seqs, coded


def test_dance_is_as_long_as_the_music_and_deterministic(tiny_run):
    from bailando import data as bd
    run, root, seqs, coded = tiny_run
    audio = bd.music_path(root, seqs[0]['name'])
    n, T = len(bd.music_features(audio, fps=7.5)), int(bd.audio_duration(audio) * 60)
    j = G.dance(audio, run)
    assert j.shape == (T, 24, 3) and 8 * (n - 1) <= T <= 8 * n and j.dtype == np.float32 and np.isfinite(j).all()
    assert np.array_equal(j, G.dance(audio, run/'checkpoints'/'gpt.pt'))
    assert G.dance(audio, run, seconds=2).shape == (8 * 15, 24, 3)


def test_dance_sampling_is_seeded_and_genre_starts_work(tiny_run):
    from bailando import data as bd
    run, root, seqs, coded = tiny_run
    audio = bd.music_path(root, seqs[0]['name'])
    a, b = (G.dance(audio, run, style='wild', seconds=3, seed=1) for _ in range(2))
    assert np.array_equal(a, b)
    batch = G.dance(audio, run, style='wild', seconds=3, seed=[0, 1, 2])   # one batch; each dance equals its seed's alone
    assert batch.shape == (3, 180, 24, 3) and np.allclose(batch[1], a, atol=1e-4)
    genre = coded[0]['genre']
    assert G.dance(audio, run, seconds=2, genre=genre).shape == (8 * 15, 24, 3)
    with pytest.raises(ValueError, match='gNOPE'): G.dance(audio, run, seconds=2, genre='gNOPE')


def test_generate_decodes_to_joints_through_the_vqvae(tiny_run):
    from bailando.vqvae import load_vqvae
    run, root, seqs, coded = tiny_run
    gpt, vq = G.load_dancer(run, 'cpu')
    c = coded[0]
    up, down = G.generate(gpt, c['music'][None], c['up'][:1][None], c['down'][:1][None])
    j = G.codes_to_joints(vq, up, down)
    assert j.shape == (1, 8 * len(c['music']), 24, 3) and np.allclose(j[0, 0, 0], 0, atol=1e-5)  # root starts at 0


def test_dance_errors_name_the_problem(tiny_run, tmp_path):
    import shutil
    import soundfile as sf
    from bailando.vqvae import SepVQVAE, vqvae_config
    from bailando import data as bd
    run, root, seqs, coded = tiny_run
    audio = bd.music_path(root, seqs[0]['name'])
    (tmp_path/'notes.wav').write_text('not audio at all')
    with pytest.raises(ValueError, match='notes.wav'): G.dance(tmp_path/'notes.wav', run)
    sf.write(tmp_path/'blip.wav', np.zeros(600, np.float32), 30720)  # 0.02 s: shorter than one code step
    with pytest.raises(ValueError, match='blip.wav'): G.dance(tmp_path/'blip.wav', run)
    with pytest.raises(FileNotFoundError, match='nothing.wav'): G.dance(tmp_path/'nothing.wav', run)
    other = tmp_path/'other'; (other/'checkpoints').mkdir(parents=True)
    shutil.copy(run/'checkpoints'/'gpt.pt', other/'checkpoints'/'gpt.pt')
    torch.manual_seed(1)  # another VQ-VAE of the same sizes
    cfg = vqvae_config('tiny')
    torch.save(dict(config=cfg, model=SepVQVAE(cfg).state_dict()), other/'checkpoints'/'vqvae_root.pt')
    with pytest.raises(ValueError, match='another VQ-VAE'): G.dance(audio, other)
    (other/'checkpoints'/'vqvae_root.pt').unlink()
    with pytest.raises(FileNotFoundError, match='vqvae_root.pt'): G.dance(audio, other)


def test_baselines_see_a_cycle():
    cyc = [dict(up=torch.arange(40) % 16, down=(torch.arange(40) * 3) % 16)]
    b = G.baselines(cyc, cyc, 16)
    assert b['bigram_acc'] == 1.0 and b['repeat_acc'] == 0.0 and b['bigram_ce'] < b['unigram_ce']


# ---- the beat phase: a GPT that reads where the next beat is (the cpu preset's music input) ----

def test_beat_phase_config_is_checked_and_sized():
    cfg = G.gpt_config('tiny', n_music=0, beat_phase=5, block_size=4)
    assert G.music_width(cfg) == 5 and G.CrossCondGPT(cfg).base.cond_emb.in_features == 5
    assert G.music_width(G.gpt_config('paper')) == 438 and G.gpt_config('paper')['beat_phase'] == 0
    with pytest.raises(ValueError, match='n_music=100'): G.gpt_config('tiny', n_music=100)
    with pytest.raises(ValueError, match='hears no music'): G.gpt_config('tiny', n_music=0, beat_phase=0)
    with pytest.raises(ValueError, match=r'\(B, t, 5\)'): G.CrossCondGPT(cfg)(torch.zeros(1, 3).long(), torch.zeros(1, 3).long(), torch.zeros(1, 3, 438))


def test_gpt_music_appends_the_phase_and_needs_the_beats():
    feats = np.random.default_rng(0).normal(size=(6, 438)).astype(np.float32)
    both = G.gpt_music(G.gpt_config('tiny', beat_phase=3), feats, [3, 20])
    assert both.shape == (6, 441) and np.array_equal(both[:, :438], feats)
    assert both[:, 438:].argmax(1).tolist() == [0, 1, 0, 2, 2, 2]
    assert np.array_equal(G.gpt_music(None, feats), feats) and G.gpt_music(G.gpt_config('cpu'), feats, [3]).shape == (6, 5)
    with pytest.raises(ValueError, match='60 fps beats'): G.gpt_music(G.gpt_config('cpu'), feats)


def test_a_beat_phase_gpt_trains_and_dances_to_the_beats_it_reads(tiny_run, tmp_path, monkeypatch):
    import shutil
    from bailando import data as bd
    from bailando.vqvae import load_vqvae
    run, root, seqs, coded = tiny_run
    (tmp_path/'checkpoints').mkdir()
    shutil.copy(run/'checkpoints'/'vqvae_root.pt', tmp_path/'checkpoints'/'vqvae_root.pt')
    vq = load_vqvae(tmp_path/'checkpoints'/'vqvae_root.pt')
    arch = dict(n_music=0, beat_phase=5, block_size=4)
    with pytest.raises(ValueError, match='encode the dances with its config'):   # codes made for the 438 features
        G.train_gpt(vq, coded, tmp_path, preset='tiny', length=5, device='cpu', epochs=1, arch=arch)
    cfg = G.gpt_config('tiny', vocab_up=vq.config['n_codes'], vocab_down=vq.config['n_codes'], **arch)
    phased = G.encode_sequences(vq, seqs, cfg, progress=False)
    assert phased[0]['music'].shape == (len(phased[0]['up']), 5)
    G.train_gpt(vq, phased, tmp_path, preset='tiny', length=5, device='cpu', epochs=1, arch=arch)
    assert G.load_gpt(tmp_path/'checkpoints'/'gpt.pt', 'cpu').config['beat_phase'] == 5
    audio = bd.music_path(root, seqs[0]['name'])
    heard, generate = [], G.generate
    monkeypatch.setattr(G, 'generate', lambda model, music, *a, **k: heard.append(music[0].clone()) or generate(model, music, *a, **k))
    real = G.dance(audio, tmp_path, seconds=3)
    assert real.shape == (180, 24, 3) and np.array_equal(real, G.dance(audio, tmp_path, seconds=3))
    want = G.gpt_music(cfg, G.read_music(audio, 3), bd.beat_frames(bd.music_features(audio, fps=60, seconds=3)))
    assert heard[0].shape == (23, 5) and np.array_equal(heard[0].numpy(), want)   # the phase of the beats the features find
    monkeypatch.setattr(G, 'read_beats', lambda path, seconds=None: np.arange(0, 180, 13))   # other beats, same audio
    G.dance(audio, tmp_path, seconds=3)
    assert np.array_equal(heard[-1].numpy(), bd.beat_phase(np.arange(0, 180, 13), 23, 5)) and not torch.equal(heard[-1], heard[0])


def test_dance_can_keep_the_dancer_on_the_floor(tiny_run):
    from bailando import data as bd
    run, root, seqs, coded = tiny_run
    audio = bd.music_path(root, seqs[0]['name'])
    raw, flat = G.dance(audio, run, seconds=4), G.dance(audio, run, seconds=4, ground=True)
    assert np.array_equal(flat, bd.grounded(raw)) and np.array_equal(flat[..., [0, 2]], raw[..., [0, 2]])
    assert not np.allclose(raw[..., 1], flat[..., 1])   # the raw decoder output is not on the floor (chapter 00 tests `grounded`)
