"""Static checks over the native core's C sources, for mistakes the compiler
cannot see:

* every Py_BEGIN_ALLOW_THREADS is closed by a Py_END_ALLOW_THREADS in the
  same function, with no nesting;
* no `return` or `goto` while the GIL is released (it would leave the
  thread state detached and the GIL never re-taken);
* no Python C-API call while the GIL is released (PyMem_Raw* excepted).

Py_BLOCK_THREADS / Py_UNBLOCK_THREADS re-take / re-release the GIL inside a
region and are followed.  The checker is deliberately simple: it strips
comments and literals, splits the file into top-level brace blocks and
walks tokens in order.
"""
import pathlib
import re

import pytest

SRC = pathlib.Path(__file__).resolve().parent.parent / "_multiprocess"

_TOKEN = re.compile(
    r"\bPy_BEGIN_ALLOW_THREADS\b|\bPy_END_ALLOW_THREADS\b"
    r"|\bPy_BLOCK_THREADS\b|\bPy_UNBLOCK_THREADS\b"
    r"|\breturn\b|\bgoto\b"
    r"|\b_?Py[A-Za-z0-9_]*\s*\(")
_GIL_FREE_API = re.compile(r"^PyMem_Raw")


def strip_comments_and_literals(text):
    """Blank out comments, string and char literals and preprocessor lines,
    keeping newlines so line numbers stay right."""
    out = []
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if at_line_start and c == "#":
            # a preprocessor line, with its backslash continuations
            while i < n and text[i] != "\n":
                if text[i] == "\\" and i + 1 < n and text[i + 1] == "\n":
                    out.append("\n")
                    i += 2
                    continue
                i += 1
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
            continue
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (j - i - 1) + c)
            i = j + 1
            at_line_start = False
            continue
        out.append(c)
        if c == "\n":
            at_line_start = True
        elif not c.isspace():
            at_line_start = False
        i += 1
    return "".join(out)


def top_level_blocks(code):
    """Yield (start_offset, body) for each outermost {...} block."""
    depth, start = 0, None
    for i, c in enumerate(code):
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                yield start, code[start:i + 1]
            elif depth < 0:
                depth = 0


def check_source(text, filename="<source>"):
    """Return a list of 'file:line: problem' strings."""
    code = strip_comments_and_literals(text)
    problems = []

    def where(offset):
        return "%s:%d" % (filename, code.count("\n", 0, offset) + 1)

    for start, body in top_level_blocks(code):
        region = None      # offset of the open Py_BEGIN_ALLOW_THREADS
        released = False   # GIL released right now (BLOCK re-takes it)
        for m in _TOKEN.finditer(body):
            tok = m.group(0)
            pos = start + m.start()
            if tok == "Py_BEGIN_ALLOW_THREADS":
                if region is not None:
                    problems.append("%s: nested Py_BEGIN_ALLOW_THREADS"
                                    % where(pos))
                region, released = pos, True
            elif tok == "Py_END_ALLOW_THREADS":
                if region is None:
                    problems.append("%s: Py_END_ALLOW_THREADS without "
                                    "Py_BEGIN_ALLOW_THREADS" % where(pos))
                region, released = None, False
            elif tok == "Py_BLOCK_THREADS":
                released = False
            elif tok == "Py_UNBLOCK_THREADS":
                released = region is not None
            elif tok in ("return", "goto"):
                if released:
                    problems.append("%s: `%s` while the GIL is released"
                                    % (where(pos), tok))
            elif released:
                name = tok.rstrip("( \t\n")
                if not _GIL_FREE_API.match(name):
                    problems.append("%s: %s() called while the GIL is "
                                    "released" % (where(pos), name))
        if region is not None:
            problems.append("%s: Py_BEGIN_ALLOW_THREADS never closed in "
                            "this function" % where(region))
    return problems


C_FILES = sorted(SRC.glob("*.c"))


def test_c_sources_exist():
    assert C_FILES, "no C sources found under %s" % SRC


@pytest.mark.parametrize("path", C_FILES, ids=lambda p: p.name)
def test_gil_regions_are_well_formed(path):
    problems = check_source(path.read_text(), path.name)
    assert not problems, "\n".join(problems)


# --- the checker itself -----------------------------------------------------

GOOD = """
static int f(int fd) {
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = read(fd, 0, 0);
    Py_END_ALLOW_THREADS
    if (rc < 0) { return -1; }
    return rc;
}
/* return inside a comment: Py_BEGIN_ALLOW_THREADS */
static const char *s = "goto Py_BEGIN_ALLOW_THREADS";
static int g(void) {
    Py_BEGIN_ALLOW_THREADS
    for (;;) { if (x) break; }
    Py_BLOCK_THREADS
    PyErr_CheckSignals();
    if (y) return 1;
    Py_UNBLOCK_THREADS
    p = PyMem_RawMalloc(3);
    Py_END_ALLOW_THREADS
    return 0;
}
"""


def test_checker_accepts_correct_code():
    assert check_source(GOOD) == []


@pytest.mark.parametrize("snippet, problem", [
    ("int f(void) { Py_BEGIN_ALLOW_THREADS\n if (x) return 1;\n"
     " Py_END_ALLOW_THREADS\n return 0; }", "`return` while"),
    ("int f(void) { Py_BEGIN_ALLOW_THREADS\n goto error;\n"
     " Py_END_ALLOW_THREADS\n error: return 0; }", "`goto` while"),
    ("int f(void) { Py_BEGIN_ALLOW_THREADS\n x = 1; }", "never closed"),
    ("int f(void) { x = 1; Py_END_ALLOW_THREADS }", "without"),
    ("int f(void) { Py_BEGIN_ALLOW_THREADS Py_BEGIN_ALLOW_THREADS\n"
     " Py_END_ALLOW_THREADS }", "nested"),
    ("int f(void) { Py_BEGIN_ALLOW_THREADS\n Py_DECREF(o);\n"
     " Py_END_ALLOW_THREADS }", "Py_DECREF() called"),
    ("int f(void) { Py_BEGIN_ALLOW_THREADS\n Py_BLOCK_THREADS\n"
     " Py_UNBLOCK_THREADS\n if (e) return 2;\n Py_END_ALLOW_THREADS }",
     "`return` while"),
])
def test_checker_flags_mistakes(snippet, problem):
    problems = check_source(snippet)
    assert any(problem in p for p in problems), problems


def test_checker_reports_line_numbers():
    text = "int f(void) {\n\n Py_BEGIN_ALLOW_THREADS\n return 1;\n}\n"
    problems = check_source(text, "x.c")
    assert any(p.startswith("x.c:4:") for p in problems), problems


MAX_C_FILE_LINES = 1100


def test_no_c_file_is_over_the_size_limit():
    """One mechanism per C file: a file past the limit holds two."""
    sizes = {p.name: len(p.read_text().splitlines())
             for p in sorted(SRC.glob("*.[ch]"))}
    over = {name: n for name, n in sizes.items() if n > MAX_C_FILE_LINES}
    assert not over, "split these by mechanism: %r" % over


@pytest.mark.parametrize("path", sorted(SRC.glob("*.[ch]")),
                         ids=lambda p: p.name)
def test_every_c_file_says_what_it_owns(path):
    """Each file opens with a comment naming itself and its mechanism."""
    head = path.read_text().lstrip()
    assert head.startswith("/*"), "%s: no header comment" % path.name
    assert path.name in head[:200], (
        "%s: the header comment does not name the file" % path.name)
