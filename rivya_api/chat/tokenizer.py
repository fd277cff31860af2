"""The development tokenizer: exact, deterministic token counts with nothing to download.

Rivya's local chat model counts tokens with this tokenizer, and the gateway uses
it to estimate prompts for upstream models before it reserves credits. It is
documented here so a client can reproduce every count the local model reports:

1. Text is split into *pieces* by one regular expression, in the manner of
   GPT-2-style pre-tokenisers: an English contraction suffix (``'s``, ``'t``,
   ``'re``, ``'ve``, ``'m``, ``'ll``, ``'d``); a run of letters with at most one
   leading space; a run of digits with at most one leading space; a run of other
   non-space characters with at most one leading space; a run of whitespace.
2. A letter run longer than ``MAX_WORD`` (4) characters, not counting its
   leading space, is cut into consecutive slices of 4 (the last may be
   shorter); a digit run is cut into slices of 3; a symbol run is one token per
   character; a whitespace run is one token per newline-delimited part.
3. Each resulting slice is one token. Joining the tokens gives back the text
   exactly (``"".join(tokenize(s)) == s``), so a stream of tokens is a stream of
   text deltas.

A chat prompt costs, per message, ``MESSAGE_OVERHEAD`` (4) tokens plus its text
tokens plus ``IMAGE_TOKENS`` (85) per image, and ``REPLY_PRIMING`` (3) tokens once
for the reply, like the per-message framing of OpenAI's chat format.

Counts run at roughly four characters of English prose per token, close to
the byte-pair tokenisers of hosted models, which is what makes the estimate
useful for upstream reservations (a margin covers the difference there).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

MAX_WORD = 4
MAX_DIGITS = 3
MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3
IMAGE_TOKENS = 85

_PIECE = re.compile(
    r"(?P<contraction>'(?:s|t|re|ve|m|ll|d)(?![^\W\d_]))"
    r"|(?P<letters> ?[^\W\d_]+)"
    r"|(?P<digits> ?\d+)"
    r"|(?P<symbols> ?[^\s\w]+|_+)"  # underscore counts as a symbol
    r"|(?P<space>\s+)",
)


def _slices(piece: str, size: int) -> Iterator[str]:
    lead = " " if piece.startswith(" ") and len(piece) > 1 else ""
    body = piece[len(lead) :]
    first = True
    for start in range(0, len(body), size):
        part = body[start : start + size]
        yield (lead + part) if first else part
        first = False


def tokenize(text: str) -> list[str]:
    """The tokens of ``text``, as substrings that join back to it exactly."""
    tokens: list[str] = []
    for match in _PIECE.finditer(text):
        piece, kind = match.group(0), match.lastgroup
        if kind == "contraction":
            tokens.append(piece)
        elif kind == "letters":
            tokens.extend(_slices(piece, MAX_WORD))
        elif kind == "digits":
            tokens.extend(_slices(piece, MAX_DIGITS))
        elif kind == "symbols":
            tokens.extend(_slices(piece, 1))
        else:  # whitespace: one token per line break plus the blanks that follow it
            tokens.extend(part for part in re.split(r"(?<=\n)", piece) if part)
    return tokens


def count_tokens(text: str) -> int:
    """How many tokens ``text`` is (``len(tokenize(text))``)."""
    return len(tokenize(text))


def message_parts(content: Any) -> tuple[list[str], int]:
    """Texts and image count of an OpenAI message ``content`` (a string or a list of parts)."""
    if content is None:
        return [], 0
    if isinstance(content, str):
        return [content], 0
    texts: list[str] = []
    images = 0
    for part in content:
        if part.get("type") == "text":
            texts.append(part.get("text") or "")
        elif part.get("type") == "image_url":
            images += 1
    return texts, images


def count_prompt_tokens(messages: Iterable[dict[str, Any]], *, image_tokens: int = IMAGE_TOKENS) -> int:
    """Tokens of a chat prompt in OpenAI message shape, by the framing rule above."""
    total = REPLY_PRIMING
    for message in messages:
        texts, images = message_parts(message.get("content"))
        total += MESSAGE_OVERHEAD + sum(count_tokens(text) for text in texts) + images * image_tokens
    return total
