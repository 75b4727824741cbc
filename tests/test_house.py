"The project's frame: the package matches the notebooks, the CLI answers, the docs were built."
import subprocess, sys
from pathlib import Path
from tests.conftest import REPO

def test_cli_help_lists_the_jobs():
    out = subprocess.run([str(Path(sys.executable).parent/'bailando'), '--help'], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    for job in ('study', 'dance', 'bench'): assert job in out.stdout

def test_readme_is_generated_from_index():
    readme = (REPO/'README.md').read_text()
    assert readme.startswith('# Bailando, reproduced')
    assert 'make study' in readme and 'make test' in readme

def test_shared_data_is_there(shared):
    assert (shared/'aistpp_annotations_sample'/'motions').is_dir()
