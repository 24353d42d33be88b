"""Compact API entries for the docs site, displayed right after the exported code they document.

`tools/build_docs.py` inserts `show_api(obj, name)` / `show_const(name, value, line)` cells (input removed)
after every exported cell. Each entry is a small HTML block, not a heading, so the page's story keeps its
own outline: the signature, the docstring, and a table of the parameters documented with docments
(trailing comments). Types are written as a reader would (`GPTConfig`, never `__main__.GPTConfig`), `*args`
and `**kwargs` keep their stars, and a comment after `) -> T:` on the last parameter's line is read as that
parameter's description when the parameter has none (the docments convention gives it to the return value).
"""
from __future__ import annotations

import html
import inspect
import io
import re
import tokenize
import typing

from IPython.display import HTML, display

_PREFIX = re.compile(r"\b(?:__main__|builtins|typing|mie_lm\.\w+|collections\.abc)\.")


def type_name(t) -> str:
    "A readable annotation: `GPTConfig`, `torch.Tensor`, `int | None` (no `__main__.` or `typing.` prefixes)."
    if t is inspect.Parameter.empty or t is None: return ""
    if isinstance(t, str): return _PREFIX.sub("", t)
    if isinstance(t, type) and not typing.get_args(t):
        mod = getattr(t, "__module__", "")
        return t.__qualname__ if mod in ("builtins", "__main__") or mod.startswith("mie_lm") else f"{mod}.{t.__qualname__}"
    return _PREFIX.sub("", str(t).replace("<class '", "").replace("'>", ""))


def md_inline(text: str) -> str:
    "Escape `text` for HTML, turn `backticked` names into code and `$...$` into math that MathJax typesets."
    parts = re.split(r"(`[^`]+`|\$[^$]+\$)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1: out.append(f"<code>{html.escape(part[1:-1], quote=False)}</code>")
        elif part.startswith("$") and part.endswith("$") and len(part) > 1:
            out.append(f'<span class="math notranslate nohighlight">\\({html.escape(part[1:-1], quote=False)}\\)</span>')
        else: out.append(html.escape(part, quote=False))
    return "".join(out)


def _source_lines(obj):
    try: return inspect.getsourcelines(obj)
    except (OSError, TypeError): return None, None


def _docs(obj) -> dict:
    "Parameter name -> description (and 'return'): fastcore's docments, completed by `_line_comments` where it has none."
    from fastcore.docments import docments
    try: found = {k: v.get("docment") for k, v in docments(obj, full=True).items()}
    except Exception: found = {}
    fn = obj.__init__ if inspect.isclass(obj) and "__init__" in vars(obj) else obj
    mine = _line_comments(fn)
    for name, text in mine.items():
        if name != "return" and not found.get(name): found[name] = text
    if found.get("return") and found.get("return") != mine.get("return"): found["return"] = mine.get("return")
    return found


def _line_comments(fn) -> dict:
    """The trailing comment of each line of `fn`'s parameter list, given to the last parameter written on that line.

    This is the docments convention, read so that `x: float) -> T: # doc` and `**kwargs): # doc` describe `x` and `kwargs`
    (fastcore gives the first to the return value and drops the second); a comment after the closing `)` on a line
    without parameters describes the return value."""
    lines, _ = _source_lines(fn)
    if not lines: return {}
    try: toks = list(tokenize.generate_tokens(io.StringIO("".join(lines)).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError): return {}
    start = next((k for k, t in enumerate(toks) if t.type == tokenize.NAME and t.string == "def"), None)
    if start is None: return {}
    depth, prev, last_on_line, found, closed = 0, None, {}, {}, None
    for t in toks[start:]:
        if t.type == tokenize.OP and t.string in "([{": depth += 1
        elif t.type == tokenize.OP and t.string in ")]}":
            depth -= 1
            if depth == 0 and closed is None: closed = t.start[0]
        elif t.type == tokenize.NAME and depth == 1 and closed is None and prev in ("(", ",", "*", "**"):
            last_on_line[t.start[0]] = t.string
        elif t.type == tokenize.COMMENT:
            text, line = t.string.lstrip("#").strip(), t.start[0]
            if line in last_on_line: found[last_on_line[line]] = text
            elif closed is not None and line == closed: found["return"] = text
        elif t.type == tokenize.NEWLINE and closed is not None: break
        if t.type not in (tokenize.NL, tokenize.COMMENT): prev = t.string
    return found


def _param_lines(fn) -> dict:
    "Parameter name -> line of the `def` it is written on (empty if the source cannot be read)."
    import ast, textwrap
    lines, _ = _source_lines(fn)
    if not lines: return {}
    try: tree = ast.parse(textwrap.dedent("".join(lines)))
    except SyntaxError: return {}
    node = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    if node is None: return {}
    a = node.args
    return {x.arg: x.lineno for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, [a.vararg, a.kwarg])]}


def _grouped_rows(fn, params: list, docs: dict) -> list[list]:
    "`params` grouped as written: parameters on one line that share a single trailing comment (`q, k, v, # ...`) form one row."
    where, groups = _param_lines(fn), []
    for p in params:
        prev = groups[-1] if groups else None
        same_line = prev and where.get(p.name) is not None and where.get(p.name) == where.get(prev[-1].name)
        if same_line and not any(docs.get(q.name) for q in prev): prev.append(p)
        else: groups.append([p])
    return groups


def _param_label(p: inspect.Parameter) -> str:
    return {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name


def _signature(fn, skip_self: bool) -> tuple[str, list[inspect.Parameter]]:
    "`(a, b=1, *, c=None, **kw)` without annotations, and the parameters it lists."
    try: sig = inspect.signature(fn)
    except (TypeError, ValueError): return "(...)", []
    params = list(sig.parameters.values())
    if skip_self and params and params[0].name in ("self", "cls"): params = params[1:]
    parts, star = [], False
    for p in params:
        if p.kind == p.KEYWORD_ONLY and not star: parts.append("*"); star = True
        if p.kind == p.VAR_POSITIONAL: star = True
        parts.append(_param_label(p) + ("" if p.default is p.empty else f"={_short(p.default)}"))
    return f"({', '.join(parts)})", params


def _short(v, n: int = 60) -> str:
    r = _PREFIX.sub("", repr(v))
    return r if len(r) <= n else r[: n - 1] + "…"


def entry_html(obj, name: str) -> str:
    "The HTML of one API entry for the function, class or method `obj` shown as `name`."
    if isinstance(obj, property):  # `@patch(as_prop=True)` and `@property`: documented by its getter, no parameters
        ret = type_name(inspect.signature(obj.fget).return_annotation) if obj.fget else ""
        doc = inspect.getdoc(obj.fget) if obj.fget else ""
        return (f'<div class="api-entry" id="api-{html.escape(name)}" data-api-name="{html.escape(name)}">\n'
                f'<p class="api-sig"><span class="api-kind">property</span> <code><b>{html.escape(name)}</b>'
                f'{html.escape(" -> " + ret if ret else "")}</code></p>\n' + (f'<p class="api-doc">{md_inline(doc)}</p>\n' if doc else "")
                + "</div>")
    is_cls = inspect.isclass(obj)
    fn = obj.__init__ if is_cls and "__init__" in vars(obj) else obj
    if is_cls and "__init__" not in vars(obj) and not hasattr(obj, "__dataclass_fields__"): fn = obj
    sig, params = _signature(obj if is_cls else fn, skip_self="." in name or is_cls)
    docs = _docs(obj)
    try: ret = inspect.Signature.empty if is_cls else inspect.signature(fn).return_annotation
    except (TypeError, ValueError): ret = inspect.Signature.empty
    if type_name(ret): sig += f" -> {type_name(ret)}"
    doc = inspect.getdoc(obj) or ""
    if is_cls and doc.startswith(f"{obj.__name__}("): doc = ""  # dataclass's generated docstring
    rows = []
    if any(docs.get(p.name) for p in params) or docs.get("return"):
        for group in _grouped_rows(fn, params, docs):
            p = group[-1]  # the parameter that carries the line's comment
            types = {type_name(q.annotation) for q in group}
            rows.append((", ".join(map(_param_label, group)), types.pop() if len(types) == 1 else "",
                         "" if p.default is p.empty else _short(p.default, 40), docs.get(p.name) or ""))
        if docs.get("return"): rows.append(("returns", type_name(ret), "", docs["return"]))
    kind = "class" if is_cls else "method" if "." in name else "function"
    out = [f'<div class="api-entry" id="api-{html.escape(name)}" data-api-name="{html.escape(name)}">',
           f'<p class="api-sig"><span class="api-kind">{kind}</span> <code><b>{html.escape(name)}</b>{html.escape(sig)}</code></p>']
    if doc: out.append(f'<p class="api-doc">{md_inline(doc)}</p>')
    if rows:
        out.append('<table class="api-params"><thead><tr><th>parameter</th><th>type</th><th>default</th><th>description</th>'
                   '</tr></thead><tbody>')
        out += [f'<tr><td><code>{html.escape(a)}</code></td><td><code>{html.escape(t)}</code></td>'
                f'<td>{"<code>" + html.escape(d) + "</code>" if d else ""}</td><td>{md_inline(c)}</td></tr>'
                for a, t, d, c in rows]
        out.append("</tbody></table>")
    return "\n".join(out + ["</div>"])


def line_comment(line: str) -> str:
    "The trailing comment of one source line, read with the tokenizer (a `#` inside a string is not a comment)."
    try:
        for t in tokenize.generate_tokens(io.StringIO(line + "\n").readline):
            if t.type == tokenize.COMMENT: return t.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # an unfinished line (a dict opening on this line): fall back to the string-aware scan below
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote: quote = None
        elif ch in "'\"": quote = ch
        elif ch == "#": return line[i + 1:].strip()
    return ""


def const_html(name: str, value, comment: str = "") -> str:
    "The HTML of one API entry for the exported constant `name`."
    shown = _PREFIX.sub("", repr(value))
    shown = f"= {shown}" if len(shown) <= 120 else f": {type_name(type(value))} (shown in the code above)"
    out = [f'<div class="api-entry api-const" id="api-{html.escape(name)}" data-api-name="{html.escape(name)}">',
           f'<p class="api-sig"><span class="api-kind">constant</span> <code><b>{html.escape(name)}</b> {html.escape(shown)}</code></p>']
    if comment: out.append(f'<p class="api-doc">{md_inline(comment)}</p>')
    return "\n".join(out + ["</div>"])


def exported(module: str | None, name: str, default):
    "`name` (`Class.method` too) looked up in the exported `module`, else `default`: the package's object has readable source."
    import importlib
    try:
        obj = importlib.import_module(module)
        for part in name.split("."): obj = getattr(obj, part)
        return obj
    except (ImportError, AttributeError, TypeError, ValueError):
        return default


def show_api(obj, name: str | None = None, module: str | None = None):
    "Display the API entry of `obj` (as exported to `module`, when it is)."
    name = name or obj.__name__
    display(HTML(entry_html(exported(module, name, obj), name)))


def show_const(name: str, value, line: str = ""):
    "Display the API entry of the constant `name` whose assignment starts with source `line`."
    display(HTML(const_html(name, value, line_comment(line))))
