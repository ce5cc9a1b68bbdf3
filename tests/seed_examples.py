"""Extract the code examples from the seed documents (``../shared/seeds/*.txt``).

The seed documents are text extracts of TorchEBM's documentation pages, in two formats:

* **markdown** (000, 002, 003, 004): code sits in fenced blocks (```` ```python ````), some of
  them indented inside list items or content tabs, some with an info string
  (``title="..." linenums="1"``).
* **flattened** (001): an HTML-to-text extract. Every code line survives as one physical line,
  but its indentation is gone and a space was inserted between tokens; prose, headings and code
  run together, and the first code line of a block is glued to the heading before it
  (``" Basic Usage  import   torch "``). Code lines end with a space, prose lines usually do not.

For the flattened format this module finds the code, then rebuilds the indentation. Block
structure cannot be recovered from the text alone (after ``for ...:`` followed by two
statements and then ``plt.figure()``, nothing says where the loop ends), so it is recovered
from a *twin*: the same example in a markdown seed (001 is a newer revision of 000, with
renamed identifiers and comments dropped). Logical lines are compared by their token shape
(keywords and operators kept, identifiers, numbers and strings abstracted), so the renames do
not matter; each matched line takes its twin's indentation. Blocks with no twin fall back to
plain indentation rules (``:`` opens a block, ``return``/``pass``/... closes one, ``def`` in a
class is a method). The result must compile, or the example is reported as not reconstructable.

Nothing here knows about pytest; ``tests/test_seed_examples.py`` turns the examples into tests.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import io
import keyword
import os
import re
import textwrap
import token
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SEEDS_ENV_VAR = "TORCHEBM_SEEDS_DIR"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)(?P<info>.*)$")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$")
_SEED_FILE = re.compile(r"^(?P<seed>\d{3})_[0-9a-f]+\.txt$")


# --------------------------------------------------------------------------------------
# Locating the seeds
# --------------------------------------------------------------------------------------


def seeds_dir() -> Path | None:
    """The seeds folder: ``$TORCHEBM_SEEDS_DIR``, else ``<repo>/../shared/seeds``; None if absent."""
    env = os.environ.get(SEEDS_ENV_VAR)
    candidate = Path(env) if env else REPO_ROOT.parent / "shared" / "seeds"
    return candidate if candidate.is_dir() else None


def seed_files(directory: Path) -> dict[str, Path]:
    """``{"000": path, ...}`` for every ``NNN_<hash>.txt`` in ``directory``, in order."""
    found = {}
    for path in sorted(directory.iterdir()):
        m = _SEED_FILE.match(path.name)
        if m:
            found[m.group("seed")] = path
    return found


# --------------------------------------------------------------------------------------
# The example record
# --------------------------------------------------------------------------------------


@dataclass
class Example:
    seed: str  # "000"
    index: int  # 1-based, in document order
    language: str  # "python" for code, "mermaid", "" ...
    source: str  # the code, dedented (reconstructed for flattened pages)
    line: int  # 1-based line of the seed file where the block starts
    heading: str  # the section the block sits in
    origin: str = "fenced"  # "fenced" | "flattened+twin:<id>" | "flattened+rules"
    problem: str = ""  # why the code could not be recovered (flattened pages only)
    raw: str = ""  # the text as it stands in the seed (flattened pages)

    @property
    def id(self) -> str:
        return f"seed{self.seed}_example{self.index}"

    @property
    def is_python(self) -> bool:
        if self.language in ("python", "py", "python3"):
            return True
        if self.language or not self.source.strip():
            return False
        try:  # an unlabelled fence: Python if it parses as Python
            compile(self.source, self.id, "exec")
        except SyntaxError:
            return False
        return True


# --------------------------------------------------------------------------------------
# Markdown pages
# --------------------------------------------------------------------------------------


def _strip_indent(line: str, width: int) -> str:
    i = 0
    while i < width and i < len(line) and line[i] in " \t":
        i += 1
    return line[i:]


def extract_fenced(text: str, seed: str) -> list[Example]:
    """Every fenced block of a markdown page, in order (empty ones included)."""
    lines = text.splitlines()
    examples: list[Example] = []
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        h = _HEADING.match(line)
        if h:
            heading = h.group("title")
        m = _FENCE.match(line)
        if not m:
            i += 1
            continue
        indent = len(m.group("indent").expandtabs(4))
        fence = m.group("fence")
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            close = _FENCE.match(lines[j])
            if (
                close
                and close.group("fence")[0] == fence[0]
                and len(close.group("fence")) >= len(fence)
                and not close.group("lang")
                and not close.group("info").strip()
            ):
                break
            body.append(_strip_indent(lines[j], indent))
            j += 1
        source = "\n".join(body).strip("\n")
        source = textwrap.dedent(source)
        examples.append(
            Example(
                seed=seed,
                index=len(examples) + 1,
                language=m.group("lang").lower(),
                source=source + ("\n" if source else ""),
                line=i + 1,
                heading=heading,
            )
        )
        i = j + 1
    return examples


# --------------------------------------------------------------------------------------
# Token helpers
# --------------------------------------------------------------------------------------

_WORD_TYPES = {token.NAME, token.NUMBER, token.STRING}
_SKIP_TYPES = {token.COMMENT, token.NL, token.NEWLINE, token.INDENT, token.DEDENT, token.ENDMARKER}
_OPENERS, _CLOSERS = "([{", ")]}"


def _line_tokens(text: str, keep_comments: bool = False) -> list[tokenize.TokenInfo] | None:
    """Tokens of one physical line (brackets may be unbalanced); None if it is not Python."""
    toks = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text + "\n").readline):
            if tok.type == token.ERRORTOKEN and not tok.string.isspace():
                return None
            toks.append(tok)
    except tokenize.TokenError as exc:
        # An unclosed bracket at the end of the line is fine (the statement continues);
        # an unterminated string is not code.
        if "multi-line statement" not in str(exc):
            return None
    except (SyntaxError, IndentationError):
        return None
    skip = _SKIP_TYPES - {token.COMMENT} if keep_comments else _SKIP_TYPES
    return [t for t in toks if t.type not in skip]


def is_code_like(text: str) -> bool:
    """Whether ``text`` reads as one line of flattened code rather than prose.

    The flattener put at least two spaces between two words of code (``import   torch``,
    ``if  x  is  None``) and kept single spaces only next to punctuation; prose has words
    separated by one space (``Basic Usage``, ``Use the built-in``).
    """
    text = text.strip()
    if not text:
        return False
    toks = _line_tokens(text)
    if not toks:
        return False
    for a, b in zip(toks, toks[1:]):
        if a.type in _WORD_TYPES and b.type in _WORD_TYPES and a.end[0] == b.start[0]:
            if b.start[1] - a.end[1] < 2:
                return False
    return True


def _bracket_delta(toks: list[tokenize.TokenInfo]) -> int:
    d = 0
    for t in toks:
        if t.type == token.OP:
            if t.string in _OPENERS:
                d += 1
            elif t.string in _CLOSERS:
                d -= 1
    return d


def _kind(t: tokenize.TokenInfo) -> str:
    """A token's shape: keywords and operators as themselves, other atoms abstracted."""
    if t.type == token.NAME:
        return t.string if keyword.iskeyword(t.string) else "N"
    if t.type == token.NUMBER:
        return "0"
    if t.type == token.STRING:
        return "S"
    return t.string


# --------------------------------------------------------------------------------------
# Logical lines
# --------------------------------------------------------------------------------------


@dataclass
class _Logical:
    physical: list[str]  # stripped physical lines
    indent: int = 0  # indentation level (flattened) or column (markdown twin)
    tokens: list[tokenize.TokenInfo] = field(default_factory=list)

    @property
    def signature(self) -> tuple[str, ...]:
        return tuple(_kind(t) for t in self.tokens)

    @property
    def first(self) -> str:
        return self.tokens[0].string if self.tokens else ""

    @property
    def opens_block(self) -> bool:
        return bool(self.tokens) and self.tokens[-1].string == ":"


def _logical_lines(physical: list[tuple[int, str]]) -> list[_Logical]:
    """Group ``(indent column, stripped text)`` physical lines into logical lines."""
    out: list[_Logical] = []
    depth = 0
    cur: _Logical | None = None
    for column, text in physical:
        toks = _line_tokens(text) or []
        if cur is None:
            if not toks:  # blank or comment-only line outside a statement
                continue
            cur = _Logical(physical=[], indent=column)
        cur.physical.append(text)
        cur.tokens.extend(toks)
        depth += _bracket_delta(toks)
        if depth <= 0 and not text.rstrip().endswith("\\"):
            out.append(cur)
            cur, depth = None, 0
    if cur is not None:
        out.append(cur)
    return out


def _markdown_logical_lines(source: str) -> list[_Logical]:
    """Logical lines of a (properly indented) markdown code block, docstring lines kept."""
    physical = []
    in_triple = False
    for line in source.splitlines():
        stripped = line.strip()
        if in_triple:  # inside a multi-line docstring: not a logical line of its own
            if stripped.count('"""') % 2 == 1:
                in_triple = False
            continue
        if stripped.startswith('"""') and stripped.count('"""') == 1:
            in_triple = True
            physical.append((len(line) - len(line.lstrip()), '""""""'))
            continue
        physical.append((len(line) - len(line.lstrip()), stripped))
    return _logical_lines(physical)


# --------------------------------------------------------------------------------------
# Flattened pages
# --------------------------------------------------------------------------------------


def _code_part(body: str) -> tuple[str, str] | None:
    """Split a candidate line into (prose prefix, code), or None if it holds no code.

    The whole line is tried first, then every suffix that starts after a run of two or more
    spaces (a heading is glued to the first code line with two spaces).
    """
    stripped = body.strip()
    if is_code_like(stripped):
        return "", stripped
    for m in re.finditer(r"\s{2,}", stripped):
        rest = stripped[m.end():]
        if is_code_like(rest):
            return stripped[: m.start()].strip(), rest
    return None


def _split_flattened(text: str) -> list[tuple[int, str, list[str]]]:
    """``(first line number, heading, code lines)`` for each code block of a flattened page."""
    blocks: list[tuple[int, str, list[str]]] = []
    current: list[str] | None = None
    depth = 0
    last_prose = ""

    def close():
        nonlocal current, depth
        current, depth = None, 0

    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        candidate = raw.endswith(" ")
        if current is not None and depth > 0 and candidate:
            # Inside an open bracket: the statement continues whatever the line says.
            toks = _line_tokens(raw.strip()) or []
            current.append(raw.strip())
            depth += _bracket_delta(toks)
            continue
        split = _code_part(raw) if candidate else None
        if split is None:
            close()
            last_prose = raw.strip()
            continue
        prefix, code = split
        if prefix or current is None:
            close()
            heading = prefix or last_prose
            current = []
            blocks.append((lineno, heading, current))
        current.append(code)
        depth += _bracket_delta(_line_tokens(code) or [])
    close()
    return [(n, _heading_of(h), lines) for n, h, lines in blocks if lines]


def _heading_of(prose: str) -> str:
    # A flattened paragraph starts with its heading, glued with two spaces.
    head = re.split(r"\s{2,}| : ", prose.strip(), maxsplit=1)[0]
    return head[:80]


_TERMINATORS = {"return", "pass", "raise", "continue", "break"}
_CONTINUATIONS = {"else", "elif", "except", "finally"}


def _indent_by_rules(logical: list[_Logical]) -> None:
    """Give each logical line an indentation level from Python's block rules alone.

    Used only where no twin exists; ambiguous wherever a block ends without a terminator.
    """
    stack: list[tuple[str, int]] = []  # (header keyword, level of the header)
    level = 0
    prev: _Logical | None = None
    for ll in logical:
        first = ll.first
        if prev is not None and prev.opens_block:
            level = prev.indent + 1
        elif first in _CONTINUATIONS:
            partners = {"else": ("if", "elif", "for", "while", "try", "except"),
                        "elif": ("if", "elif"), "except": ("try", "except"),
                        "finally": ("try", "except", "else")}[first]
            while stack and stack[-1][0] not in partners:
                stack.pop()
            level = stack.pop()[1] if stack else 0
        elif first in ("def", "@", "async"):
            classes = [lvl for kw, lvl in stack if kw == "class"]
            level = classes[-1] + 1 if classes else 0
            if prev is not None and prev.first == "@":
                level = prev.indent
        elif first == "class":
            level = 0
        elif prev is not None and prev.first in _TERMINATORS:
            level = max(prev.indent - 1, 0)
            if stack and stack[-1][0] in ("def",) and stack[-1][1] >= level:
                level = 0  # the function ended: back to module level
        elif prev is not None:
            level = prev.indent
        while stack and stack[-1][1] >= level:
            stack.pop()
        ll.indent = level
        if ll.opens_block and ll.first not in ("@",):
            stack.append((first if first != "async" else "def", level))
        prev = ll


def _render(logical: list[_Logical], unit: str = "    ") -> str:
    out = []
    prev = None
    for ll in logical:
        if prev is not None and (
            (ll.indent == 0 and prev.indent > 0)
            or (ll.first in ("def", "class", "@") and prev.first != "@" and not prev.opens_block)
        ):
            out.append("")  # PEP 8 spacing around definitions (cosmetic)
        prev = ll
        pad = unit * ll.indent
        depth = 0
        for text in ll.physical:
            hanging = depth > 0 and not text.lstrip().startswith(tuple(_CLOSERS))
            out.append(pad + (unit if hanging else "") + _tidy(text, depth))
            depth += _bracket_delta(_line_tokens(text) or [])
    return "\n".join(out) + "\n"


def _tidy(text: str, depth: int = 0) -> str:
    """Undo the flattener's token spacing on one physical line (cosmetic; the caller checks
    that the tidied block parses to the same AST and keeps the raw text otherwise)."""
    toks = _line_tokens(text, keep_comments=True)
    if not toks:
        return text
    out = ""
    prev = None
    glue_next = False
    annotated = None  # bracket depth of a parameter with an annotation: spaces around "="
    for t in toks:
        s = t.string
        if t.type == token.COMMENT:
            out += "  " + s
            continue
        if prev is None:
            glue = True
        elif glue_next:
            glue = True
        elif s in (",", ")", "]", "}", "."):
            glue = True
        elif s == ":":
            glue = prev.string != ","
        elif prev.string in ("(", "[", "{", "."):
            glue = True
        elif s in ("(", "[") and (
            (prev.type == token.NAME and (not keyword.iskeyword(prev.string)
                                          or prev.string in ("True", "False", "None")))
            or prev.string in (")", "]") or prev.type == token.STRING
        ):
            glue = True
        elif depth > 0 and annotated != depth and (s == "=" or prev.string == "="):
            glue = True  # keyword argument or parameter default
        else:
            glue = False
        out += s if glue else " " + s
        glue_next = False
        if s in ("-", "+", "~", "*", "**", "@") and (
            (prev is None and (depth == 0 or s in ("*", "**")))
            or (prev is not None and prev.type == token.OP and prev.string not in _CLOSERS)
            or (prev is not None and prev.type == token.NAME and keyword.iskeyword(prev.string)
                and prev.string not in ("True", "False", "None"))
        ):
            glue_next = True  # unary operator, star-argument or decorator
        if t.type == token.OP:
            if s in _OPENERS:
                depth += 1
            elif s in _CLOSERS:
                depth -= 1
            if annotated is not None and (depth < annotated or (s == "," and depth == annotated)):
                annotated = None
            if s == ":" and depth > 0 and annotated is None:
                annotated = depth
        prev = t
    return out


def _same_ast(a: str, b: str) -> bool:
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except SyntaxError:
        return False


def _find_twin(logical: list[_Logical], twins: list[tuple[str, list[_Logical]]]):
    """The markdown block that best matches ``logical`` line for line, or None.

    Score: difflib's ratio over line shapes (so a long block that merely contains a matching
    line loses to a block of the same length). A twin must cover 90% of the flattened lines.
    """
    sig = [ll.signature for ll in logical]
    best = None
    for twin_id, twin_lines in twins:
        sm = difflib.SequenceMatcher(None, sig, [t.signature for t in twin_lines], autojunk=False)
        blocks = sm.get_matching_blocks()
        matched = sum(b.size for b in blocks)
        score = 2.0 * matched / (len(sig) + len(twin_lines))
        if matched >= 0.9 * len(sig) and (best is None or score > best[0]):
            best = (score, twin_id, twin_lines, blocks)
    return None if best is None else best[1:]


def _reconstruct(lines: list[str], twins) -> tuple[str, str, str]:
    """(source, origin, problem) for one flattened code block."""
    logical = _logical_lines([(0, t) for t in lines])
    origin = "flattened+rules"
    twin = _find_twin(logical, twins)
    if twin is not None:
        twin_id, twin_lines, blocks = twin
        columns = sorted({t.indent for t in twin_lines})
        level_of = {c: k for k, c in enumerate(columns)}
        mapped = [None] * len(logical)
        for b in blocks:
            for k in range(b.size):
                mapped[b.a + k] = level_of[twin_lines[b.b + k].indent]
        prev = None
        for ll, lvl in zip(logical, mapped):
            if lvl is None:  # a line the twin lacks: follow the block rules locally
                lvl = (prev.indent + 1) if prev is not None and prev.opens_block else (
                    prev.indent if prev is not None else 0)
            ll.indent = lvl
            prev = ll
        base = min(ll.indent for ll in logical)
        for ll in logical:
            ll.indent -= base
        origin = f"flattened+twin:{twin_id}"
    else:
        _indent_by_rules(logical)
    raw_source = _render_raw(logical)
    try:
        compile(raw_source, "<flattened>", "exec")
    except SyntaxError as exc:
        return raw_source, origin, f"indentation could not be rebuilt ({exc.msg}, line {exc.lineno})"
    pretty = _render(logical)
    return (pretty if _same_ast(pretty, raw_source) else raw_source), origin, ""


def _render_raw(logical: list[_Logical], unit: str = "    ") -> str:
    out = []
    for ll in logical:
        for k, text in enumerate(ll.physical):
            out.append(unit * ll.indent + (unit if k else "") + text)
    return "\n".join(out) + "\n"


def extract_flattened(text: str, seed: str, twins) -> list[Example]:
    examples = []
    for lineno, heading, lines in _split_flattened(text):
        source, origin, problem = _reconstruct(lines, twins)
        examples.append(
            Example(
                seed=seed,
                index=len(examples) + 1,
                language="python",
                source=source,
                line=lineno,
                heading=heading,
                origin=origin,
                problem=problem,
                raw="\n".join(lines) + "\n",
            )
        )
    return examples


# --------------------------------------------------------------------------------------
# All seeds
# --------------------------------------------------------------------------------------


def page_format(text: str) -> str:
    """``"markdown"`` if the page has fenced code blocks, else ``"flattened"``."""
    return "markdown" if any(_FENCE.match(l) for l in text.splitlines()) else "flattened"


def extract_all(directory: Path | None = None) -> dict[str, list[Example]]:
    """``{seed: [Example, ...]}`` for every seed file, flattened pages rebuilt from twins."""
    directory = directory or seeds_dir()
    if directory is None:
        return {}
    texts = {seed: path.read_text(encoding="utf-8") for seed, path in seed_files(directory).items()}
    result: dict[str, list[Example]] = {}
    for seed, text in texts.items():
        if page_format(text) == "markdown":
            result[seed] = extract_fenced(text, seed)
    twins = [
        (ex.id, _markdown_logical_lines(ex.source))
        for exs in result.values()
        for ex in exs
        if ex.is_python and ex.source.strip()
    ]
    for seed, text in texts.items():
        if seed not in result:
            result[seed] = extract_flattened(text, seed, twins)
    return dict(sorted(result.items()))


def free_names(source: str) -> set[str]:
    """Names a block reads at module level before (or without) binding them itself.

    A conservative reading: every name loaded anywhere in the block that the block never binds
    and that is not a builtin. Enough to tell self-contained programs from continuations.
    """
    tree = ast.parse(source)
    bound, loaded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return {n for n in loaded - bound if not hasattr(builtins, n)}


if __name__ == "__main__":  # a quick look: python tests/seed_examples.py [id]
    import sys

    for seed, exs in extract_all().items():
        for ex in exs:
            if len(sys.argv) > 1 and ex.id not in sys.argv[1:]:
                continue
            print(f"===== {ex.id} [{ex.language}] line {ex.line} '{ex.heading}' {ex.origin} {ex.problem}")
            print(ex.source)
