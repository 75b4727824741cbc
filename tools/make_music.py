"""Rebuild data/music/ (the shipped real-music excerpts) and its SOURCES.tsv from Debian's packages.

Usage: python tools/make_music.py [--debs DIR] [--out data/music]
Each package is fetched with `apt-get download` into DIR (a temp folder by default) and unpacked with dpkg-deb;
the licence of every track is what the package's copyright file (usr/share/doc/<pkg>/copyright) states for its path.
Each excerpt: `seconds` from `start` s, downmixed to mono, resampled to 22050 Hz, 50 ms fades, Ogg Vorbis quality 0.
Never add nexuiz-music (reserved for an independent check), nor the three tracks of ../shared/data/debian_game_music
(asc-music machine_wars, warzone2100 legacy track11 and track13: the study evaluates on them, so it never trains on them).
"""
import argparse, subprocess, tempfile, glob
from pathlib import Path
import imageio_ffmpeg

# (file, split, package, version, path in the package, start s, seconds, author as the copyright file states, licence)
SUPERTUX = ('supertux-data', '0.6.3-2', 'Marek Moeckel <wansti@gmx.de> (copyright file, Files: data/music/*)', 'GPL-2+')
HEDGEWARS = ('hedgewars-data', '1.0.2-6', 'Andrey Korotaev, Igor Ulyanov, Hedgewars Project (copyright file, Files: *)', 'GPL-2')
ETR = ('extremetuxracer-data', '0.8.2-1', 'Jasmin F. Patry, Volker Stroebel, Extreme Tux Racer Team (copyright file, Files: *)', 'GPL-2+')
FB = ('frozen-bubble-data', '2.212-11', 'Karthik Thakore, The Frozen-Bubble Team (copyright file, Files: *)', 'GPL-2')
ASC = ('asc-music', '1.3-6', 'Michael Kievernagel (copyright file, Files: *)', 'GPL-2+')
WZ = ('warzone2100-music', '4.3.3-3', 'LupusMechanicus (album license.txt; copyright file, Files: *: Warzone 2100 Project)',
      'CC-BY-SA-3.0-or-later OR GPL-2+ (album license.txt); GPL-2+ (copyright file)')
TRACKS = [
    # training tracks (several excerpts of each are heard in training)
    ('christmas_theme.ogg', 'train', *SUPERTUX[:2], 'usr/share/games/supertux2/music/misc/christmas_theme.ogg', 20, 40, *SUPERTUX[2:]),
    ('brick.ogg', 'train', *HEDGEWARS[:2], 'usr/share/games/hedgewars/Data/Music/Brick.ogg', 30, 40, *HEDGEWARS[2:]),
    ('ice_music.ogg', 'train', *SUPERTUX[:2], 'usr/share/games/supertux2/music/retro/ice_music.ogg', 20, 40, *SUPERTUX[2:]),
    ('calmrace.ogg', 'train', *ETR[:2], 'usr/share/games/etr/music/calmrace-ks.ogg', 20, 40, *ETR[2:]),
    ('introzik.ogg', 'train', *FB[:2], 'usr/share/games/frozen-bubble/snd/introzik.ogg', 30, 40, *FB[2:]),
    ('battle_theme.ogg', 'train', *SUPERTUX[:2], 'usr/share/games/supertux2/music/misc/battle_theme.ogg', 30, 40, *SUPERTUX[2:]),
    ('saharan_penguin.ogg', 'train', *SUPERTUX[:2], 'usr/share/games/supertux2/music/tropical/saharan_penguin.ogg', 20, 40, *SUPERTUX[2:]),
    ('tropicalbreeze.ogg', 'train', *SUPERTUX[:2], 'usr/share/games/supertux2/music/tropical/tropicalbreeze.ogg', 15, 40, *SUPERTUX[2:]),
    ('mainzik_1p.ogg', 'train', *FB[:2], 'usr/share/games/frozen-bubble/snd/frozen-mainzik-1p.ogg', 40, 40, *FB[2:]),
    ('halloween.ogg', 'train', *SUPERTUX[:2], 'usr/share/games/supertux2/music/misc/halloween_1.ogg', 20, 40, *SUPERTUX[2:]),
    ('freezingpoint.ogg', 'train', *ETR[:2], 'usr/share/games/etr/music/freezingpoint.ogg', 20, 40, *ETR[2:]),
    ('art.ogg', 'train', *HEDGEWARS[:2], 'usr/share/games/hedgewars/Data/Music/Art.ogg', 30, 40, *HEDGEWARS[2:]),
    ('menu_enhanced.ogg', 'train', *WZ[:2], 'usr/share/games/warzone2100/music/albums/aftermath_soundtrack/menu_enhanced.opus', 60, 40, *WZ[2:]),
    ('wisphunt.ogg', 'train', *SUPERTUX[:2], 'usr/share/games/supertux2/music/forest/wisphunt.ogg', 10, 40, *SUPERTUX[2:]),
    ('race1.ogg', 'train', *ETR[:2], 'usr/share/games/etr/music/race1-jt.ogg', 8, 40, *ETR[2:]),
    ('time_to_strike.ogg', 'train', *ASC[:2], 'usr/share/games/asc/music/time_to_strike.mp3', 40, 40, *ASC[2:]),
    # held-out tracks (only their excerpts here; no part of them is heard in training)
    ('classic.ogg', 'test', *SUPERTUX[:2], 'usr/share/games/supertux2/music/retro/classic.ogg', 10, 36, *SUPERTUX[2:]),
    ('beach.ogg', 'test', *HEDGEWARS[:2], 'usr/share/games/hedgewars/Data/Music/Beach.ogg', 30, 36, *HEDGEWARS[2:]),
    ('mainzik_2p.ogg', 'test', *FB[:2], 'usr/share/games/frozen-bubble/snd/frozen-mainzik-2p.ogg', 30, 36, *FB[2:]),
    ('credits1.ogg', 'test', *ETR[:2], 'usr/share/games/etr/music/credits1-cp.ogg', 10, 36, *ETR[2:]),
    ('theme.ogg', 'test', *SUPERTUX[:2], 'usr/share/games/supertux2/music/misc/theme.ogg', 20, 36, *SUPERTUX[2:]),
]
HEADER = ['file', 'split', 'package', 'version', 'package_path', 'start_s', 'seconds', 'author', 'licence', 'processing']
PROCESSING = 'excerpt, mono, 22050 Hz, 50 ms fades in and out, Ogg Vorbis q0 (ffmpeg libvorbis)'

def unpack(pkg:str, version:str, debs:Path) -> Path:
    "The package unpacked under debs/x_<pkg> (downloaded with apt-get download when missing)."
    out = debs/f'x_{pkg}'
    if out.exists(): return out
    deb = next(iter(glob.glob(str(debs/f'{pkg}_*.deb'))), None)
    if deb is None:
        subprocess.run(['apt-get', 'download', f'{pkg}={version}'], cwd=debs, check=True)
        deb = glob.glob(str(debs/f'{pkg}_*.deb'))[0]
    subprocess.run(['dpkg-deb', '-x', deb, str(out)], check=True)
    return out

def excerpt(src:Path, dst:Path, start:float, seconds:float):
    "Cut, downmix, resample and encode one excerpt (bit-exact flags, no metadata)."
    fade = f'afade=t=in:d=0.05,afade=t=out:st={seconds - 0.05}:d=0.05'
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-v', 'error', '-y', '-ss', str(start), '-t', str(seconds), '-i', str(src),
                    '-ac', '1', '-ar', '22050', '-af', fade, '-c:a', 'libvorbis', '-q:a', '0', '-map_metadata', '-1',
                    '-fflags', '+bitexact', '-flags:a', '+bitexact', str(dst)], check=True)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--debs', default='', help='folder for the .deb files (default: a temp folder)')
    ap.add_argument('--out', default=str(Path(__file__).resolve().parents[1]/'data'/'music'))
    a = ap.parse_args()
    debs = Path(a.debs or tempfile.mkdtemp(prefix='bailando_debs_'))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for f, split, pkg, ver, path, start, sec, author, lic in TRACKS:
        assert 'nexuiz' not in pkg, 'nexuiz-music is reserved for an independent check'
        excerpt(unpack(pkg, ver, debs)/path, out/f, start, sec)
        rows.append([f, split, pkg, ver, '/' + path, str(start), str(sec), author, lic, PROCESSING])
    (out/'SOURCES.tsv').write_text('\n'.join('\t'.join(r) for r in [HEADER, *rows]) + '\n')
    print(f'{len(rows)} excerpts in {out}, {sum(p.stat().st_size for p in out.glob("*.ogg")) / 1e6:.1f} MB')

if __name__ == '__main__': main()
