"""PROSE's symbol vocabulary: systems of expressions <-> token sequences <-> sympy.

The grammar is the store's prefix notation (:mod:`sim.symbolic.prefix`: operators
``add mul pow neg inv sin cos exp log sqrt``, components separated by ``|``); only the
numbers are written differently (Liu, Zhang, Schaeffer 2023, Sec. 3; Charton's P1000
encoding with three significant digits):

- a small integer ``|n| <= max_int`` is one token (``2``, ``-1``);
- any other number is a float of three tokens: sign, 3-digit mantissa, exponent, so
  ``v = sign * mantissa * 10^exponent`` with the mantissa in [100, 999] (``28.0 -> + N280 E-1``,
  ``-0.227 -> - N227 E-3``, zero is ``+ N000 E0``). Floats are rounded to three significant
  digits (the ODE parameters are drawn with exactly three).

Special tokens: ``<pad> <bos> <eos>``, the separator ``|`` and the placeholder ``<c>``. A
*skeleton* replaces every float (three tokens) by one placeholder; small integers (exponents,
``-1`` of a subtraction, the ``4`` of Halvorsen) are structure and stay. Symbols that are not
state variables (``sigma`` in a user's guess) are constants, so they become placeholders too.

The operands of a sum or product are written in the order of their skeleton tokens (sympy's
order depends on the values of float coefficients), so every system has one token order and
``encode(decode(tokens)) == tokens``.

Tokens read as a tree: a float's sign token has two children (mantissa, exponent), which
lets :func:`SymbolVocabulary.terms` split a component into its top-level summands without
parsing to sympy (the symbol-input noise works on those).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import sympy as sp

from sim.errors import SimError
from sim.symbolic import SEPARATOR, PrefixError, parse_prefix, prefix_tokens, split_components
from sim.symbolic.prefix import BINARY, UNARY

PAD, BOS, EOS, PLACEHOLDER = "<pad>", "<bos>", "<eos>", "<c>"
SPECIALS = (PAD, BOS, EOS, SEPARATOR, PLACEHOLDER)
SIGNS = ("+", "-")
_INFIX_FUNCTIONS = {"sin", "cos", "exp", "log", "sqrt"}


class SymbolError(SimError, ValueError):
    """A token sequence or expression that the PROSE vocabulary cannot represent."""


@dataclass(frozen=True)
class SymbolVocabulary:
    """Token <-> id map and the codec of systems of expressions.

    Args:
        max_dim: state variables ``x0 .. x_{max_dim-1}`` are tokens.
        max_int: integers with ``|n| <= max_int`` are single tokens; others are floats.
        min_exponent, max_exponent: exponent tokens ``E{min} .. E{max}`` (mantissa in [100, 999]).
    """

    max_dim: int = 6
    max_int: int = 5
    min_exponent: int = -10
    max_exponent: int = 10
    tokens: tuple[str, ...] = field(init=False, repr=False, compare=False)
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        toks = [*SPECIALS, *BINARY, *UNARY, *(f"x{i}" for i in range(self.max_dim)),
                *(str(n) for n in range(-self.max_int, self.max_int + 1)), *SIGNS, "N000",
                *(f"N{m}" for m in range(100, 1000)),
                *(f"E{e}" for e in range(self.min_exponent, self.max_exponent + 1))]
        object.__setattr__(self, "tokens", tuple(toks))
        object.__setattr__(self, "index", {t: i for i, t in enumerate(toks)})

    @property
    def config(self) -> dict[str, int]:
        return {"max_dim": self.max_dim, "max_int": self.max_int, "min_exponent": self.min_exponent,
                "max_exponent": self.max_exponent}

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return self.index[PAD]

    @property
    def bos_id(self) -> int:
        return self.index[BOS]

    @property
    def eos_id(self) -> int:
        return self.index[EOS]

    # -- numbers -------------------------------------------------------------------------
    def number_tokens(self, value: sp.Number) -> list[str]:
        """One token for a small integer, else sign / mantissa / exponent."""
        if isinstance(value, sp.Integer) and abs(int(value)) <= self.max_int:
            return [str(int(value))]
        v = float(value)
        if not math.isfinite(v):
            raise SymbolError(f"cannot encode the non-finite number {v}")
        sign = "-" if v < 0 else "+"
        if v == 0:
            return [sign, "N000", "E0"]
        e = math.floor(math.log10(abs(v))) - 2
        m = round(abs(v) / 10.0**e)
        if m >= 1000:  # 999.6 rounds up to the next decade
            m, e = m // 10, e + 1
        if not self.min_exponent <= e <= self.max_exponent:
            raise SymbolError(f"{v:g} is outside the float range of the vocabulary "
                              f"(exponents {self.min_exponent}..{self.max_exponent})")
        return [sign, f"N{m}", f"E{e}"]

    def read_number(self, tokens: Sequence[str], pos: int) -> tuple[sp.Expr, int] | None:
        tok = tokens[pos]
        if tok in SIGNS:
            if pos + 2 >= len(tokens):
                raise PrefixError(f"a float needs a mantissa and an exponent after {tok!r}")
            mant, expo = tokens[pos + 1], tokens[pos + 2]
            if not (mant.startswith("N") and mant[1:].isdigit() and expo.startswith("E")):
                raise PrefixError(f"bad float tokens {tok} {mant} {expo}")
            return sp.Float(f"{tok}{mant[1:]}e{expo[1:]}"), pos + 3
        if tok == PLACEHOLDER:
            return sp.Symbol("c"), pos + 1
        if tok.lstrip("-").isdigit():
            return sp.Integer(int(tok)), pos + 1
        return None

    # -- expressions ---------------------------------------------------------------------
    def encode(self, exprs: Sequence[sp.Expr], skeleton: bool = False) -> list[str]:
        """Tokens of a system (components separated by ``|``; no BOS/EOS).

        Symbols other than the state variables ``x0..`` are constants: with ``skeleton`` they
        become placeholders, without it they are an error (the full form needs numbers).
        """
        out: list[str] = []
        for i, e in enumerate(exprs):
            e = sp.sympify(e)
            extra = sorted((s for s in e.free_symbols if not self._is_state(s.name)), key=lambda s: s.name)
            if extra:
                if not skeleton:
                    raise SymbolError(f"component {i} has symbols {[s.name for s in extra]} that are not state "
                                      f"variables x0..x{self.max_dim - 1}; give numbers or ask for a skeleton")
                e = e.subs({s: sp.Float(1.5 + 0.1 * k) for k, s in enumerate(extra)})
            # integers without a token are written as floats: make them floats first, so that sympy's
            # ordering of the arguments is the one the decoded expression will have (encode o decode = id)
            big = {a: sp.Float(int(a)) for a in e.atoms(sp.Integer) if abs(int(a)) > self.max_int}
            if big:
                e = e.xreplace(big)
            try:
                toks = prefix_tokens(e, self.number_tokens, self._order_key)
            except PrefixError as exc:
                raise SymbolError(f"component {i}: {exc.message}") from None
            if i:
                out.append(SEPARATOR)
            out += toks
        return self.skeleton(out) if skeleton else out

    def _order_key(self, tokens: list[str]) -> tuple[str, ...]:
        # operands of sums and products in the order of their skeletons: independent of the constants'
        # values (sympy's own order is not), so one system always has one token order
        return tuple(self.skeleton(tokens))

    def _is_state(self, name: str) -> bool:
        return name[:1] == "x" and name[1:].isdigit() and int(name[1:]) < self.max_dim

    def decode(self, tokens: Sequence[str]) -> tuple[sp.Expr, ...]:
        """sympy expressions of a token sequence (BOS/EOS/PAD are ignored); placeholders become ``c``.

        Raises :class:`SymbolError` when the sequence is not a well-formed system.
        """
        toks = [t for t in tokens if t not in (PAD, BOS, EOS)]
        out = []
        for comp in split_components(toks):
            if not comp:
                raise SymbolError(f"empty component in {' '.join(toks)!r}")
            try:
                expr, pos = parse_prefix(comp, 0, self.read_number, self._is_state)
            except PrefixError as exc:
                raise SymbolError(exc.message) from None
            if pos != len(comp):
                raise SymbolError(f"trailing tokens {comp[pos:]} in {' '.join(comp)!r}")
            out.append(expr)
        return tuple(out)

    def skeleton(self, tokens: Sequence[str]) -> list[str]:
        """Every float (sign, mantissa, exponent) replaced by one placeholder."""
        out: list[str] = []
        i = 0
        while i < len(tokens):
            if tokens[i] in SIGNS:
                out.append(PLACEHOLDER)
                i += 3
            else:
                out.append(tokens[i])
                i += 1
        return out

    # -- structure -----------------------------------------------------------------------
    def subtree_end(self, tokens: Sequence[str], pos: int) -> int:
        """Position just after the subtree that starts at ``tokens[pos]``."""
        need = 1
        while need:
            if pos >= len(tokens):
                raise SymbolError(f"incomplete expression {' '.join(tokens)!r}")
            tok = tokens[pos]
            need += (2 if tok in BINARY or tok in SIGNS else 1 if tok in UNARY else 0) - 1
            pos += 1
        return pos

    def terms(self, component: Sequence[str]) -> list[list[str]]:
        """Top-level summands of one component's tokens (``add a add b c`` -> [a, b, c])."""
        if component and component[0] == "add":
            mid = self.subtree_end(component, 1)
            return self.terms(component[1:mid]) + self.terms(component[mid:])
        return [list(component)]

    @staticmethod
    def join_terms(terms: Sequence[Sequence[str]]) -> list[str]:
        """Inverse of :meth:`terms`: ``[a, b, c]`` -> ``add a add b c``."""
        out = list(terms[-1])
        for t in reversed(terms[:-1]):
            out = ["add", *t, *out]
        return out

    # -- ids -----------------------------------------------------------------------------
    def ids(self, tokens: Sequence[str], wrap: bool = True) -> list[int]:
        """Token ids, between BOS and EOS when ``wrap``."""
        try:
            body = [self.index[t] for t in tokens]
        except KeyError as exc:
            raise SymbolError(f"token {exc.args[0]!r} is not in the vocabulary") from None
        return [self.bos_id, *body, self.eos_id] if wrap else body

    def to_tokens(self, ids: Sequence[int]) -> list[str]:
        """Tokens of ids, stopping at the first EOS and dropping BOS/PAD."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.bos_id, self.pad_id):
                out.append(self.tokens[i])
        return out


def as_expressions(guess: str | sp.Expr | Sequence[str | sp.Expr]) -> tuple[sp.Expr, ...]:
    """A user's equations as sympy: a string is the store's prefix notation (components separated
    by ``|``); a sequence holds one sympy expression or infix string (``"10*(x1 - x0)"``) per
    component."""
    from sim.symbolic import from_prefix

    if isinstance(guess, str):
        try:
            return from_prefix(guess)
        except PrefixError as exc:
            raise SymbolError(f"cannot read the equation guess {guess!r} as prefix notation ({exc.message}); "
                              "pass a list of infix strings or sympy expressions instead") from None
    if isinstance(guess, sp.Basic):
        return (guess,)
    out = []
    for g in guess:
        local = {}
        if isinstance(g, str):  # every name is a symbol (``beta``, ``gamma``, ``E``, ``I`` are not sympy's), but
            local = {n: sp.Symbol(n) for n in re.findall(r"[A-Za-z_]\w*", g) if n not in _INFIX_FUNCTIONS}
        try:
            out.append(sp.sympify(g, locals=local))
        except (sp.SympifyError, SyntaxError, TypeError) as exc:
            raise SymbolError(f"cannot read the equation {g!r} ({type(exc).__name__})") from None
    return tuple(out)


__all__ = ["BOS", "EOS", "PAD", "PLACEHOLDER", "SymbolError", "SymbolVocabulary", "as_expressions"]
