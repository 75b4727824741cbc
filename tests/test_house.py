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

# ---- The package's layering: which module may import which (see "How the code is laid out" in nbs/index.ipynb) ----
import ast
import pytest

BELOW_TOP = {'data', 'loop', 'vqvae', 'gpt', 'actor_critic', 'metrics', 'render', 'protocol'}
ALLOWED = {                      # module -> the modules of ours it may import
    'data': set(),
    'loop': {'data'},
    'vqvae': {'data', 'loop'},
    'gpt': {'data', 'loop', 'vqvae'},
    'actor_critic': {'data', 'loop', 'vqvae', 'gpt', 'metrics'},   # the reward counts kinematic beats
    'metrics': {'data'},
    'render': {'data', 'metrics'},
    'protocol': {'data', 'vqvae', 'gpt', 'metrics'},
    'weights': {'data', 'loop', 'vqvae', 'gpt', 'actor_critic'},
    'train': {'data', 'loop', 'vqvae', 'gpt', 'actor_critic'},
    'bench': BELOW_TOP,
    'cli': BELOW_TOP | {'train', 'bench', 'weights'},
}
IGNORED = {'__init__', '_modidx'}

def imports_of(source:str, module:str) -> list[tuple[str, int, bool]]:
    "(our module imported, line, at top level) for every import of a `bailando` module in `source` (of bailando/<module>.py)."
    tree, out = ast.parse(source), []
    top_nodes = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = ('bailando.' * bool(node.level) + (node.module or '')) if node.level else (node.module or '')
            if node.level and not node.module: names = [f'bailando.{a.name}' for a in node.names]      # from . import data
            elif base == 'bailando': names = [f'bailando.{a.name}' for a in node.names]             # from bailando import data
            else: names = [base]
        elif isinstance(node, ast.Import): names = [a.name for a in node.names]
        else: continue
        for n in names:
            if n == 'bailando' or n.startswith('bailando.'):
                out.append((n.split('.')[1] if '.' in n else '', node.lineno, id(node) in top_nodes))
    return out

def lazy_imports(source:str) -> list[int]:
    "Lines of imports (of anything) below the top level without a comment on the line saying why."
    tree, lines = ast.parse(source), source.splitlines()
    top = {id(n) for n in tree.body}
    return [n.lineno for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in top
            and '#' not in lines[n.lineno - 1]]

def violations(module:str, source:str) -> list[str]:
    "Every import of `source` (the text of bailando/<module>.py) outside the allowed graph, and every unexplained lazy import."
    if module not in ALLOWED: return [f'{module}: not in the layering (add it to ALLOWED and to the index)']
    out = [f'{module}:{line}: imports bailando.{dep}, not allowed (allowed: {sorted(ALLOWED[module]) or "nothing of ours"})'
           for dep, line, _ in imports_of(source, module) if dep and dep != module and dep not in ALLOWED[module]]
    out += [f'{module}:{line}: an import inside a function without a comment saying why' for line in lazy_imports(source)]
    return out

def test_every_module_keeps_to_the_layering():
    found = {p.stem: p.read_text() for p in (REPO/'bailando').glob('*.py') if p.stem not in IGNORED}
    assert {'data', 'loop', 'vqvae', 'gpt', 'actor_critic', 'metrics', 'render', 'protocol'} <= set(found)
    assert [v for m, s in sorted(found.items()) for v in violations(m, s)] == []

def test_the_allowed_graph_has_no_circle():
    seen, done = set(), set()
    def visit(m, path):
        assert m not in path, f'circle: {" -> ".join(path + [m])}'
        if m in done: return
        for d in ALLOWED.get(m, ()): visit(d, path + [m])
        done.add(m)
    for m in ALLOWED: visit(m, [])

@pytest.mark.parametrize('module, source, why', [
    ('data', 'from bailando.metrics import motion_beats\n', 'data -> metrics (the beat_hit_rate circle)'),
    ('data', 'def beat_hit_rate(j):\n    from bailando.metrics import motion_beats  # kinematic beats\n', 'data -> metrics, lazily'),
    ('metrics', 'def generate_dances(run):\n    from .gpt import dance  # loads models\n', 'metrics -> gpt (the protocol circle)'),
    ('metrics', 'from . import vqvae\n', 'metrics -> vqvae'),
    ('gpt', "import bailando.actor_critic as ac\n", 'gpt -> actor_critic (a later stage)'),
    ('vqvae', 'from bailando import gpt\n', 'vqvae -> gpt'),
    ('loop', 'from .vqvae import SepVQVAE\n', 'the loop knows a model'),
    ('render', 'from .gpt import dance\n', 'render -> gpt'),
    ('gpt', 'def f():\n    import numpy as np\n', 'a lazy import without a reason'),
    ('newmodule', 'import numpy\n', 'a module the layering does not know'),
])
def test_the_layering_check_fails_on_a_violation(module, source, why):
    assert violations(module, source), why

def test_the_layering_check_passes_allowed_imports():
    assert violations('gpt', 'from .vqvae import load_vqvae\nfrom bailando.loop import fit\nimport torch\n') == []
    assert violations('cli', 'def f():\n    from bailando.gpt import dance   # lazy: --help needs no torch\n') == []
