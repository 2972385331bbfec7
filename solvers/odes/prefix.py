"""Prefix (Polish) notation for systems of expressions, readable by any program.

Grammar: tokens separated by single spaces; components separated by ``|``. Binary
operators ``add mul pow``, unary ``neg inv sin cos exp log sqrt``; leaves are state
symbols ``x0 x1 ...``, other symbol names, integers (``3``, ``-2``) and decimal floats
written exactly as given (``2.67``). sympy's n-ary sums and products become nested binary
ones, ``a - b`` is ``add a neg b`` only when sympy stores it as such (it stores
``Mul(-1, b)``, written ``mul -1 b``), and ``a / b`` is ``mul a pow b -1``.

Example: Lorenz with sigma = 10 -> ``mul 10 add x1 mul -1 x0 | ...``.
"""

from __future__ import annotations

import sympy as sp

BINARY = {"add": sp.Add, "mul": sp.Mul, "pow": sp.Pow}
UNARY = {"sin": sp.sin, "cos": sp.cos, "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt,
         "neg": lambda a: -a, "inv": lambda a: 1 / a}
_FUNCS = {sp.sin: "sin", sp.cos: "cos", sp.exp: "exp", sp.log: "log"}
SEPARATOR = "|"


class PrefixError(ValueError):
    """A prefix string that does not parse."""


def _tokens(expr: sp.Expr) -> list[str]:
    if isinstance(expr, sp.Symbol):
        return [expr.name]
    if isinstance(expr, sp.Integer):
        return [str(int(expr))]
    if isinstance(expr, sp.Rational):
        return ["mul", str(int(expr.p)), "pow", str(int(expr.q)), "-1"]
    if isinstance(expr, sp.Float):
        text = sp.sstr(expr, full_prec=False)
        return [text]
    if isinstance(expr, (sp.Add, sp.Mul)):
        op = "add" if isinstance(expr, sp.Add) else "mul"
        args = list(expr.args)
        out = _tokens(args[-1])
        for a in reversed(args[:-1]):
            out = [op] + _tokens(a) + out
        return out
    if isinstance(expr, sp.Pow):
        return ["pow"] + _tokens(expr.base) + _tokens(expr.exp)
    if expr.func in _FUNCS:
        return [_FUNCS[expr.func]] + _tokens(expr.args[0])
    raise PrefixError(f"cannot write {expr.func.__name__} in prefix notation")


def to_prefix(exprs: tuple[sp.Expr, ...] | list[sp.Expr]) -> str:
    """Components in prefix notation separated by `` | ``."""
    return f" {SEPARATOR} ".join(" ".join(_tokens(sp.sympify(e))) for e in exprs)


def _number(tok: str) -> sp.Expr | None:
    try:
        return sp.Integer(int(tok))
    except ValueError:
        pass
    try:
        float(tok)
    except ValueError:
        return None
    return sp.Float(tok)


def from_prefix(text: str) -> tuple[sp.Expr, ...]:
    """Parse a prefix string back to sympy expressions (one per component)."""
    out = []
    for comp in text.split(SEPARATOR):
        toks = comp.split()
        if not toks:
            raise PrefixError(f"empty component in {text!r}")
        pos = 0

        def parse() -> sp.Expr:
            nonlocal pos
            if pos >= len(toks):
                raise PrefixError(f"unexpected end of {comp.strip()!r}")
            tok = toks[pos]
            pos += 1
            if tok in BINARY:
                a = parse()
                b = parse()
                return BINARY[tok](a, b)
            if tok in UNARY:
                return UNARY[tok](parse())
            num = _number(tok)
            if num is not None:
                return num
            if tok.replace("_", "").isalnum() and not tok[0].isdigit():
                return sp.Symbol(tok)
            raise PrefixError(f"unknown token {tok!r} in {comp.strip()!r}")

        expr = parse()
        if pos != len(toks):
            raise PrefixError(f"trailing tokens {toks[pos:]} in {comp.strip()!r}")
        out.append(expr)
    return tuple(out)
