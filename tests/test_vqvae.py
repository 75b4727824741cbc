"Tests of the choreographic memory (bailando.vqvae) and the shared training loop (bailando.loop.fit)."
import json
import pytest
import torch
from bailando.loop import fit
from bailando.data import read_log
from bailando.vqvae import (SepVQVAE, EMAQuantiser, vqvae_config, n_params, vqvae_loss, root_loss, codebook_log,
                            motion_windows, load_vqvae, train_vqvae, _stage_config, evaluate_vqvae)
from bailando.data import split_halves as halves, merge_halves as join_halves


@pytest.fixture(autouse=True)
def one_thread():
    "Small models run faster (and far steadier on a shared machine) on one thread."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def smooth(n, T, seed=0):
    "n smooth (T, 72) motions: sines of random frequency and phase per channel."
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T)[:, None] / 60
    return torch.sin(2 * torch.pi * (0.5 + 1.5 * torch.rand(n, 1, 72, generator=g)) * t + 6 * torch.rand(n, 1, 72, generator=g))


def test_paper_parameter_counts():
    with torch.device('meta'): m = SepVQVAE(vqvae_config('paper'))
    assert n_params(m.up) == 25_873_965 and n_params(m.down) == 25_809_435
    assert n_params(m.up) + n_params(m.down) == 51_683_400 and n_params(m) == 65_068_619


def test_shapes_and_codes():
    m = SepVQVAE(vqvae_config('tiny')).eval()
    x = smooth(2, 48)
    cu, cd = m.encode(x)
    assert cu.shape == cd.shape == (2, 6) and cu.dtype == torch.int64 and int(cu.max()) < 16
    y = m.decode(cu, cd)
    assert y.shape == (2, 48, 72) and torch.equal(y[:, 0, :3], torch.zeros(2, 3))   # root starts at the origin
    u, d = halves(x); assert torch.equal(join_halves(u, d), x)


@pytest.mark.parametrize('T', [4, 7, 44])
def test_short_or_ragged_window_rejected(T):
    m = SepVQVAE(vqvae_config('tiny'))
    with pytest.raises(ValueError, match='multiple of 8'): m(torch.zeros(1, T, 72))


def test_wrong_channels_rejected():
    with pytest.raises(ValueError, match='72'): SepVQVAE(vqvae_config('tiny'))(torch.zeros(1, 48, 69))


def test_quantiser_dead_codes_reseeded_and_clusters_found():
    torch.manual_seed(0)
    q = EMAQuantiser(8, 2, decay=0.5).train()
    centres = torch.tensor([[5., 5], [-5, 5], [5, -5], [-5, -5]])
    for _ in range(30): q((centres[torch.randint(0, 4, (64,))] + 0.1 * torch.randn(64, 2)).T[None])
    zq, codes, commit, ppl = q.eval()(centres.T[None])
    assert torch.allclose(zq[0].T, centres, atol=0.3) and codes.unique().numel() == 4
    assert 3.5 < ppl < 4.5


def test_overfit_one_batch_10x():
    torch.manual_seed(0)
    m = SepVQVAE(vqvae_config('tiny', width=32, emb=32, n_codes=8))
    xb = smooth(4, 48)
    opt = torch.optim.Adam(m.stage('vq'), lr=3e-3)
    losses = []
    for _ in range(400):
        _, loss, _ = m.train()(xb); opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


SEQS = [dict(motion=s.numpy()) for s in smooth(4, 96)]

def _train(run, epochs, root_epochs):
    return train_vqvae(vqvae_config('tiny', epochs=epochs, root_epochs=root_epochs), SEQS, run, seed=3, device='cpu')


def _same(a, b): return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_exact_resume(tmp_path):
    "Both stages: 4 epochs straight == 2 epochs, a resume, 2 more (identical weights, codebooks and logged losses)."
    a = _train(tmp_path/'a', 4, 4)
    # stage 1 killed after epoch 2: run fit exactly as train_vqvae does, for 2 epochs
    cfg = vqvae_config('tiny', epochs=4, root_epochs=4)
    torch.manual_seed(3); m = SepVQVAE(cfg)
    fit(m, motion_windows(SEQS, cfg['window'], cfg['stride']), vqvae_loss, name='vqvae', run_dir=tmp_path/'b', epochs=2,
        batch_size=cfg['batch_size'], lr=cfg['lr'], betas=cfg['betas'], milestones=cfg['milestones'], gamma=cfg['gamma'],
        seed=3, device='cpu', params=m.stage('vq'), log_extra=codebook_log, config=_stage_config(cfg, 'vq'))
    assert torch.load(tmp_path/'b/checkpoints/vqvae.pt', weights_only=True)['epoch'] == 2
    _train(tmp_path/'b', 4, 2)                       # resumes stage 1 (2 -> 4); root branch 2 epochs
    b = _train(tmp_path/'b', 4, 4)                   # stage 1 done; root branch resumes 2 -> 4
    for name in ('vqvae', 'vqvae_root'):
        sa = torch.load(tmp_path/f'a/checkpoints/{name}.pt', weights_only=True)
        sb = torch.load(tmp_path/f'b/checkpoints/{name}.pt', weights_only=True)
        assert _same(sa['model'], sb['model']) and sa['epoch'] == sb['epoch'] == 4, name
        la = [r['loss'] for r in read_log(tmp_path/f'a/logs/{name}.jsonl') if 'step' in r]
        lb = [r['loss'] for r in read_log(tmp_path/f'b/logs/{name}.jsonl') if 'step' in r]
        assert la == lb and len(la) > 0, name
    assert _same(a.state_dict(), b.state_dict())


def test_root_stage_not_resumed_on_another_stage1(tmp_path):
    _train(tmp_path, 1, 1)
    with pytest.raises(ValueError, match='config'): _train(tmp_path, 2, 1)


def test_fit_resume_generic(tmp_path):
    "The loop itself: dropout and shuffling draw random numbers; 4 straight == 2 + 2 with a fresh model object."
    X = torch.randn(40, 4); ds = torch.utils.data.TensorDataset(X, X.sum(1, keepdim=True))
    def net(seed): torch.manual_seed(seed); return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    def mse(m, b): l = torch.nn.functional.mse_loss(m(b[0]), b[1]); return l, {'mse': l.item()}
    kw = dict(name='toy', batch_size=8, lr=1e-2, milestones=(1, 3), device='cpu', config={'k': 1}, seed=5)
    a = fit(net(0), ds, mse, run_dir=tmp_path/'a', epochs=4, **kw)
    fit(net(0), ds, mse, run_dir=tmp_path/'b', epochs=2, **kw)
    b = fit(net(9), ds, mse, run_dir=tmp_path/'b', epochs=4, **kw)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    rows = read_log(tmp_path/'b/logs/toy.jsonl')
    assert sorted({r['epoch'] for r in rows if r.get('kind') == 'epoch'}) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match='config'): fit(net(0), ds, mse, run_dir=tmp_path/'b', epochs=5, **dict(kw, config={'k': 2}))


def test_resumed_log_counts_steps_like_a_straight_run(tmp_path):
    "With a last partial batch dropped (42 items, batch 8: 5 steps an epoch), a resumed run numbers its steps as a straight one."
    X = torch.randn(42, 4); ds = torch.utils.data.TensorDataset(X, X.sum(1, keepdim=True))
    def mse(m, b): l = torch.nn.functional.mse_loss(m(b[0]), b[1]); return l, {'mse': l.item()}
    kw = dict(name='toy', batch_size=8, lr=1e-2, device='cpu', seed=5)
    fit(torch.nn.Linear(4, 1), ds, mse, run_dir=tmp_path/'a', epochs=3, **kw)
    fit(torch.nn.Linear(4, 1), ds, mse, run_dir=tmp_path/'b', epochs=1, **kw)
    fit(torch.nn.Linear(4, 1), ds, mse, run_dir=tmp_path/'b', epochs=3, **kw)
    steps = [[r['step'] for r in read_log(tmp_path/d/'logs/toy.jsonl') if 'step' in r] for d in ('a', 'b')]
    assert steps[0] == steps[1] == list(range(15))


def test_fit_bf16_autocasts_on_the_cpu_too(tmp_path):
    "bf16=True trains under bf16 autocast on the CPU as well (chapter 07 measures it): same loop, bf16-rounded numbers."
    X = torch.randn(64, 16); ds = torch.utils.data.TensorDataset(X, X @ torch.randn(16, 1))
    def net(): torch.manual_seed(0); return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    def mse(m, b): l = torch.nn.functional.mse_loss(m(b[0]).float(), b[1]); return l, {'mse': l.item()}
    kw = dict(name='toy', epochs=3, batch_size=16, lr=1e-2, device='cpu', seed=1)
    a, b = fit(net(), ds, mse, run_dir=tmp_path/'fp32', **kw), fit(net(), ds, mse, run_dir=tmp_path/'bf16', bf16=True, **kw)
    wa, wb = a[0].weight, b[0].weight
    assert wa.dtype == wb.dtype == torch.float32 and torch.isfinite(wb).all()
    assert not torch.equal(wa, wb) and torch.allclose(wa, wb, atol=0.05)
    la, lb = (read_log(tmp_path/d/'logs/toy.jsonl')[-1]['mse'] for d in ('fp32', 'bf16'))
    assert lb < read_log(tmp_path/'bf16/logs/toy.jsonl')[0]['mse'] and abs(la - lb) < 0.2 * la


def test_checkpoint_errors(tmp_path):
    m = _train(tmp_path, 1, 1)
    ck = tmp_path/'checkpoints/vqvae_root.pt'
    loaded = load_vqvae(ck)
    x = smooth(1, 48)
    assert all(torch.equal(a, b) for a, b in zip(m.encode(x), loaded.encode(x)))
    with pytest.raises(ValueError, match='expected'): load_vqvae(ck, expect='cpu')
    bad = tmp_path/'corrupt.pt'; bad.write_bytes(ck.read_bytes()[:500])
    with pytest.raises(ValueError, match='corrupt.pt'): load_vqvae(bad)
    other = tmp_path/'other.pt'; torch.save({'weights': torch.zeros(2)}, other)
    with pytest.raises(ValueError, match='not a bailando'): load_vqvae(other)
    with pytest.raises(FileNotFoundError): load_vqvae(tmp_path/'missing.pt')
    # a config whose weights do not fit
    d = torch.load(ck, weights_only=True); d['config'] = dict(d['config'], width=8); torch.save(d, other)
    with pytest.raises(ValueError, match='do not fit'): load_vqvae(other)


def test_outputs_and_log(tmp_path):
    _train(tmp_path, 2, 1)
    rows = read_log(tmp_path/'logs/vqvae.jsonl')
    ep = [r for r in rows if r.get('kind') == 'epoch']
    assert len(ep) == 2 and 0 < ep[-1]['usage_up'] <= 1 and {'rec_up', 'commit_down', 'perplexity_up'} <= set(rows[0])
    r = evaluate_vqvae(load_vqvae(tmp_path/'checkpoints/vqvae_root.pt'), [dict(motion=s.numpy()) for s in smooth(2, 100, seed=1)])
    assert r['mpjpe_mm'] > 0 and r['mean_pose_mpjpe_mm'] > 0 and 0 < r['usage_down'] <= 1
