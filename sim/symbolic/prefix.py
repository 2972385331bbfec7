"""Prefix (Polish) notation for systems of expressions, readable by any program.

Grammar: tokens separated by single spaces; components separated by ``|``. Binary
operators ``add mul pow``, unary ``neg inv sin cos exp log sqrt``; leaves are state
symbols ``x0 x1 ...``, other symbol names, integers (``3``, ``-2``) and decimal floats
written exactly as given (``2.67``). sympy's n-ary sums and products become nested binary
ones, ``a - b`` is ``add a neg b`` only when sympy stores it as such (it stores
``Mul(-1, b)``, written ``mul -1 b``), and ``a / b`` is ``mul a pow b -1``.

Example: Lorenz with sigma = 10 -> ``mul 10 add x1 mul -1 x0 | ...``.

The writer and the parser take a *number codec* so that other token vocabularies reuse
the grammar: :func:`prefix_tokens` calls ``number(value)`` for every integer and float
leaf (rationals are written structurally as ``mul p pow q -1`` with integer leaves), and
:func:`parse_prefix` calls ``number_reader(tokens, pos)``, which returns ``(expr, next_pos)``
when a number starts at ``pos`` (it may span several tokens) and ``None`` otherwise. The
plain codec (one decimal token per number) is the store's format.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sympy as sp

from sim.errors import SimError

BINARY = {"add": sp.Add, "mul": sp.Mul, "pow": sp.Pow}
UNARY = {"sin": sp.sin, "cos": sp.cos, "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt,
         "neg": lambda a: -a, "inv": lambda a: 1 / a}
_FUNCS = {sp.sin: "sin", sp.cos: "cos", sp.exp: "exp", sp.log: "log"}
SEPARATOR = "|"

NumberWriter = Callable[[sp.Number], list[str]]
NumberReader = Callable[[Sequence[str], int], "tuple[sp.Expr, int] | None"]


class PrefixError(SimError, ValueError):
    """A prefix string that does not parse, or an expression that has no prefix form."""


def plain_number_tokens(value: sp.Number) -> list[str]:
    """The store's codec: one token, the integer or the float as sympy prints it (``2.67``)."""
    if isinstance(value, sp.Integer):
        return [str(int(value))]
    return [sp.sstr(value, full_prec=False)]


def plain_number_reader(tokens: Sequence[str], pos: int) -> tuple[sp.Expr, int] | None:
    tok = tokens[pos]
    try:
        return sp.Integer(int(tok)), pos + 1
    except ValueError:
        pass
    try:
        float(tok)
    except ValueError:
        return None
    return sp.Float(tok), pos + 1


def prefix_tokens(expr: sp.Expr, number: NumberWriter = plain_number_tokens,
                  sort_key: Callable[[list[str]], Any] | None = None) -> list[str]:
    """Tokens of one expression; ``number`` writes integer and float leaves.

    The operands of a sum or product are written in sympy's order, or sorted (stably) by
    ``sort_key(tokens of the operand)`` when given: sympy orders float coefficients by their
    binary representation, so a vocabulary that wants an order independent of the values
    sorts by a key that ignores them.
    """
    expr = sp.sympify(expr)
    if isinstance(expr, sp.Symbol):
        return [expr.name]
    if isinstance(expr, sp.Integer):
        return number(expr)
    if isinstance(expr, sp.Rational):
        return ["mul", *number(sp.Integer(expr.p)), "pow", *number(sp.Integer(expr.q)), *number(sp.Integer(-1))]
    if isinstance(expr, sp.Float):
        return number(expr)
    if isinstance(expr, (sp.Add, sp.Mul)):
        op = "add" if isinstance(expr, sp.Add) else "mul"
        args = [prefix_tokens(a, number, sort_key) for a in expr.args]
        if sort_key is not None:
            args.sort(key=sort_key)
        out = args[-1]
        for a in reversed(args[:-1]):
            out = [op] + a + out
        return out
    if isinstance(expr, sp.Pow):
        return ["pow"] + prefix_tokens(expr.base, number, sort_key) + prefix_tokens(expr.exp, number, sort_key)
    if expr.func in _FUNCS:
        return [_FUNCS[expr.func]] + prefix_tokens(expr.args[0], number, sort_key)
    raise PrefixError(f"cannot write {expr.func.__name__} in prefix notation")


def to_prefix(exprs: tuple[sp.Expr, ...] | list[sp.Expr]) -> str:
    """Components in prefix notation separated by `` | ``."""
    return f" {SEPARATOR} ".join(" ".join(prefix_tokens(e)) for e in exprs)


def _is_symbol_name(tok: str) -> bool:
    return tok.replace("_", "").isalnum() and not tok[0].isdigit()


def parse_prefix(tokens: Sequence[str], pos: int = 0, number_reader: NumberReader = plain_number_reader,
                 symbol: Callable[[str], bool] = _is_symbol_name) -> tuple[sp.Expr, int]:
    """Parse one expression starting at ``tokens[pos]``; returns it and the position after it.

    ``symbol(tok)`` says which tokens are symbol names (any identifier by default).
    """
    if pos >= len(tokens):
        raise PrefixError(f"unexpected end of {' '.join(tokens)!r}")
    tok = tokens[pos]
    if tok in BINARY:
        a, pos = parse_prefix(tokens, pos + 1, number_reader, symbol)
        b, pos = parse_prefix(tokens, pos, number_reader, symbol)
        return BINARY[tok](a, b), pos
    if tok in UNARY:
        a, pos = parse_prefix(tokens, pos + 1, number_reader, symbol)
        return UNARY[tok](a), pos
    num = number_reader(tokens, pos)
    if num is not None:
        return num
    if symbol(tok):
        return sp.Symbol(tok), pos + 1
    raise PrefixError(f"unknown token {tok!r} in {' '.join(tokens)!r}")


def split_components(tokens: Sequence[str]) -> list[list[str]]:
    """Tokens split at the separator: one list per component."""
    out: list[list[str]] = [[]]
    for tok in tokens:
        if tok == SEPARATOR:
            out.append([])
        else:
            out[-1].append(tok)
    return out


def from_prefix(text: str, number_reader: NumberReader = plain_number_reader) -> tuple[sp.Expr, ...]:
    """Parse a prefix string back to sympy expressions (one per component)."""
    out = []
    for toks in split_components(text.split()):
        if not toks:
            raise PrefixError(f"empty component in {text!r}")
        expr, pos = parse_prefix(toks, 0, number_reader)
        if pos != len(toks):
            raise PrefixError(f"trailing tokens {toks[pos:]} in {' '.join(toks)!r}")
        out.append(expr)
    return tuple(out)
