"Actor-critic chapter: reward values, critic size, the TD update's effect on the actor and the critic."
import json
import numpy as np
import pytest
import torch
from bailando.gpt import CrossCondGPT, gpt_config
from bailando.actor_critic import (unit_flags, beat_reward, direction_reward, Critic, critic_config, ac_update,
                                   ac_optimizer, prefix_steps, state_features)


@pytest.mark.parametrize('music,motion,code,paper', [
    ([3], [5], 5, 5),      # both beats in the code
    ([3], [], -5, -5),     # music beat only: a miss
    ([], [3], -5, 5),      # motion beat only
    ([], [], -5, 5),       # none
])
def test_beat_reward_exact(music, motion, code, paper):
    m, d = unit_flags(music, 8), unit_flags(motion, 8)
    assert beat_reward(m, d).tolist() == [code]
    assert beat_reward(m, d, variant='paper').tolist() == [paper]


def test_unit_flags_pool_over_eight_frames():
    assert unit_flags([7, 8, 40], 48).tolist() == [1, 1, 0, 0, 0, 1]
    assert unit_flags([47, 48, -1], 50).tolist() == [0, 0, 0, 0, 0, 1]  # out of range ignored, tail dropped


def test_bad_reward_input():
    with pytest.raises(ValueError, match='variant'): beat_reward(np.ones(2), np.ones(2), variant='x')
    with pytest.raises(ValueError, match='length'): beat_reward(np.ones(2), np.ones(3))


def test_direction_reward_range_and_agreement():
    j = np.zeros((16, 24, 3), np.float32)
    j[:, 13], j[:, 14], j[:, 15], j[:, 12] = [1, 1, 0], [-1, 1, 0], [0, 2, 0.1], [0, 1.5, 0]  # shoulders, head, neck
    j[:, 1], j[:, 2], j[:, 4], j[:, 5] = [0.5, 0, 0], [-0.5, 0, 0], [0.5, -1, 0.1], [-0.5, -1, 0.1]
    j[:, 7], j[:, 8] = [0.5, -2, 0], [-0.5, -2, 0]
    r = direction_reward(j)
    assert r.shape == (2,) and np.all((r == 1) | ((r >= -1) & (r < 0)))


def test_critic_paper_size():
    assert sum(p.numel() for p in Critic(critic_config(gpt_config('paper'))).parameters()) == 21_266_688


def test_prefix_steps_equals_shorter_run():
    torch.manual_seed(0)
    g = CrossCondGPT(gpt_config('tiny', vocab_up=8, vocab_down=8)).eval()
    up, down, music = torch.randint(0, 8, (2, 6)), torch.randint(0, 8, (2, 6)), torch.randn(2, 6, 438)
    with torch.no_grad():
        full, short = g.base(up, down, music), g.base(up[:, :4], down[:, :4], music[:, :4])
    assert torch.allclose(prefix_steps(full, 4), short, atol=1e-5)


def _batch(B=3, W=30, V=8, reward=5.0):
    g = torch.Generator().manual_seed(1)
    return dict(up=torch.randint(0, V, (B, W), generator=g), down=torch.randint(0, V, (B, W), generator=g),
                music=torch.randn(B, W, 438, generator=g), reward=torch.full((B, W - 2), reward), mask=torch.ones(B, W - 2))


@pytest.mark.parametrize('reward', [5.0, -5.0])
def test_update_moves_head_not_base_in_td_direction(reward):
    torch.manual_seed(0)
    g = CrossCondGPT(gpt_config('tiny', vocab_up=8, vocab_down=8)); c = Critic(critic_config(g.config))
    b = _batch(reward=reward)
    base0 = [p.clone() for p in g.base.parameters()]

    def logp():
        with torch.no_grad():
            (u, _), _ = g.head(prefix_steps(state_features(g, b), 28))
        return u.log_softmax(-1).gather(-1, b['up'][:, 1:29, None]).sum().item()
    before = logp()
    stats = ac_update(g, c, ac_optimizer(g, c, lr=1e-3), b, critic_steps=0)
    assert all(torch.equal(p, q) for p, q in zip(base0, g.base.parameters()))
    assert stats['reward'] == reward
    assert (logp() > before) == (reward > 0)   # positive TD reinforces the chosen codes, negative suppresses them


def test_mask_limits_actor_loss():
    torch.manual_seed(0)
    g = CrossCondGPT(gpt_config('tiny', vocab_up=8, vocab_down=8)); c = Critic(critic_config(g.config))
    b = _batch(); b['mask'] = torch.zeros_like(b['mask'])
    head0 = [p.clone() for p in g.head.parameters()]
    ac_update(g, c, ac_optimizer(g, c, lr=1e-3), b, critic_steps=0)
    assert all(torch.equal(p, q) for p, q in zip(head0, g.head.parameters()))   # nothing masked in, nothing learnt


# ---- the loop, the checkpoint, bad input -------------------------------------------------------------------------
from pathlib import Path
from bailando.data import atomic_save
from bailando.vqvae import SepVQVAE, vqvae_config
from bailando.gpt import save_gpt, gpt_meta, load_gpt
from bailando.actor_critic import ACConfig, fine_tune, load_actor, pieces_from_folder, make_windows


def _pieces(n=2, L=32, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m60 = rng.normal(size=(8 * L, 438)).astype(np.float32); m60[:, 53] = 0; m60[::30, 53] = 1
        out.append(dict(name=f'p{i}', music=rng.normal(size=(L, 438)).astype(np.float32), music60=m60, start=(i, i + 1)))
    return out


def _models(seed=0):
    torch.manual_seed(seed)
    vq = SepVQVAE(vqvae_config('tiny')).eval()
    K = vq.config['n_codes']
    return CrossCondGPT(gpt_config('tiny', vocab_up=K, vocab_down=K)), vq


def test_fine_tune_resumes_exactly_and_writes_a_gpt_checkpoint(tmp_path):
    pieces = _pieces()
    kw = dict(batch_size=4, lr=1e-3, actor_steps=1, critic_steps=1)
    g, vq = _models(); ga, ca = fine_tune(g, vq, pieces, tmp_path/'a', ACConfig(epochs=2, **kw), progress=False)
    g, vq = _models(); fine_tune(g, vq, pieces, tmp_path/'b', ACConfig(epochs=1, **kw), progress=False)
    g, vq = _models(); gb, cb = fine_tune(g, vq, pieces, tmp_path/'b', ACConfig(epochs=2, **kw), progress=False)
    for a, b in zip(list(ga.parameters()) + list(ca.parameters()), list(gb.parameters()) + list(cb.parameters())):
        assert torch.equal(a, b)
    log = [json.loads(l) for l in (tmp_path/'b'/'logs'/'actor_critic.jsonl').read_text().splitlines()]
    epochs = [r for r in log if r.get('kind') == 'epoch']
    assert [r['epoch'] for r in epochs] == [0, 1] and all({'reward', 'critic_loss', 'bas'} <= set(r) for r in epochs)
    assert load_gpt(tmp_path/'b'/'checkpoints'/'actor_critic.pt', 'cpu').config == ga.config
    g, vq = _models()   # another config in the same run folder is refused, not silently mixed
    with pytest.raises(ValueError, match='another run folder'):
        fine_tune(g, vq, pieces, tmp_path/'b', ACConfig(epochs=3, **dict(kw, lr=5e-4)), progress=False)


def _run_with(tmp_path, gpt, vq_saved, meta_vq):
    ck = tmp_path/'checkpoints'; ck.mkdir(parents=True)
    save_gpt(gpt, ck/'gpt.pt', meta=None if meta_vq is None else gpt_meta(gpt.config, meta_vq, []))
    atomic_save(dict(model=vq_saved.state_dict(), config=vq_saved.config), ck/'vqvae_root.pt')
    (ck/'actor_critic.pt').write_bytes(b'previous')
    return ck


def test_gpt_of_another_vqvae_is_refused(tmp_path):
    g, vq = _models(0); _, other = _models(1)
    ck = _run_with(tmp_path, g, other, meta_vq=vq)
    with pytest.raises(ValueError, match='another VQ-VAE'): load_actor(tmp_path, 'cpu')
    assert (ck/'actor_critic.pt').read_bytes() == b'previous'


def test_gpt_vocabulary_must_match_vqvae(tmp_path):
    _, vq = _models()
    ck = _run_with(tmp_path, CrossCondGPT(gpt_config('tiny', vocab_up=8, vocab_down=8)), vq, meta_vq=None)
    with pytest.raises(ValueError, match='vocabularies'): load_actor(tmp_path, 'cpu')
    assert (ck/'actor_critic.pt').read_bytes() == b'previous'


def test_music_folder_without_audio(tmp_path):
    (tmp_path/'readme.txt').write_text('no music here'); (tmp_path/'fake.wav').write_bytes(b'not audio')
    with pytest.warns(UserWarning), pytest.raises(ValueError, match='no readable audio'):
        pieces_from_folder(tmp_path, {})
    with pytest.raises(FileNotFoundError): pieces_from_folder(tmp_path/'missing', {})


def test_short_rollout_rejected():
    with pytest.raises(ValueError, match='shorter than one window'):
        make_windows(np.zeros(10), np.zeros(10), np.zeros((10, 438)), np.zeros(10))


def test_music_folder_of_real_clips(shared):
    "The 'in the wild' option on five real AIST music clips (7-8 s each): one piece per file, aligned features."
    pieces = pieces_from_folder(shared/'aist_music_clips', {'gBR': [[3, 4]]}, max_codes=40)
    assert len(pieces) == 5 and all(p['start'] == (3, 4) for p in pieces)
    for p in pieces:
        assert p['music'].shape == (40, 438) and p['music60'].shape == (320, 438)
        assert p['music60'][:, 53].sum() > 0          # the beat column carries beats to reward


def test_windows_per_epoch_and_critic_warmup(tmp_path):
    g, vq = _models(); head0 = [p.clone() for p in g.head.parameters()]
    fine_tune(g, vq, _pieces(), tmp_path, ACConfig(epochs=1, batch_size=4, windows_per_epoch=8, critic_warmup=1,
                                                   lr=1e-3, actor_steps=1, critic_steps=1), progress=False)
    log = [json.loads(l) for l in (tmp_path/'logs'/'actor_critic.jsonl').read_text().splitlines()]
    assert sum(1 for r in log if r.get('kind') != 'epoch') == 2                  # 8 windows in batches of 4
    assert all(torch.equal(p, q) for p, q in zip(head0, g.head.parameters()))   # warm-up: the actor did not move


def _select_run(path, epochs, guard=0.1):
    g, vq = _models(); ref = np.random.default_rng(1).normal(size=(8, 72)).astype(np.float32) ** 2
    cfg = ACConfig(epochs=epochs, batch_size=4, lr=3e-3, actor_steps=1, critic_steps=1, select='best', guard=guard)
    out = fine_tune(g, vq, _pieces(), path, cfg, reference=ref, progress=False)
    return out[0], [json.loads(l) for l in (path/'logs'/'actor_critic.jsonl').read_text().splitlines()]


def test_select_best_keeps_the_best_guarded_actor_and_resumes_exactly(tmp_path):
    ga, log = _select_run(tmp_path/'a', 3)
    sel, = [r for r in log if r.get('kind') == 'selected']
    ep = [r for r in log if r.get('kind') == 'epoch']
    assert sel['fid_k0'] == ep[0]['fid_k'] and sel['fid_k'] <= 1.1 * sel['fid_k0']
    assert all(sel['bas'] >= r['bas'] for r in ep if r['fid_k'] <= 1.1 * sel['fid_k0'])
    ck = torch.load(tmp_path/'a'/'checkpoints'/'actor_critic.pt', weights_only=True)
    assert all(torch.equal(v, ga.state_dict()[k]) for k, v in ck['model'].items())     # the kept actor is the model
    _select_run(tmp_path/'b', 1); gb, log_b = _select_run(tmp_path/'b', 3)              # stopped after one epoch, resumed
    assert all(torch.equal(a, b) for a, b in zip(ga.parameters(), gb.parameters()))
    assert [r for r in log_b if r.get('kind') == 'selected'] == [sel]


def test_select_best_falls_back_to_the_pretrained_actor(tmp_path):
    g0, _ = _models()
    g, log = _select_run(tmp_path, 2, guard=-1.0)       # no later actor can pass a guard below the first FID_k
    assert [r for r in log if r.get('kind') == 'selected'][0]['selected_epoch'] == 0
    assert all(torch.equal(a, b) for a, b in zip(g0.parameters(), g.parameters()))
    with pytest.raises(ValueError, match='reference'):
        fine_tune(*_models(), _pieces(), tmp_path/'c', ACConfig(epochs=1, select='best'), progress=False)
