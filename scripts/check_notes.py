#!/usr/bin/env python3
"""Lists dangling and duplicate design Notes (the style guide, section 8: named Notes).

A Note is DEFINED by a comment that opens with its name and then gives its text:

    // Note [Pinned staging ring]            (a heading line, the text on the
    // the ring holds ...                     comment lines after it), or
    // Note [Pinned staging ring]: the ring holds ...
    // Note [Daemon slots] (issue 7): with a pool ...   (a qualifier that names no file)

(a comment sentence may also open with it: "// Thread-safe. Note [Journal lock]: ...").
Everything else that names a Note REFERS to it: "see Note [X]", "(Note [X])",
"Note [X] (daemon.h): a remark here" (a qualifier naming a file says where X is defined).
Code comments (//, #, /* *) in the source tree and the docs (*.md) are read; results
logs under bench/results/ are not (they record what earlier runs printed).

Errors (exit status 1):
  dangling   a Note that is referred to but defined nowhere;
  duplicate  a Note with two heading definitions (two texts that claim the name).
With --strict, a Note defined in more than one place in any form (e.g. a use site that
opens its remark with "Note [X]:" instead of "Note [X] (file.h):") is an error too.

  scripts/check_notes.py                 # the tree this script is in
  scripts/check_notes.py --list          # every Note: where it is defined, how often used
  scripts/check_notes.py --root DIR --strict
"""
import argparse
import os
import re
import sys
from collections import defaultdict

CODE_EXT = ('.h', '.hpp', '.cpp', '.cc', '.c', '.cu', '.cuh', '.cmake', '.py', '.sh', '.in', '.service')
DOC_EXT = ('.md',)
SKIP_DIRS = {'.git', 'bench/results'}
SKIP_FILES = {'scripts/check_notes.py'}  # its examples are not Notes

NOTE = re.compile(r'Note \[([^\]\n]+)\]')
COMMENT = re.compile(r'^\s*(?://+|#+|/\*+|\*+)\s?(.*)$')
# The comment text opens with the name (or a sentence of it does), then: the end of the
# line (heading), ':' text, or ' (qualifier):' text.
OPENING = re.compile(r'(?:^|[.;]\s+)Note \[([^\]\n]+)\](\s*$|\s*:|\s*\(([^)]*)\)\s*:)')
FILE_QUALIFIER = re.compile(r'/|\.(?:h|hpp|cpp|cc|cu|cuh|md|cmake|txt|in|py|sh)\b')


def source_files(root):
    for d, dirs, files in os.walk(root):
        rel_d = os.path.relpath(d, root)
        rel_d = '' if rel_d == '.' else rel_d
        # Build trees (build/, build-asan/, ...) and hidden folders are not the source.
        dirs[:] = sorted(x for x in dirs
                         if not x.startswith('.') and not x.startswith('build')
                         and os.path.join(rel_d, x) not in SKIP_DIRS)
        for f in sorted(files):
            rel = os.path.join(rel_d, f)
            if rel not in SKIP_FILES and (f == 'CMakeLists.txt' or f.endswith(CODE_EXT) or f.endswith(DOC_EXT)):
                yield rel


def comment_text(line, is_doc):
    if is_doc:
        return line
    m = COMMENT.match(line)
    if m:
        return m.group(1)
    # A trailing comment after code: `x = 0;  // Note [X]` is a reference at most.
    i = line.find('//')
    return line[i + 2:] if i >= 0 else None


def scan(root):
    """(defs, refs): name -> [(path, line, kind)]; kind is 'heading' or 'inline' for defs."""
    defs, refs = defaultdict(list), defaultdict(list)
    for rel in source_files(root):
        try:
            with open(os.path.join(root, rel), encoding='utf-8') as f:
                lines = f.read().split('\n')
        except (UnicodeDecodeError, OSError):
            continue
        is_doc = rel.endswith(DOC_EXT)
        for i, line in enumerate(lines):
            text = comment_text(line, is_doc)
            if text is None or 'Note [' not in text:
                continue
            # A name broken over two comment lines ("Note [VAE\n// frame-streamed encode]").
            joined = text
            if re.search(r'Note \[[^\]]*$', text) and i + 1 < len(lines):
                nxt = comment_text(lines[i + 1], is_doc)
                if nxt is not None:
                    joined = text + ' ' + nxt.strip()
            opening = None if is_doc else OPENING.search(joined)
            for m in NOTE.finditer(joined):
                name = ' '.join(m.group(1).split())
                kind = None
                if opening and opening.start(1) == m.start(1):
                    qualifier = opening.group(3)
                    if opening.group(2).strip() == '':  # heading: the text follows below
                        nxt = comment_text(lines[i + 1], False) if i + 1 < len(lines) else None
                        if nxt is not None and nxt.strip() and COMMENT.match(lines[i + 1]):
                            kind = 'heading'
                    elif qualifier is None or not FILE_QUALIFIER.search(qualifier):
                        kind = 'inline'
                (defs if kind else refs)[name].append((rel, i + 1, kind))
    return defs, refs


def check(root, strict=False):
    """(names, defs, refs, errors) of the tree at root."""
    defs, refs = scan(root)
    names = sorted(set(defs) | set(refs))
    errors = []
    for n in names:
        d = defs.get(n, [])
        if not d:
            for path, line, _ in refs[n]:
                errors.append(f'{path}:{line}: dangling Note [{n}]: referred to, defined nowhere '
                              f'(write "// Note [{n}]: <text>" where the design lives, or fix the name)')
        headings = [x for x in d if x[2] == 'heading']
        if len(headings) > 1:
            first = f'{headings[0][0]}:{headings[0][1]}'
            for path, line, _ in headings[1:]:
                errors.append(f'{path}:{line}: duplicate Note [{n}]: also defined at {first}')
        if strict and len(d) > 1:
            where = ', '.join(f'{p}:{l}' for p, l, _ in d)
            errors.append(f'{d[0][0]}:{d[0][1]}: Note [{n}] is defined {len(d)} times ({where}); '
                          f'keep one, write the others as "Note [{n}] (file.h): ..." or "see Note [{n}]"')
    return names, defs, refs, errors


def self_test():
    """The checker on a small tree: each kind of definition and reference, and each error."""
    import tempfile
    files = {
        'a.h': ('// Note [Heading note]\n'
                '// its text, on the next line.\n'
                '// Note [Inline note]: its text.\n'
                '// Note [Qualified note] (issue 7): its text.\n'
                '// Thread-safe. Note [Sentence note]: its text.\n'
                'int x;  // Note [Heading note]\n'),
        'b.cpp': ('// see Note [Inline note]; (Note [Qualified note]) and Note [Sentence note].\n'
                  '// Note [Heading note] (a.h): a remark at a use site.\n'
                  '// Note [Missing note] (a.h): a remark about a Note nobody wrote.\n'
                  '// continues (Note [Split\n'
                  '// name]) over two lines.\n'
                  '// Note [Twice]\n// first text.\n// Note [Twice]\n// second text.\n'
                  '// Note [Remark twice]: one.\n// Note [Remark twice]: two.\n'
                  'const char* s = "Note [In a string literal]";\n'),
        'docs/x.md': 'See Note [Inline note] and Note [Doc only].\n',
        'build/gen.h': '// see Note [In a build tree]\n',
    }
    with tempfile.TemporaryDirectory() as root:
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, rel)) or root, exist_ok=True)
            with open(os.path.join(root, rel), 'w', encoding='utf-8') as f:
                f.write(text)
        names, defs, refs, errors = check(root)
        _, _, _, strict_errors = check(root, strict=True)
    failures = []

    def expect(cond, what):
        if not cond:
            failures.append(what)
    for n in ('Heading note', 'Inline note', 'Qualified note', 'Sentence note'):
        expect(len(defs.get(n, [])) == 1, f'Note [{n}] defined once (got {defs.get(n)})')
    expect(defs['Heading note'][0][2] == 'heading', 'a heading line is a heading definition')
    expect(len(refs.get('Heading note', [])) == 2, 'a trailing comment and a file-qualified remark refer')
    expect('Split name' in refs, 'a name broken over two lines is read whole')
    expect('In a string literal' not in names, 'a string literal is no Note')
    expect('In a build tree' not in names, 'build trees are not read')
    dangling = sorted({e.split('Note [')[1].split(']')[0] for e in errors if 'dangling' in e})
    expect(dangling == ['Doc only', 'Missing note', 'Split name'], f'dangling: {dangling}')
    duplicate = [e for e in errors if 'duplicate' in e]
    expect(len(duplicate) == 1 and 'Twice' in duplicate[0] and 'b.cpp:6' in duplicate[0],
           f'duplicate: {duplicate}')
    expect(len(errors) == 4, f'{len(errors)} errors: {errors}')
    expect(any('Remark twice' in e for e in strict_errors) and not any('Remark twice' in e for e in errors),
           'two inline definitions are an error only with --strict')
    for f in failures:
        print('self-test FAILED: ' + f, file=sys.stderr)
    print(f'check_notes self-test: {"FAILED" if failures else "ok"}', file=sys.stderr)
    return 1 if failures else 0


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--root', default=here, help='source tree (default: the one holding this script)')
    ap.add_argument('--list', action='store_true', help='print every Note with its definitions and use count')
    ap.add_argument('--strict', action='store_true', help='a Note defined in more than one place is an error')
    ap.add_argument('--self-test', action='store_true', help='check the checker on a small generated tree')
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    names, defs, refs, errors = check(args.root, args.strict)
    if args.list:
        for n in names:
            d = defs.get(n, [])
            where = ', '.join(f'{p}:{l}' for p, l, _ in d) or 'NOT DEFINED'
            print(f'Note [{n}]: defined {where}; {len(refs.get(n, []))} references')
    for e in errors:
        print(e, file=sys.stderr)
    n_defined = sum(1 for n in names if defs.get(n))
    print(f'check_notes: {len(names)} Notes, {n_defined} defined, {len(errors)} problems', file=sys.stderr)
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
