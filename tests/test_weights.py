"Importing the authors' released weights and exporting ours (issue 18): layout, safety, refusals, faithful generation."
import json, os, subprocess, sys
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F
from bailando import weights as W
from bailando.gpt import CrossCondGPT, gpt_config, generate, load_dancer, vqvae_fingerprint
from bailando.vqvae import SepVQVAE
from bailando.actor_critic import Critic
from bailando.cli import main

CLI = [sys.executable, '-c', 'import sys; from bailando.cli import main; sys.exit(main(sys.argv[1:]))']


@pytest.fixture(scope='module')
def layout(shared):
    return W.released_layout(shared/'bailando_released_layout'/'state_dict_keys.tsv')


@pytest.fixture(scope='module')
def released(layout, tmp_path_factory):
    "Paper-size files of the released layout (random numbers): the VQ-VAE and the actor-critic, as the original wrote them."
    d = tmp_path_factory.mktemp('released')
    cfg = W.original_config(W.model_configs('paper'), critic=True)
    return dict(vqvae=W.write_released_like(d/'sep_vqvae_root_epoch_500.pt', layout['sep_vqvae_root'], cfg, 500, seed=1),
                actor_critic=W.write_released_like(d/'actor_critic_epoch_10.pt', layout['actor_critic'], cfg, 10, seed=2))


@pytest.fixture(scope='module')
def imported(released, tmp_path_factory):
    "`bailando import-weights` of the paper-size pair in a child process, with its peak memory (wall time is not asserted: it tripled under load)."
    out = tmp_path_factory.mktemp('runs')/'bailando-released'
    timer = ['/usr/bin/time', '-f', 'MAXRSS_KB %M'] if Path('/usr/bin/time').exists() else []   # GNU time: the child's peak memory
    p = subprocess.run(timer + CLI +
                       ['import-weights', str(released['vqvae']), str(released['actor_critic']), '--out', str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    kb = [int(l.split()[1]) for l in p.stderr.splitlines() if l.startswith('MAXRSS_KB')]
    return dict(run=out, gib=kb[0] / 2**20 if kb else None, stdout=p.stdout)


def test_paper_import_is_small_and_loads_strictly(imported):
    run = imported['run']
    assert imported['gib'] is None or imported['gib'] < 3, imported
    gpt, vq = load_dancer(run, 'cpu')   # strict loads: every key and shape of our paper-size models
    assert isinstance(vq, SepVQVAE) and gpt.config == gpt_config('paper') and gpt.meta['context'] == 28
    assert gpt.meta['starts'] == {'demo': [[423, 12]]} and gpt.meta['vqvae'] == vqvae_fingerprint(vq)
    models = W.read_run(run)
    assert set(models) == {'vqvae', 'gpt', 'actor_critic'} and isinstance(models['actor_critic'][1], Critic)
    info = json.loads((run/'imported.json').read_text())
    assert info['imported_from']['vqvae']['bytes'] == Path(info['imported_from']['vqvae']['path']).stat().st_size
    assert info['imported_from']['actor_critic']['epoch'] == 10 and info['context'] == 28
    assert set(json.loads((run/'stages.json').read_text())) == {'01_vqvae', '02_gpt', '03_actor_critic'}
    assert not [p for p in run.parent.iterdir() if p.name.startswith('.')]   # no temporary folder left behind


def test_paper_round_trip_is_bit_exact(imported, released, tmp_path):
    exp = W.export_weights(imported['run'], tmp_path/'exported')
    for kind, name in [('vqvae', 'sep_vqvae_root/ckpt/epoch_500.pt'), ('actor_critic', 'actor_critic/ckpt/epoch_10.pt')]:
        raw = torch.load(exp/'experiments'/name, map_location='cpu', weights_only=True)   # plain dict config: loads anywhere
        assert all(k.startswith('module.') for k in raw['model'])
        a, b = W.read_released(released[kind]), W.read_released(exp/'experiments'/name)
        assert a['model'].keys() == b['model'].keys()
        assert all(torch.equal(a['model'][k], b['model'][k]) and a['model'][k].dtype == b['model'][k].dtype for k in a['model'])
        assert a['config'] == b['config'] and a['epoch'] == b['epoch']
    again = W.import_weights(exp/'experiments'/'sep_vqvae_root/ckpt/epoch_500.pt', [exp/'experiments'/'actor_critic/ckpt/epoch_10.pt'],
                             tmp_path/'again')
    for f in ('vqvae_root.pt', 'gpt.pt', 'actor_critic.pt'):
        x = torch.load(imported['run']/'checkpoints'/f, weights_only=True)
        y = torch.load(again/'checkpoints'/f, weights_only=True)
        for part in ('model', 'critic'):
            if part in x: assert x[part].keys() == y[part].keys() and all(torch.equal(v, y[part][k]) for k, v in x[part].items())


def test_every_released_tensor_lands_where_it_belongs(imported, released):
    "A tensor's values, found by name in the original file, are the values at the place our mapping puts them."
    vq_state = torch.load(imported['run']/'checkpoints'/'vqvae_root.pt', weights_only=True)['model']
    ac = torch.load(imported['run']/'checkpoints'/'actor_critic.pt', weights_only=True)
    orig = {**W.read_released(released['vqvae'])['model'], **W.read_released(released['actor_critic'])['model']}
    assert torch.equal(vq_state['up.encoder.2.weight'], orig['vqvae_up.encoders.0.level_blocks.0.model.1.0.weight'])
    assert torch.equal(vq_state['root.7.bias'], orig['vqvae_down.decoders_root.0.out.bias'])
    k = orig['vqvae_down.bottleneck.level_blocks.0.k']
    assert torch.equal(vq_state['down.quantiser.codebook'], k) and torch.equal(vq_state['down.quantiser.ema_sum'], k)
    assert vq_state['down.quantiser.ema_count'].eq(1).all() and vq_state['down.quantiser.initted'].item()
    qkv = ac['model']['head.blocks.5.attn.qkv.weight']
    for i, n in enumerate(('query', 'key', 'value')):
        assert torch.equal(qkv[768 * i:768 * (i + 1)], orig[f'gpt_head.blocks.5.attn.{n}.weight'])
    assert torch.equal(ac['critic']['net.head_down.weight'], orig['critic_net.head_down.weight'])


def test_dance_with_an_imported_run(imported, shared, tmp_path):
    clip = shared/'aist_music_clips'/'gBR_sBM_c01_d04_mBR0_ch02.wav'
    assert main(['dance', str(clip), '--run', str(imported['run']), '--seconds', '1', '--out', str(tmp_path)]) == 0
    song = tmp_path/clip.stem                                              # each song's set goes into <out>/<music name>/
    joints = __import__('numpy').load(song/f'{clip.stem}.npy')
    assert joints.shape == (60, 24, 3) and (song/f'{clip.stem}.mp4').stat().st_size > 0


# ---------- refusals, on tiny files (fast) ----------

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "Original-layout files of tiny random models (written by export_weights from a run of ours)."
    cfgs = W.model_configs('tiny')
    torch.manual_seed(0)
    vq, gpt, critic = SepVQVAE(cfgs['vqvae']), CrossCondGPT(cfgs['gpt']), Critic(cfgs['critic'])
    run = tmp_path_factory.mktemp('tiny')/'run'
    (run/'checkpoints').mkdir(parents=True)
    torch.save(dict(model=vq.state_dict(), config=cfgs['vqvae']), run/'checkpoints'/'vqvae_root.pt')
    meta = dict(gpt=cfgs['gpt'], vqvae=vqvae_fingerprint(vq), starts={'gBR': [[1, 2]]})
    torch.save(dict(model=gpt.state_dict(), config=meta), run/'checkpoints'/'gpt.pt')
    torch.save(dict(model=gpt.state_dict(), critic=critic.state_dict(), config=meta), run/'checkpoints'/'actor_critic.pt')
    exp = W.export_weights(run, run.parent/'exported')/'experiments'
    return dict(vqvae=exp/'sep_vqvae_root/ckpt/epoch_500.pt', gpt=exp/'cc_motion_gpt/ckpt/epoch_400.pt',
                actor_critic=exp/'actor_critic/ckpt/epoch_10.pt')


def edited(src, dst, edit, config=None):
    "A copy of an original-layout file with its state_dict changed by `edit` (and its config replaced, if given)."
    ck = W.read_released(src)
    state = {k: v.clone() for k, v in ck['model'].items()}
    edit(state)
    torch.save(dict(model={f'module.{k}': v for k, v in state.items()}, config=config if config is not None else ck['config'],
                    epoch=ck['epoch']), dst)
    return dst


def refuse(tiny, tmp_path, vq=None, gpts=None, size='tiny'):
    with pytest.raises((ValueError, FileExistsError)) as e:
        W.import_weights(vq or tiny['vqvae'], gpts or [tiny['gpt']], tmp_path/'run', size=size)
    assert not (tmp_path/'run').exists() and not [p for p in tmp_path.iterdir() if p.name.startswith('.')]
    return str(e.value)


def test_tiny_import_accepts_keys_without_module_prefix(tiny, tmp_path):
    ck = W.read_released(tiny['gpt'])
    torch.save(dict(model=ck['model'], config=ck['config'], epoch=400), tmp_path/'bare.pt')   # no `module.` prefix
    run = W.import_weights(tiny['vqvae'], [tmp_path/'bare.pt'], tmp_path/'run', size='tiny')
    assert (run/'checkpoints'/'gpt.pt').is_file() and not (run/'checkpoints'/'actor_critic.pt').exists()


def test_refuses_a_file_of_another_model(tiny, tmp_path):
    msg = refuse(tiny, tmp_path, vq=tiny['gpt'])
    assert 'epoch_400.pt: holds the released cc_motion_gpt model, but the VQ-VAE' in msg
    msg = refuse(tiny, tmp_path, gpts=[tiny['vqvae']])
    assert 'epoch_500.pt: holds the released sep_vqvae_root model, but a GPT' in msg
    msg = refuse(tiny, tmp_path, gpts=[tiny['gpt'], tiny['gpt']])
    assert 'a second cc_motion_gpt checkpoint' in msg


def test_refuses_missing_unexpected_and_misshapen_tensors(tiny, tmp_path):
    f = edited(tiny['gpt'], tmp_path/'missing.pt', lambda s: s.pop('gpt_head.ln_f.bias'))
    assert "missing.pt: missing tensor 'gpt_head.ln_f.bias'" in refuse(tiny, tmp_path, gpts=[f])
    f = edited(tiny['gpt'], tmp_path/'extra.pt', lambda s: s.update({'gpt_head.extra.weight': torch.zeros(2)}))
    assert "extra.pt: unexpected tensor 'gpt_head.extra.weight'" in refuse(tiny, tmp_path, gpts=[f])
    f = edited(tiny['gpt'], tmp_path/'shape.pt', lambda s: s.update({'gpt_head.ln_f.weight': torch.ones(33)}))
    assert "shape.pt: 'gpt_head.ln_f.weight' has shape (33,), the model we build has (32,)" in refuse(tiny, tmp_path, gpts=[f])
    f = edited(tiny['gpt'], tmp_path/'half.pt', lambda s: s.update({'gpt_head.ln_f.weight': s['gpt_head.ln_f.weight'].half()}))
    assert "half.pt: 'gpt_head.ln_f.weight' is torch.float16, expected torch.float32" in refuse(tiny, tmp_path, gpts=[f])
    f = edited(tiny['gpt'], tmp_path/'mask.pt', lambda s: s.update({'gpt_base.blocks.0.attn.mask': torch.ones(1, 1, 29, 29)}))
    assert "mask.pt: 'gpt_base.blocks.0.attn.mask' of shape (1, 1, 29, 29) is not the causal mask" in refuse(tiny, tmp_path, gpts=[f])
    f = edited(tiny['vqvae'], tmp_path/'stage1.pt', lambda s: [s.pop(k) for k in [k for k in s if 'decoders_root' in k]])
    assert 'stage1.pt: missing tensor' in (m := refuse(tiny, tmp_path, vq=f)) and 'stage-1 sep_vqvae file' in m


def test_refuses_a_checkpoint_of_another_size(tiny, tmp_path):
    msg = refuse(tiny, tmp_path, size='paper')
    assert 'epoch_500.pt: missing tensor' in msg and 'another size' in msg
    cfg = W.original_config(W.model_configs('tiny'))
    cfg['structure_generate']['base']['n_head'] = 4
    f = edited(tiny['gpt'], tmp_path/'heads.pt', lambda s: None, config=cfg)
    assert 'heads.pt: config structure_generate.base.n_head is 4; this model has 2 heads' in refuse(tiny, tmp_path, gpts=[f])


def test_refuses_a_malicious_file_without_running_it(tiny, tmp_path):
    marker = tmp_path/'pwned'
    class Evil:
        def __reduce__(self): return (os.system, (f'touch {marker}',))
    torch.save(dict(model=W.read_released(tiny['gpt'])['model'], config=Evil(), epoch=1), tmp_path/'evil.pt')
    msg = refuse(tiny, tmp_path, gpts=[tmp_path/'evil.pt'])
    assert 'evil.pt: refused: reading it would call' in msg and 'system' in msg and not marker.exists()
    p = subprocess.run(CLI + ['import-weights', str(tiny['vqvae']), str(tmp_path/'evil.pt'), '--out', str(tmp_path/'cli'), '--size', 'tiny'],
                       capture_output=True, text=True)
    assert p.returncode == 1 and 'evil.pt: refused' in p.stderr and not marker.exists() and not (tmp_path/'cli').exists()


def test_refuses_to_overwrite_a_run(tiny, tmp_path):
    (tmp_path/'run').mkdir()
    with pytest.raises(FileExistsError, match='run: already exists; choose another --out or pass --force'):
        W.import_weights(tiny['vqvae'], [tiny['gpt']], tmp_path/'run', size='tiny')
    run = W.import_weights(tiny['vqvae'], [tiny['gpt']], tmp_path/'run', size='tiny', force=True)
    assert (run/'checkpoints'/'gpt.pt').is_file()


# ---------- faithful generation ----------

def original_sample(model, x_up, x_down, cond, block_size):
    "The released `CrossCondGPT2.sample` loop (shift None, greedy), written out on our model, whose forward is the original's."
    block_size = block_size - 1
    block_shift = block_size
    for k in range(cond.size(1)):
        crop = -(block_shift + (k - block_size - 1) % (block_size - block_shift + 1))
        x_cond_up = x_up if x_up.size(1) <= block_size else x_up[:, crop:]
        x_cond_down = x_down if x_down.size(1) <= block_size else x_down[:, crop:]
        cond_input = cond[:, :k + 1] if k < block_size else cond[:, k - (block_shift + (k - block_size - 1) % (block_size - block_shift + 1)) + 1:k + 1]
        (logit_up, logit_down), _ = model(x_cond_up, x_cond_down, cond_input)
        _, ix_up = torch.topk(F.softmax(logit_up[:, -1, :], dim=-1), k=1, dim=-1)
        _, ix_down = torch.topk(F.softmax(logit_down[:, -1, :], dim=-1), k=1, dim=-1)
        x_up, x_down = torch.cat((x_up, ix_up), dim=1), torch.cat((x_down, ix_down), dim=1)
    return x_up, x_down


@pytest.fixture
def one_thread():
    "A tiny model runs fastest on one thread (two threads on a busy 2-core machine are up to 60x slower)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_context_28_generates_what_the_original_generates(one_thread):
    torch.manual_seed(3)
    model = CrossCondGPT(gpt_config('tiny', vocab_up=16, vocab_down=16)).eval()
    with torch.no_grad():   # sharper logits, so the greedy codes depend on the whole window
        for p in model.parameters(): p.mul_(8)
    music = torch.randn(2, 70, 438, generator=torch.Generator().manual_seed(1))
    start = torch.tensor([[423 % 16], [5]]), torch.tensor([[12], [7]])
    with torch.no_grad(): ref_up, ref_down = original_sample(model, *start, music[:, 1:], 29)   # the original passes music[:, 1:]
    up, down = generate(model, music, *start, context=28)
    assert torch.equal(up, ref_up) and torch.equal(down, ref_down) and up.shape == (2, 70)
    model.meta = {'context': 28}                       # what an imported run's checkpoint records
    assert all(torch.equal(a, b) for a, b in zip(generate(model, music, *start), (up, down)))
    del model.meta
    ours = generate(model, music, *start)              # our default: the full 29 steps, which differs from step 29 on
    assert torch.equal(ours[0][:, :29], up[:, :29]) and not (torch.equal(ours[0], up) and torch.equal(ours[1], down))
    with pytest.raises(ValueError, match='context=30: must lie in 1..29'): generate(model, music, *start, context=30)


# ---------- chapter 04 with imported weights ----------

def test_chapter_04_scores_an_imported_run_beside_the_paper(tiny, tmp_path):
    "The path an AIST++ user runs (`bailando study --stages 04_metrics 05_render --data ROOT` on an imported run), on embedded data."
    from bailando import data as bd
    root = bd.make_dataset(tmp_path/'data', size='tiny')
    runs = tmp_path/'runs'
    W.import_weights(tiny['vqvae'], [tiny['actor_critic'], tiny['gpt']], runs/'released', size='tiny')
    assert main(['study', '--name', 'released', '--runs', str(runs), '--stages', '04_metrics', '05_render', '--data', str(root),
                 '--preset', 'tiny', '--quiet']) == 0
    run = runs/'released'
    rows = json.loads((run/'metrics.json').read_text())
    assert {'ground truth', 'GPT (before actor-critic)', 'actor-critic (Bailando)'} <= set(rows)
    names = [f.stem for f in (run/'dances'/'actor_critic').glob('*.npy')]
    assert names and sorted(names) == sorted(s['name'] for s in bd.load_sequences(root, 'test', progress=False))
    executed = (run/'04_metrics.ipynb').read_text()
    assert "beside the paper's Table 1" in executed and 'Bailando (paper, Table 1)' in executed and '28.1600' in executed
    assert (run/'report.html').stat().st_size > 0   # chapter 05 takes the imported run as it takes a trained one


def test_export_refuses_a_gpt_that_reads_the_beat_phase(tmp_path):
    cfg = W.model_configs('tiny')
    gcfg = dict(cfg['gpt'], n_music=0, beat_phase=5, block_size=4)
    torch.manual_seed(0)
    vq, gpt = SepVQVAE(cfg['vqvae']), CrossCondGPT(gcfg)
    (tmp_path/'run'/'checkpoints').mkdir(parents=True)
    torch.save(dict(model=vq.state_dict(), config=cfg['vqvae']), tmp_path/'run'/'checkpoints'/'vqvae_root.pt')
    torch.save(dict(model=gpt.state_dict(), config=dict(gpt=gcfg, vqvae=vqvae_fingerprint(vq))), tmp_path/'run'/'checkpoints'/'gpt.pt')
    with pytest.raises(ValueError, match='beat_phase=5'): W.export_weights(tmp_path/'run', tmp_path/'out')
    assert not (tmp_path/'out').exists()
