"The main job end to end: a smoke study through the real `bailando` command, then `bailando dance` on real music."
import json, pickle, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from tests.conftest import REPO

BAILANDO = str(Path(sys.executable).parent/'bailando')

def run(*args, timeout=900):
    return subprocess.run([BAILANDO, *args], capture_output=True, text=True, cwd=REPO, timeout=timeout)

@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    "A whole study at tiny size, run once for this module."
    runs = tmp_path_factory.mktemp('runs')
    out = run('study', '--preset', 'tiny', '--name', 'smoke', '--runs', str(runs), '--quiet')
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return runs/'smoke', out.stdout, out.stderr

def test_study_writes_every_artefact(smoke_run):
    run_dir, log, _ = smoke_run
    for stage in ('00_data', '01_vqvae', '02_gpt', '03_actor_critic', '04_metrics', '05_render'):
        assert (run_dir/f'{stage}.ipynb').exists(), stage
        assert f'{stage}: done' in log
    for ck in ('vqvae_root', 'gpt', 'actor_critic'):
        import torch
        assert isinstance(torch.load(run_dir/'checkpoints'/f'{ck}.pt', weights_only=True), dict)
    metrics = json.loads((run_dir/'metrics.json').read_text())
    assert metrics, 'metrics.json is empty'
    for log_file in (run_dir/'logs').glob('*.jsonl'):
        [json.loads(l) for l in log_file.read_text().splitlines() if l.strip()]
    html = (run_dir/'report.html').read_text()
    assert '<table' in html and 'FID_k' in html
    assert list((run_dir/'videos').glob('*.mp4'))
    assert not list(run_dir.glob('*.pt')) and not list(run_dir.rglob('.*.tmp'))    # no test leftovers, no temporary files


def test_study_reads_cleanly(smoke_run):
    "The terminal shows the stages, their times, the table and checks; no papermill or kernel noise, no estimate from the data stage alone."
    _, log, err = smoke_run
    for noise in ('Unable to parse line', 'Passed unknown parameter', 'without encryption'):
        assert noise not in log + err, noise
    first = next(l for l in log.splitlines() if '00_data: done' in l)
    assert 'left' not in first and 'left)' in next(l for l in log.splitlines() if '01_vqvae: done' in l)
    assert 'FID_k' in log and ('PASS' in log or 'FAIL' in log) and log.rstrip().splitlines()[-1].startswith('study finished')

def test_finished_stages_are_skipped(smoke_run):
    run_dir = smoke_run[0]
    stale = run_dir/'checkpoints'/'.gpt.pt.999999999.ab12cd.tmp'; stale.write_bytes(b'killed mid-write')
    out = run('study', '--preset', 'tiny', '--name', 'smoke', '--runs', str(run_dir.parent), '--quiet')
    assert not stale.exists()                                                  # a dead writer's temporary file is removed
    assert out.returncode == 0 and out.stdout.count('skipped') == 6, out.stdout

def test_failing_stage_names_the_notebook(tmp_path):
    out = run('study', '--preset', 'tiny', '--name', 'bad', '--runs', str(tmp_path), '--data', str(tmp_path), '--quiet',
              '--stages', '00_data')
    assert out.returncode == 1 and out.stderr.count('\n') == 1 and 'Traceback' not in out.stderr, out.stderr
    assert str(tmp_path/'bad'/'00_data.ipynb') in out.stderr

def test_dance_on_real_game_music(smoke_run, shared, tmp_path):
    music = shared/'debian_game_music'/'warzone2100-music'/'track13.opus'
    out = run('dance', str(music), '--run', str(smoke_run[0]), '--seconds', '4', '--out', str(tmp_path))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    joints = np.load(tmp_path/'track13'/'track13.npy')
    assert joints.ndim == 3 and joints.shape[1:] == (24, 3) and len(joints) == 240
    assert np.isfinite(joints).all()
    assert (tmp_path/'track13'/'track13.mp4').stat().st_size > 1000
    assert (tmp_path/'track13'/'track13.bvh').read_text().startswith('HIERARCHY')

@pytest.mark.parametrize('bad, msg', [('missing.wav', 'no such'), ('notes.txt', 'unreadable audio')])
def test_dance_fails_clearly(smoke_run, tmp_path, bad, msg):
    (tmp_path/'notes.txt').write_text('not audio')
    out = run('dance', str(tmp_path/bad), '--run', str(smoke_run[0]), '--out', str(tmp_path/'o'))
    assert out.returncode == 1 and msg in out.stderr and bad in out.stderr

def test_dance_without_a_finished_run(tmp_path, shared):
    music = shared/'aist_music_clips'/'gBR_sBM_c01_d04_mBR0_ch02.wav'
    out = run('dance', str(music), '--runs', str(tmp_path), '--out', str(tmp_path/'o'))
    assert out.returncode == 1 and 'no finished run' in out.stderr
