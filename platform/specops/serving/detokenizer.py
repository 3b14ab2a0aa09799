"""Streamed token ids to text deltas: `IncrementalDetokenizer` (stop strings, half characters held back)."""

from __future__ import annotations

from collections.abc import Sequence

from specops.serving.engine_port import ServingTokenizer


class IncrementalDetokenizer:
    """Turns streamed token ids into text deltas.

    Text is re-decoded from all tokens so far (BPE merges across token boundaries), a trailing
    U+FFFD (half a UTF-8 character) is held back, and so is any tail that could still become one of
    the ``stop`` strings; the text is cut before the first stop string, which is never sent.
    """

    def __init__(self, tokenizer: ServingTokenizer, stop: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(stop)
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self._ids: list[int] = []
        self._sent = 0
        self._stopped = False

    def _text(self) -> str:
        return self._tokenizer.decode(self._ids, skip_special_tokens=True)

    def _cut(self, text: str) -> str:
        if self._stop:
            cuts = [i for i in (text.find(s) for s in self._stop) if i >= 0]
            if cuts:
                self._stopped = True
                return text[: min(cuts)]
        return text

    def push(self, token_ids: list[int]) -> str:
        if self._stopped:
            return ""
        self._ids.extend(token_ids)
        text = self._cut(self._text())
        end = len(text)
        if not self._stopped:
            end -= self._hold
            while end > self._sent and text[end - 1] == "\ufffd":
                end -= 1
        if end <= self._sent:
            return ""
        delta, self._sent = text[self._sent : end], end
        return delta

    def finish(self, all_ids: list[int]) -> str:
        """The rest of the text once the engine is done (``all_ids``: every output token)."""
        if self._stopped:
            return ""
        self._ids = list(all_ids)
        text = self._cut(self._text())
        delta, self._sent = text[self._sent :], len(text)
        return delta
