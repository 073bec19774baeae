"""docs/architecture.md tells the truth about the imports: its layer table
against the import statements of every module (read with ast, so nothing
is imported), and its word that no circle remains."""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'multiprocess')
DOC = os.path.join(ROOT, 'docs', 'architecture.md')
FACADE = 'multiprocess'

# The circles docs/architecture.md lists, through imports inside functions:
# none (it says how the last two were broken).  Keep both in step.
KNOWN_CIRCLES = set()

if not (os.path.isdir(PACKAGE) and os.path.exists(DOC)):
    pytest.skip('needs the checkout (multiprocess/ and docs/ side by side); '
                'an installed copy of the tests has no docs',
                allow_module_level=True)


def _modules():
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
                if dotted.endswith('.__init__'):
                    dotted = dotted[:-len('.__init__')]
                found[dotted] = path
    return found


MODULES = _modules()


def _targets(module, node, is_package):
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split('.')
            if not is_package:
                base = base[:-1]
            base = base[:len(base) - node.level + 1]
            if node.module:
                base.append(node.module)
            prefix = '.'.join(base)
        else:
            prefix = node.module or ''
        names = [prefix + '.' + a.name if prefix + '.' + a.name in MODULES
                 else prefix for a in node.names]
    out = set()
    for name in names:
        while name not in MODULES and '.' in name:
            name = name.rsplit('.', 1)[0]
        if name in MODULES and name != module:
            out.add(name)
    return out


def _imports():
    """module -> (imported at import time, imported inside functions)."""
    result = {}
    for module, path in MODULES.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        is_package = path.endswith('__init__.py')
        at_import, in_functions = set(), set()

        def visit(node, inside):
            for child in ast.iter_child_nodes(node):
                deeper = inside or isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    (in_functions if deeper else at_import).update(
                        _targets(module, child, is_package))
                visit(child, deeper)
        visit(tree, False)
        result[module] = (at_import, in_functions)
    return result


IMPORTS = _imports()


def _layer_table():
    with open(DOC) as f:
        text = f.read()
    block = text.split('```', 2)[1]
    layers, current = {}, None
    for line in block.splitlines():
        m = re.match(r'\s*layer (\d+)\s+(.*)', line)
        if m:
            current, names = int(m.group(1)), m.group(2)
        elif current is not None and line.startswith('    ') and \
                not line.strip().startswith('native'):
            names = line
        else:
            current = None if re.match(r'\s*native', line) else current
            continue
        names = names.split('(')[0]
        for name in names.split():
            layers[name] = current
    table = {}
    for name, layer in layers.items():
        if name.endswith('/'):
            package = 'multiprocess.' + name[:-1]
            for module in MODULES:
                if module == package or module.startswith(package + '.'):
                    table[module] = layer
        else:
            table['multiprocess.' + name] = layer
    return table


LAYERS = _layer_table()


def _circles(edges):
    """Strongly connected components of more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.add(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(frozenset(part))
    for v in edges:
        if v not in index:
            connect(v)
    return set(found)


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if m != FACADE and m not in LAYERS)
    assert not missing, 'add to the layer table of docs/architecture.md'
    unknown = sorted(m for m in LAYERS if m not in MODULES)
    assert not unknown, 'the layer table names modules that do not exist'


def test_import_time_imports_stay_in_their_layer_or_below():
    upward = ['%s (layer %d) imports %s (layer %d)'
              % (m, LAYERS[m], d, LAYERS[d])
              for m, (at_import, _) in sorted(IMPORTS.items())
              if m != FACADE
              for d in sorted(at_import)
              if d != FACADE and LAYERS[d] > LAYERS[m]]
    assert not upward


def test_no_circle_at_import_time():
    edges = {m: {d for d in at_import if d != FACADE}
             for m, (at_import, _) in IMPORTS.items() if m != FACADE}
    assert not _circles(edges)


def test_the_only_circles_are_the_documented_ones():
    # every import, inside functions too; the facade aside (it imports the
    # context, everything may import it)
    edges = {m: {d for d in at_import | in_functions if d != FACADE}
             for m, (at_import, in_functions) in IMPORTS.items()
             if m != FACADE}
    assert _circles(edges) == KNOWN_CIRCLES


def test_the_pool_package_has_no_circle_and_dummy_does_not_close_one():
    edges = {m: at_import | in_functions
             for m, (at_import, in_functions) in IMPORTS.items()}
    pool_side = {m for m in MODULES if m.startswith('multiprocess.pool')
                 or m.startswith('multiprocess.dummy')}
    assert not any(part & pool_side for part in _circles(edges))


def test_no_python_module_is_over_900_lines():
    # one responsibility per module: past this, split it
    long = {}
    for module, path in MODULES.items():
        with open(path) as f:
            count = sum(1 for _ in f)
        if count > 900:
            long[module] = count
    assert not long


def test_every_caller_of_bootstrap_imports_util_at_import_time():
    # process runs a child's life but reaches util's part in it (finalizers,
    # after-fork hooks, logging, exit steps) only through what util plugs
    # in when imported: whoever runs _bootstrap must have imported util.
    callers = set()
    for module, path in MODULES.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == '_bootstrap'):
                callers.add(module)
    assert callers, 'nobody calls _bootstrap any more: update this test'
    missing = sorted(m for m in callers
                     if 'multiprocess.util' not in IMPORTS[m][0])
    assert not missing

