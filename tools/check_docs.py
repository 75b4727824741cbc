"""Checks the built docs site: every notebook has a page with its title and the API docs of what it exports."""
import json, re, sys
from pathlib import Path
import nbformat

def title_of(nb_path: Path) -> str:
    "The notebook's title: its first markdown cell's `# heading`."
    nb = nbformat.read(nb_path, as_version=4)
    for c in nb.cells:
        m = re.search(r'^#\s+(.+)$', c.source, re.M) if c.cell_type == 'markdown' else None
        if m: return m.group(1).strip()
    sys.exit(f'check-docs: {nb_path} has no "# title" markdown cell')

def exported_docs(module: str) -> list[tuple[str, str]]:
    "(name, first docstring line) for each public function or class the module exports."
    import importlib
    mod = importlib.import_module(f'bailando.{module}')
    out = []
    for name in getattr(mod, '__all__', []):
        obj = getattr(mod, name)
        doc = (getattr(obj, '__doc__', None) or '').strip().splitlines()
        if callable(obj) and doc and getattr(obj, '__module__', '') == mod.__name__: out.append((name, doc[0]))
    return out

def alnum(s: str) -> str:
    "Letters and digits only: the site's typography (smart quotes, dashes) doesn't matter."
    return re.sub(r'[^A-Za-z0-9]', '', s)

def module_of(nb_path: Path) -> str|None:
    m = re.search(r'#\|\s*default_exp\s+([\w.]+)', nb_path.read_text())
    return m.group(1) if m else None

def main(site=Path('_docs'), nbs=Path('nbs')) -> int:
    problems = []
    for nb in sorted(nbs.glob('*.ipynb')):
        page = site/(nb.stem + '.html')
        if not page.exists(): problems.append(f'{nb}: no page {page}'); continue
        html = re.sub(r'\s+', ' ', page.read_text())
        text = re.sub(r'<[^>]+>', '', html)
        import html as _h; text = _h.unescape(text)
        if title_of(nb).replace('`', '') not in text: problems.append(f'{page}: title {title_of(nb)!r} missing')
        for src in re.findall(r'<img[^>]*\ssrc="([^"]+)"', html):
            if not src.startswith(('data:', 'http:', 'https:')) and not (page.parent/src).exists():
                problems.append(f'{page}: picture {src} is not in the site')
        mod = module_of(nb)
        for name, doc in (exported_docs(mod) if mod else []):
            if name not in text or alnum(doc.split('`')[0])[:30] not in alnum(text):
                problems.append(f'{page}: API docs of {mod}.{name} missing')
    for p in problems: print('check-docs:', p)
    if problems: return 1
    print(f'check-docs: {len(list(nbs.glob("*.ipynb")))} pages, each with its title and API docs')
    return 0

if __name__ == '__main__': sys.exit(main())
