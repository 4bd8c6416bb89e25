"""JMESPath expressions of payload mappings: refused at config load, compiled once.

Contract:
- ``Expression`` is the string type config models use for a path into a payload: it is
  compiled when the model validates. A syntax error, an unknown function, or a function
  given too few or too many arguments is a ``ValueError`` that names the character position
  (0-based) and the reason, so ``cgw check-config`` reports it under the key.
- ``compile_expression`` caches by text: a profile named by 500 devices compiles each path
  once.
- ``search(expr, doc)`` evaluates a compiled expression on a decoded JSON document. A
  JMESPath runtime error (a function given a value of the wrong type, ``abs('x')``) and a
  ``RecursionError`` both raise ``ExpressionError``; nothing else is raised for any document.
- ``jmespath`` (pure Python, typed by ``types-jmespath``) is imported here only.
"""

import functools
from typing import Annotated, Any

import jmespath
from jmespath import exceptions
from jmespath.functions import Functions
from jmespath.parser import ParsedResult
from pydantic import AfterValidator, Field

MAX_EXPRESSION = 256  # characters


class ExpressionError(ValueError):
    """An expression could not be evaluated on this document."""


def _functions(node: Any, text: str) -> None:
    """Refuse unknown functions and wrong argument counts (jmespath finds them only when run)."""
    if not isinstance(node, dict):
        return
    if node.get("type") == "function_expression":
        name = str(node.get("value"))
        where = max(text.find(name + "("), 0)  # the AST has no positions: the first call
        spec = Functions.FUNCTION_TABLE.get(name)
        if spec is None:
            raise ValueError(f"unknown JMESPath function {name}() at position {where}")
        signature = spec["signature"]
        given = len(node.get("children", []))
        variadic = bool(signature) and bool(signature[-1].get("variadic"))
        if given < len(signature) or (given > len(signature) and not variadic):
            raise ValueError(
                f"JMESPath function {name}() at position {where} takes"
                f" {len(signature)}{' or more' if variadic else ''} arguments, not {given}"
            )
    for child in node.get("children", []):
        _functions(child, text)


@functools.lru_cache(maxsize=4096)
def compile_expression(text: str) -> ParsedResult:
    """The compiled expression; raises ``ValueError`` naming the position of a mistake."""
    try:
        parsed = jmespath.compile(text)
    except exceptions.EmptyExpressionError:
        raise ValueError("empty JMESPath expression") from None
    except exceptions.LexerError as exc:
        raise ValueError(
            f"invalid JMESPath expression {text!r} at position {exc.lexer_position}: {exc.message}"
        ) from None
    except exceptions.IncompleteExpressionError:
        raise ValueError(
            f"invalid JMESPath expression {text!r} at position {len(text)}: it ends too soon"
        ) from None
    except exceptions.ParseError as exc:
        raise ValueError(
            f"invalid JMESPath expression {text!r} at position {exc.lex_position}:"
            f" unexpected {exc.token_value!r}"
        ) from None
    except exceptions.JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {text!r}: {exc}") from None
    _functions(parsed.parsed, text)
    return parsed


def _checked(text: str) -> str:
    compile_expression(text)
    return text


Expression = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_EXPRESSION,
        description="JMESPath expression into the JSON payload, e.g. 'data.pm25' or "
        "'meters[?kind==`water`]'",
    ),
    AfterValidator(_checked),
]


def search(expr: ParsedResult, doc: object) -> object:
    """``expr`` evaluated on ``doc``; raises ``ExpressionError`` (see the module docstring)."""
    try:
        return expr.search(doc)
    except exceptions.JMESPathError as exc:
        raise ExpressionError(str(exc)[:160]) from None
    except RecursionError:
        raise ExpressionError("document nested too deep") from None
